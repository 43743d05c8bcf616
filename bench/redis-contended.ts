/**
 * Section 2 of the Redis benchmark: 4 processes x 2 workers contending for
 * one key, each run in fresh worker processes (redis-worker.ts), and what
 * the runs' records say: throughput against 1 / (hold + one round trip),
 * owner changes, waits, give-ups, hand-over times, and mutual exclusion
 * (no grant before the previous holder began its release).
 */
import { fork, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { LABELS, WAIT_MS, HOW, type ContenderId } from './redis-contenders.js';
import { OVERHEAD, commandsBetween, counters, total } from './redis-counters.js';
import { RECORD_FIELDS, monotonicNow, type FromWorker, type ToWorker, type WorkerConfig } from './redis-protocol.js';
import { fmt, median, quantile, round, roundSummary, summarize, type Summary } from './support/stats.js';
import { log, ms, rotation, table } from './support/report.js';

/** One acquisition as the workers record it (ms from the run's start). */
export interface Acquisition {
  /** 0..7: process * workersPerProcess + index in the process */
  worker: number;
  /** when the worker first asked for this acquisition (before any give-up and retry) */
  first: number;
  /** when the call that succeeded was made */
  request: number;
  /** when it held the lock; -1 when it gave up at the end of the run */
  grant: number;
  /** when it began to release (end of the hold) */
  release: number;
  /** when the release call resolved */
  released: number;
  giveUps: number;
  /** trace only: when the last pub/sub message reached the grantee's process before the grant */
  messageAt: number;
  /** trace only: when the release request was handed to ioredis to write */
  releaseSent: number;
}

export interface ContendedRun {
  id: ContenderId;
  round: number;
  /** Place in this round's order (1 = first). */
  position: number;
  sections: number;
  perSec: number;
  /**
   * 1 / (hold + one round trip), both measured during this run: the mean
   * hold (grant to release) and the median PING of the workers' side
   * connections. So the ratio is (hold + RTT) / (hold + the real gap between
   * sections): how close the hand-over comes to one round trip.
   */
  idealPerSec: number;
  toIdeal: number;
  ideal: { holdMeanMs: number; rttP50Ms: number };
  /** Before the run, idle: PING back to back and setTimeout(hold), medians. */
  calibration: { rttP50Ms: number; holdP50Ms: number };
  ownerChangesPct: number;
  /** Request to grant, counting the retries after a give-up (what the worker waited in all). */
  waitMs: Summary;
  /** Request to grant of the call that succeeded (after the last give-up). */
  callWaitMs: Summary;
  /** Grant to the start of release: the real hold. */
  holdMs: Summary;
  giveUps: number;
  /** Grants observed before the previous holder had even sent its release: must be 0. */
  overlaps: number;
  overlapExamples: string[];
  /** Previous holder's release start to the next grant: what a hand-over costs (in-window grants). */
  handoffMs: Summary;
  /** The same, when the next holder is in another process / in the same process. */
  handoffOtherProcessMs: Summary;
  handoffSameProcessMs: Summary;
  /** The holder's release call, start to resolve. */
  releaseCallMs: Summary;
  /**
   * --trace only, a hand-over in three parts: the holder's release call until
   * its request is handed to ioredis; from there until the pub/sub message
   * reaches the next holder's process (wire, Redis, the wake-up); and from
   * the message to the grant in the next holder's code.
   */
  trace?: { releaseToSendMs: Summary; sendToMessageMs: Summary; messageToGrantMs: Summary };
  /** Requests the worker processes sent per critical section (all their ioredis clients), and by command. */
  requestsPerSection: number;
  requests: Record<string, number>;
  perWorker: number[];
  redisCommandsPerSection: number;
  redisCommands: Record<string, number>;
  redisCpuUsPerSection: number;
  workerCpuMsPerSection: number;
  /** 1-minute load average when the run ended (the machine is shared). */
  load1: number;
  errors: string[];
}

export interface ContendedSummary {
  id: ContenderId;
  label: string;
  how: string;
  runs: Omit<ContendedRun, 'id'>[];
  median: {
    perSec: number;
    idealPerSec: number;
    toIdeal: number;
    ownerChangesPct: number;
    waitP50Ms: number;
    waitP99Ms: number;
    waitMaxMs: number;
    giveUps: number;
    redisCommandsPerSection: number;
    requestsPerSection: number;
    handoffP50Ms: number;
    handoffP99Ms: number;
    workerCpuMsPerSection: number;
  };
  worstRun: { waitP99Ms: number; waitMaxMs: number; giveUps: number; toIdeal: number; ownerChangesPct: number };
  /** All runs' waits pooled. */
  pooledWaitMs: Summary & { p999: number };
  overlaps: number;
}

const workerScript = fileURLToPath(new URL('./redis-worker.js', import.meta.url));

interface Child {
  readonly process: ChildProcess;
  readonly ready: Promise<Extract<FromWorker, { type: 'ready' }>>;
  readonly done: Promise<Extract<FromWorker, { type: 'done' }>>;
  readonly exited: Promise<void>;
}

function spawnWorker(workerConfig: WorkerConfig, profileDir: string | undefined): Child {
  const execArgv = profileDir
    ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${workerConfig.id}-${workerConfig.proc}-${Date.now()}.cpuprofile`]
    : [];
  const child = fork(workerScript, [JSON.stringify(workerConfig)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const failed = new Promise<never>((_, reject) => {
    child.on('message', (message: FromWorker) => {
      if (message.type === 'failed') reject(new Error(`worker ${workerConfig.proc} (${workerConfig.id}) failed: ${message.error}`));
    });
    child.once('exit', (code) => reject(new Error(`worker ${workerConfig.proc} (${workerConfig.id}) exited with ${code}`)));
  });
  failed.catch(() => {});
  const next = <T extends FromWorker['type']>(type: T) =>
    Promise.race([
      failed,
      new Promise<Extract<FromWorker, { type: T }>>((resolve) =>
        child.on('message', (message: FromWorker) => {
          if (message.type === type) resolve(message as Extract<FromWorker, { type: T }>);
        }),
      ),
    ]);
  return { process: child, ready: next('ready'), done: next('done'), exited };
}

/** One run, and its raw waits: too many for the JSON, pooled for the chart. */
interface RunOutcome {
  run: ContendedRun;
  waits: number[];
}

async function contendedRun(id: ContenderId, roundIndex: number, position: number, url: string, admin: Redis, options: ContendedOptions): Promise<RunOutcome> {
  const c = options.settings;
  const key = `bench:contended:${id}:${roundIndex}`;
  const children = Array.from({ length: c.processes }, (_, proc) =>
    spawnWorker({
      id,
      url,
      key,
      proc,
      workers: c.workersPerProcess,
      totalWorkers: c.processes * c.workersPerProcess,
      holdMs: c.holdMs,
      durationMs: c.runMs,
      warmupPairs: c.warmupPairs,
      calibrationSamples: c.calibrationSamples,
      trace: options.trace,
    }, options.profileDir),
  );
  try {
    const ready = await Promise.all(children.map((child) => child.ready));
    const before = await counters(admin);
    const at = monotonicNow() + 250;
    for (const child of children) child.process.send({ type: 'start', at } satisfies ToWorker);
    const timeout = sleep(c.runMs + WAIT_MS + 30_000, 'timeout' as const, { ref: false }); // unref'd: must not hold the bench open
    const done = await Promise.race([Promise.all(children.map((child) => child.done)), timeout]);
    if (done === 'timeout') throw new Error(`${LABELS[id]}: the workers did not finish within ${c.runMs + WAIT_MS + 30_000} ms`);
    const after = await counters(admin);
    // They close their connections and exit by themselves; the finally below kills any that does not within 10 s.
    await Promise.race([Promise.all(children.map((child) => child.exited)), sleep(10_000, undefined, { ref: false })]);

    const records: Acquisition[] = [];
    for (const message of done) {
      const width = RECORD_FIELDS.length;
      for (let i = 0; i < message.records.length; i += width) {
        const [worker, first, request, grant, release, released, giveUps, messageAt, releaseSent] = message.records.slice(i, i + width) as number[];
        records.push({
          worker: worker!,
          first: first!,
          request: request!,
          grant: grant!,
          release: release!,
          released: released!,
          giveUps: giveUps!,
          messageAt: messageAt!,
          releaseSent: releaseSent!,
        });
      }
    }
    const granted = records.filter((r) => r.grant >= 0).sort((a, b) => a.grant - b.grant);
    const inWindow = granted.filter((r) => r.grant <= c.runMs);
    let changes = 0;
    const handoff: number[] = [];
    const handoffOther: number[] = [];
    const handoffSame: number[] = [];
    const processOf = (worker: number) => Math.floor(worker / c.workersPerProcess);
    for (let i = 1; i < inWindow.length; i++) {
      const [prev, next] = [inWindow[i - 1]!, inWindow[i]!];
      if (next.worker !== prev.worker) changes++;
      const gap = next.grant - prev.release;
      handoff.push(gap);
      (processOf(next.worker) === processOf(prev.worker) ? handoffSame : handoffOther).push(gap);
    }
    let overlaps = 0;
    const overlapExamples: string[] = [];
    for (let i = 1; i < granted.length; i++) {
      const [prev, next] = [granted[i - 1]!, granted[i]!];
      if (next.grant >= prev.release) continue;
      overlaps++;
      if (overlapExamples.length < 5) {
        overlapExamples.push(
          `worker ${next.worker} granted at ${next.grant.toFixed(3)} ms while worker ${prev.worker} held it from ${prev.grant.toFixed(3)} to ${prev.release.toFixed(3)} ms`,
        );
      }
    }
    const waited = granted.filter((r) => r.first <= c.runMs);
    const rttP50Ms = median(ready.map((m) => median(m.rttMs)));
    const holdP50Ms = median(ready.map((m) => median(m.holdMs)));
    const runRttP50Ms = median(done.flatMap((m) => m.rttMs));
    const holdMeanMs = summarize(inWindow.map((r) => r.release - r.grant)).mean;
    const idealPerSec = 1_000 / (holdMeanMs + runRttP50Ms);
    const perSec = inWindow.length / (c.runMs / 1_000);
    const commands = commandsBetween(before, after);
    const sent: Record<string, number> = {};
    for (const message of done) {
      for (const [name, n] of Object.entries(message.sent)) if (!OVERHEAD.has(name)) sent[name] = (sent[name] ?? 0) + n;
    }
    const perWorker = Array.from({ length: c.processes * c.workersPerProcess }, (_, w) => inWindow.filter((r) => r.worker === w).length);
    const run: ContendedRun = {
      id,
      round: roundIndex,
      position,
      sections: inWindow.length,
      perSec: round(perSec),
      idealPerSec: round(idealPerSec),
      toIdeal: round(perSec / idealPerSec, 3),
      ideal: { holdMeanMs: round(holdMeanMs, 4), rttP50Ms: round(runRttP50Ms, 4) },
      calibration: { rttP50Ms: round(rttP50Ms, 4), holdP50Ms: round(holdP50Ms, 4) },
      ownerChangesPct: round(inWindow.length > 1 ? (100 * changes) / (inWindow.length - 1) : 0, 2),
      waitMs: roundSummary(summarize(waited.map((r) => r.grant - r.first)), 3),
      callWaitMs: roundSummary(summarize(waited.map((r) => r.grant - r.request)), 3),
      holdMs: roundSummary(summarize(granted.map((r) => r.release - r.grant)), 3),
      giveUps: records.reduce((sum, r) => sum + r.giveUps, 0),
      overlaps,
      overlapExamples,
      handoffMs: roundSummary(summarize(handoff), 3),
      handoffOtherProcessMs: roundSummary(summarize(handoffOther), 3),
      handoffSameProcessMs: roundSummary(summarize(handoffSame), 3),
      releaseCallMs: roundSummary(summarize(granted.map((r) => r.released - r.release)), 3),
      ...(options.trace && { trace: traceOf(inWindow) }),
      requestsPerSection: round(total(sent) / Math.max(1, granted.length), 2),
      requests: sent,
      perWorker,
      redisCommandsPerSection: round(total(commands) / Math.max(1, granted.length), 2),
      redisCommands: commands,
      redisCpuUsPerSection: round(((after.cpuMs - before.cpuMs) * 1_000) / Math.max(1, granted.length), 1),
      workerCpuMsPerSection: round(done.reduce((sum, m) => sum + m.cpuMs, 0) / Math.max(1, granted.length), 3),
      load1: round(os.loadavg()[0]!, 2),
      errors: done.flatMap((m) => m.errors).slice(0, 10),
    };
    return { run, waits: waited.map((r) => r.grant - r.first) };
  } finally {
    for (const child of children) if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGKILL');
    await Promise.all(children.map((child) => child.exited));
  }
}

/** Splits each hand-over at the moment the pub/sub message reached the next holder's process. */
function traceOf(sorted: readonly Acquisition[]): NonNullable<ContendedRun['trace']> {
  const toSend: number[] = [];
  const toMessage: number[] = [];
  const toGrant: number[] = [];
  for (let i = 1; i < sorted.length; i++) {
    const [prev, next] = [sorted[i - 1]!, sorted[i]!];
    if (next.messageAt < prev.release || prev.releaseSent < 0) continue; // granted by its own request, not by a message
    toSend.push(prev.releaseSent - prev.release);
    toMessage.push(next.messageAt - prev.releaseSent);
    toGrant.push(next.grant - next.messageAt);
  }
  const sum = (values: number[]) => roundSummary(summarize(values), 3);
  return { releaseToSendMs: sum(toSend), sendToMessageMs: sum(toMessage), messageToGrantMs: sum(toGrant) };
}

function summarizeContended(id: ContenderId, outcomes: RunOutcome[]): ContendedSummary & { waits: number[] } {
  const runs = outcomes.map((o) => o.run);
  const med = (pick: (r: ContendedRun) => number) => median(runs.map(pick));
  const pooled = outcomes.flatMap((o) => o.waits);
  return {
    id,
    label: LABELS[id],
    how: HOW[id],
    runs: runs.map(({ id: _id, ...rest }) => rest),
    median: {
      perSec: round(med((r) => r.perSec)),
      idealPerSec: round(med((r) => r.idealPerSec)),
      toIdeal: round(med((r) => r.toIdeal), 3),
      ownerChangesPct: round(med((r) => r.ownerChangesPct), 2),
      waitP50Ms: round(med((r) => r.waitMs.p50), 3),
      waitP99Ms: round(med((r) => r.waitMs.p99), 3),
      waitMaxMs: round(med((r) => r.waitMs.max), 3),
      giveUps: med((r) => r.giveUps),
      redisCommandsPerSection: round(med((r) => r.redisCommandsPerSection), 2),
      requestsPerSection: round(med((r) => r.requestsPerSection), 2),
      handoffP50Ms: round(med((r) => r.handoffMs.p50), 3),
      handoffP99Ms: round(med((r) => r.handoffMs.p99), 3),
      workerCpuMsPerSection: round(med((r) => r.workerCpuMsPerSection), 3),
    },
    worstRun: {
      waitP99Ms: Math.max(...runs.map((r) => r.waitMs.p99)),
      waitMaxMs: Math.max(...runs.map((r) => r.waitMs.max)),
      giveUps: Math.max(...runs.map((r) => r.giveUps)),
      toIdeal: Math.min(...runs.map((r) => r.toIdeal)),
      ownerChangesPct: Math.min(...runs.map((r) => r.ownerChangesPct)),
    },
    pooledWaitMs: { ...roundSummary(summarize(pooled), 3), p999: round(quantile(pooled, 0.999), 3) },
    overlaps: runs.reduce((sum, r) => sum + r.overlaps, 0),
    waits: pooled,
  };
}

export interface ContendedSettings {
  readonly processes: number;
  readonly workersPerProcess: number;
  readonly holdMs: number;
  readonly runMs: number;
  readonly rounds: number;
  readonly warmupPairs: number;
  readonly calibrationSamples: number;
}

export interface ContendedOptions {
  readonly settings: ContendedSettings;
  /** The implementations to run, in the first round's order. */
  readonly ids: readonly ContenderId[];
  /** Time pub/sub messages and release requests in the workers (diagnostic). */
  readonly trace: boolean;
  /** Write a CPU profile per worker process there (diagnostic). */
  readonly profileDir?: string;
}

/**
 * Every implementation of `ids` in `rounds` rounds, the order rotated each
 * round; each run in fresh worker processes on a key of its own. Returns the
 * summary per implementation, with all runs' waits pooled (for the chart).
 */
export async function benchContended(url: string, admin: Redis, options: ContendedOptions): Promise<(ContendedSummary & { waits: number[] })[]> {
  const c = options.settings;
  const ids = options.ids;
  const byId = new Map<ContenderId, RunOutcome[]>(ids.map((id) => [id, []]));
  for (let r = 0; r < c.rounds; r++) {
    const order = rotation(ids, r);
    for (const [i, id] of order.entries()) {
      const outcome = await contendedRun(id, r, i + 1, url, admin, options);
      byId.get(id)!.push(outcome);
      const { run } = outcome;
      log(
        `  round ${r + 1}/${c.rounds}, ${LABELS[id].padEnd(30)} ${fmt(run.perSec).padStart(5)}/s = ${fmt(run.toIdeal, 2)} x ideal ${fmt(run.idealPerSec)}/s` +
          ` (hold ${ms(run.ideal.holdMeanMs, 3)} + rtt ${ms(run.ideal.rttP50Ms, 3)}); hand-over p50 ${ms(run.handoffMs.p50, 2)}; owner changes ${fmt(run.ownerChangesPct, 1)}%;` +
          ` wait p50 ${ms(run.waitMs.p50, 1)}, p99 ${ms(run.waitMs.p99, 1)}, max ${ms(run.waitMs.max, 1)}; give-ups ${run.giveUps}` +
          (run.overlaps ? `; OVERLAPS ${run.overlaps}` : '') +
          (run.errors.length ? `; errors: ${run.errors.slice(0, 2).join(' | ')}` : '') +
          `; load ${run.load1.toFixed(2)}`,
      );
      for (const example of run.overlapExamples) log(`    overlap: ${example}`);
      if (run.trace) {
        const t = run.trace;
        log(
          `    trace (p50 / p90): release call to request sent ${ms(t.releaseToSendMs.p50, 3)} / ${ms(t.releaseToSendMs.p90, 3)}, ` +
            `sent to message in the next process ${ms(t.sendToMessageMs.p50, 3)} / ${ms(t.sendToMessageMs.p90, 3)}, ` +
            `message to grant ${ms(t.messageToGrantMs.p50, 3)} / ${ms(t.messageToGrantMs.p90, 3)}; release call ${ms(run.releaseCallMs.p50, 3)}`,
        );
      }
    }
  }
  return ids.map((id) => summarizeContended(id, byId.get(id)!));
}

/** The contended results, one row per implementation. */
export function contendedTable(contended: readonly ContendedSummary[]): string {
  const rows: string[][] = [
    [
      'implementation',
      'sections/s',
      'x ideal',
      'owner changes',
      'wait p50',
      'wait p99',
      'wait max',
      'give-ups',
      'worst run p99 / max',
      'hand-over p50 / p99',
      'requests/section',
      'overlaps',
    ],
  ];
  for (const s of contended) {
    const m = s.median;
    rows.push([
      s.label,
      fmt(m.perSec),
      `${fmt(m.toIdeal, 2)} (ideal ${fmt(m.idealPerSec)})`,
      `${fmt(m.ownerChangesPct, 1)} %`,
      ms(m.waitP50Ms, 1),
      ms(m.waitP99Ms, 1),
      ms(m.waitMaxMs, 1),
      fmt(m.giveUps),
      `${ms(s.worstRun.waitP99Ms, 1)} / ${ms(s.worstRun.waitMaxMs, 1)}`,
      `${ms(m.handoffP50Ms, 2)} / ${ms(m.handoffP99Ms, 1)}`,
      fmt(m.requestsPerSection, 1),
      String(s.overlaps),
    ]);
  }
  return table(rows);
}
