/**
 * Section 1 of the Redis benchmark: uncontended acquire+release pairs, one
 * process, sequential; the ratio of each implementation's p50 to the raw
 * floor (SET NX PX + compare-and-delete), and what each pair sends and costs
 * Redis.
 */
import type { Redis } from 'ioredis';
import { LABELS, UNCONTENDED, createContender, type Contender, type ContenderId } from './redis-contenders.js';
import { OVERHEAD, commandsBetween, counters, sentCommands, sentSince, total } from './redis-counters.js';
import { log, rotation, table, us } from './support/report.js';
import { fmt, median, round, roundSummary, summarize, type Summary } from './support/stats.js';

export interface UncontendedResult {
  pairsPerVariant: number;
  /** Per-pair ms of every pair, summarised per variant (all runs pooled). */
  perPairMs: Record<string, Summary>;
  /** Median over runs of each run's per-pair p50. */
  medianP50Ms: Record<string, number>;
  /** ours p50 / raw p50 within each run, then the median: paired, so drift on the machine cancels. */
  ratioToFloor: Record<string, { median: number; runs: number[] }>;
  /** Requests this process sent per acquire+release pair, by command (each one a round trip here, the pairs being sequential). */
  requestsPerPair: Record<string, Record<string, number>>;
  /** Commands Redis ran per pair, including those inside Lua scripts (INFO commandstats). */
  serverCommandsPerPair: Record<string, Record<string, number>>;
  /** redis-server CPU per pair (INFO cpu, one batch per implementation), µs. */
  serverCpuUsPerPair: Record<string, number>;
  pingMs: Summary;
  pass: boolean;
}

export interface UncontendedSettings {
  readonly runs: number;
  readonly batch: number;
  readonly warmupPairs: number;
}

/**
 * Sequential acquire+release pairs in this process; `pass` when ours' p50 is
 * at most `maxRatio` x the raw floor's (median of per-run ratios).
 *
 * Timing interleaves the implementations pair by pair (one pair of each per
 * round, the order rotated every round), so every one of them sees the same
 * moments of a shared machine's drifting load; batches of one implementation
 * at a time gave per-run ratios from 0.55 to 3.9 for the same code. What each
 * pair sends and costs Redis is counted apart, one implementation at a time,
 * because INFO counts everything between two readings.
 */
export async function benchUncontended(url: string, admin: Redis, settings: UncontendedSettings, maxRatio: number): Promise<UncontendedResult> {
  const { runs, batch, warmupPairs } = settings;
  const contenders = new Map<ContenderId, Contender>();
  for (const id of UNCONTENDED) contenders.set(id, await createContender(id, url));
  const key = (id: ContenderId) => `bench:pair:${id}`;
  const pair = async (id: ContenderId): Promise<number> => {
    const contender = contenders.get(id)!;
    const t0 = performance.now();
    const held = await contender.acquire(key(id));
    if (!held) throw new Error(`${LABELS[id]}: an uncontended acquire gave up`);
    await held.release();
    return performance.now() - t0;
  };
  const ping = async (): Promise<number> => {
    const t0 = performance.now();
    await admin.ping();
    return performance.now() - t0;
  };
  for (let i = 0; i < warmupPairs; i++) {
    for (const id of UNCONTENDED) await pair(id);
    await ping();
  }

  const requests: Record<string, Record<string, number>> = {};
  const serverCommands: Record<string, Record<string, number>> = {};
  const serverCpu: Record<string, number> = {};
  const perPair = (calls: Record<string, number>) => Object.fromEntries(Object.entries(calls).map(([name, n]) => [name, round(n / batch, 2)]));
  for (const id of UNCONTENDED) {
    const before = await counters(admin);
    const sentBefore = new Map(sentCommands);
    for (let i = 0; i < batch; i++) await pair(id);
    const sent = sentSince(sentBefore);
    const after = await counters(admin);
    requests[id] = perPair(Object.fromEntries(Object.entries(sent).filter(([name]) => !OVERHEAD.has(name))));
    serverCommands[id] = perPair(commandsBetween(before, after));
    serverCpu[id] = ((after.cpuMs - before.cpuMs) * 1_000) / batch;
  }

  const times: Record<string, number[]> = Object.fromEntries(UNCONTENDED.map((id) => [id, [] as number[]]));
  const runP50: Record<string, number[]> = Object.fromEntries(UNCONTENDED.map((id) => [id, [] as number[]]));
  const pingTimes: number[] = [];
  for (let r = 0; r < runs; r++) {
    const these: Record<string, number[]> = Object.fromEntries(UNCONTENDED.map((id) => [id, [] as number[]]));
    for (let i = 0; i < batch; i++) {
      for (const id of rotation(UNCONTENDED, r * batch + i)) these[id]!.push(await pair(id));
      pingTimes.push(await ping());
    }
    for (const id of UNCONTENDED) {
      times[id]!.push(...these[id]!);
      runP50[id]!.push(median(these[id]!));
    }
    log(`  run ${r + 1}/${runs}: ${UNCONTENDED.map((id) => `${id} ${us(runP50[id]!.at(-1)!)}`).join(', ')}; PING ${us(median(pingTimes.slice(-batch)))}`);
  }
  for (const contender of contenders.values()) await contender.close();

  const ratio = (id: ContenderId) => {
    const perRun = runP50[id]!.map((p50, i) => p50 / runP50.raw![i]!);
    return { median: round(median(perRun), 3), runs: perRun.map((v) => round(v, 3)) };
  };
  const ratioToFloor = Object.fromEntries(UNCONTENDED.filter((id) => id !== 'raw').map((id) => [id, ratio(id)]));
  return {
    pairsPerVariant: runs * batch,
    perPairMs: Object.fromEntries(UNCONTENDED.map((id) => [id, roundSummary(summarize(times[id]!), 4)])),
    medianP50Ms: Object.fromEntries(UNCONTENDED.map((id) => [id, round(median(runP50[id]!), 4)])),
    ratioToFloor,
    requestsPerPair: requests,
    serverCommandsPerPair: serverCommands,
    serverCpuUsPerPair: Object.fromEntries(UNCONTENDED.map((id) => [id, round(serverCpu[id]!, 1)])),
    pingMs: roundSummary(summarize(pingTimes), 4),
    pass: ratioToFloor.ours!.median <= maxRatio,
  };
}

/** The uncontended results, one row per implementation. */
export function uncontendedTable(result: UncontendedResult): string {
  const rows: string[][] = [
    ['implementation', 'p50 (median of runs)', 'p99 (all pairs)', 'p50 / raw floor p50 (median of per-run ratios)', 'requests per pair', 'commands Redis ran', 'Redis CPU per pair'],
  ];
  for (const id of UNCONTENDED) {
    const sent = result.requestsPerPair[id] ?? {};
    rows.push([
      LABELS[id],
      us(result.medianP50Ms[id]!),
      us(result.perPairMs[id]!.p99),
      id === 'raw' ? '1.00 (floor)' : fmt(result.ratioToFloor[id]!.median, 2),
      Object.entries(sent).map(([name, n]) => `${n} ${name}`).join(' + '),
      fmt(total(result.serverCommandsPerPair[id] ?? {}), 0),
      `${fmt(result.serverCpuUsPerPair[id]!, 0)} µs`,
    ]);
  }
  return table(rows);
}
