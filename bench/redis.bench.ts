/**
 * The Redis benchmark: how does the RedisLockStore, used through LockService
 * of a real Nest application, compare with raw ioredis, redlock 5 and
 * redis-semaphore on one local redis-server?
 *
 *   npm run build && tsc -p tsconfig.test.json && node build/bench/redis.bench.js
 *   node build/bench/redis.bench.js --quick   # short smoke run; writes build/bench/results-quick/
 *   node build/bench/redis.bench.js --only=ours,ring --rounds=6 --seconds=5 --trace   # contended diagnostics only
 *
 * 1. Uncontended: sequential acquire+release pairs in this process, one pair
 *    of every implementation per round (the order rotated), over several
 *    runs; per-pair p50/p99 and the ratio to the raw floor
 *    (SET NX PX + compare-and-delete: two round trips).
 * 2. Contended: 4 processes x 2 workers on one key, each holding it ~1 ms
 *    (`await setTimeout(1)`, the same for everyone), for 10 s; implementations
 *    alternated over several rounds. Throughput and its ratio to the ideal
 *    1 / (hold + one round trip), owner changes, wait percentiles, give-ups.
 *    A "pub/sub ring" runs alongside: not a lock but the cheapest possible
 *    push hand-over (hold, then PUBLISH to the next worker), so what any
 *    fair, push-woken lock pays on this machine is measured in the same run.
 * 3. Renewal of 10,000 locks held through LockService: store calls and
 *    Redis script calls per renewal tick.
 *
 * The script starts its own redis-server (test/support/redis-server.ts) and
 * stops it. Medians over runs; PASS/MISS computed from the figures measured
 * here. Writes bench/results/redis.json and bench/results/redis.svg.
 *
 * Files: redis-contenders.ts (the implementations), redis-uncontended.ts,
 * redis-contended.ts + redis-worker.ts + redis-protocol.ts (the processes),
 * redis-renewal.ts, redis-counters.ts (requests sent, commands Redis ran).
 */
import 'reflect-metadata';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { RedisServer } from '../test/support/redis-server.js';
import { benchContended, contendedTable, type ContendedSummary } from './redis-contended.js';
import { CONTENDED, HOW, LABELS, RAW_RETRY_MS, TTL_MS, UNCONTENDED, WAIT_MS, type ContenderId } from './redis-contenders.js';
import { countSentCommands } from './redis-counters.js';
import { benchRenewal } from './redis-renewal.js';
import { benchUncontended, uncontendedTable, type UncontendedResult } from './redis-uncontended.js';
import { environment, repoRoot, versionOf } from './support/env.js';
import { renderPanels, type BarRow } from './support/percentile-chart.js';
import { log, mark, ms, table, us } from './support/report.js';
import { fmt, round } from './support/stats.js';

// ---------------------------------------------------------------- settings

const QUICK = process.argv.includes('--quick');
/** Diagnostics: `--only=ours,raw` runs just those contended implementations; `--rounds=N`, `--seconds=N` override the contended settings. Such runs write where --quick does. */
const flag = (name: string): string | undefined => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const ONLY = flag('only')?.split(',') as ContenderId[] | undefined;
/** Diagnostics: `--trace` times pub/sub messages in the workers; `--profile=DIR` writes a CPU profile per worker process. */
const TRACE = process.argv.includes('--trace');
const PROFILE = flag('profile');
const CUSTOM = QUICK || ONLY !== undefined || flag('rounds') !== undefined || flag('seconds') !== undefined || TRACE || PROFILE !== undefined;

const config = {
  /** Rounds of one pair per implementation, so they share the machine's drifting load. */
  uncontended: { runs: QUICK ? 5 : 15, batch: QUICK ? 120 : 400, warmupPairs: QUICK ? 200 : 1_000 },
  contended: {
    processes: 4,
    workersPerProcess: 2,
    holdMs: 1,
    hold: 'await setTimeout(1) from node:timers/promises, the same for every implementation',
    runMs: flag('seconds') ? Number(flag('seconds')) * 1_000 : QUICK ? 2_000 : 10_000,
    rounds: flag('rounds') ? Number(flag('rounds')) : QUICK ? 1 : 5,
    warmupPairs: QUICK ? 50 : 200,
    calibrationSamples: 200,
  },
  renewal: { locks: 10_000, ttlMs: 3_000, holdMs: QUICK ? 2_500 : 4_500 },
  ttlMs: TTL_MS,
  waitMs: WAIT_MS,
  rawRetryMs: RAW_RETRY_MS,
};

const TARGETS = {
  throughputToIdeal: 0.85,
  ownerChangesPct: 90,
  waitP99Ms: 25,
  waitMaxMs: 60,
  giveUps: 0,
  uncontendedP50ToFloor: 1.15,
  locksPerRenewRoundTrip: 1_000,
};

const COLORS: Record<ContenderId, string> = {
  ours: '#4c78a8',
  'ours-wait': '#2a4d74',
  store: '#72b7b2',
  raw: '#7f7f7f',
  redlock: '#f58518',
  'redlock-10ms': '#b279a2',
  semaphore: '#54a24b',
  ring: '#bab0ac',
};

// ---------------------------------------------------------------- report

async function main(): Promise<void> {
  const env = environment();
  const startedAt = new Date();
  countSentCommands();
  const contendedOptions = { settings: config.contended, ids: ONLY ?? CONTENDED, trace: TRACE, profileDir: PROFILE };
  const redis = await RedisServer.start();
  const admin = new Redis(redis.url);
  try {
    const redisVersion = /redis_version:(\S+)/.exec(await admin.info('server'))?.[1] ?? 'unknown';
    const packages = { ...env.packages, ioredis: versionOf('ioredis'), redlock: versionOf('redlock'), 'redis-semaphore': versionOf('redis-semaphore') };
    log(`nestjs-distributed-lock Redis benchmark${CUSTOM ? ' (--quick or diagnostic flags: written under build/, not bench/results)' : ''}`);
    log(`node ${env.node} (V8 ${env.v8}) on ${env.os}; ${env.cpus} x ${env.cpu}; ${env.memoryGiB} GiB; load ${env.loadAverage.join(' ')}`);
    log(`redis-server ${redisVersion} on ${redis.url} (started by the bench, no persistence)`);
    log(`packages: ${Object.entries(packages).map(([name, version]) => `${name} ${version}`).join(', ')}; revision ${env.revision}`);
    log();
    log('Implementations (every one with ttl ' + `${TTL_MS} ms):`);
    for (const id of [...CONTENDED, 'ours-wait', 'store'] as const) log(`  ${LABELS[id].padEnd(38)} ${HOW[id]}`);
    log();

    const dir = CUSTOM ? new URL('results-quick/', import.meta.url) : new URL('bench/results/', repoRoot);
    mkdirSync(dir, { recursive: true });
    if (ONLY) {
      // Diagnostic: the contended runs of the implementations named, nothing else.
      const contended = await benchContended(redis.url, admin, contendedOptions);
      log();
      log(contendedTable(contended));
      const file = new URL('redis-diagnostic.json', dir);
      writeFileSync(file, JSON.stringify({ environment: env, config, contended: contended.map(({ waits: _waits, ...rest }) => rest) }, null, 2) + '\n');
      log(`Wrote ${relative(fileURLToPath(repoRoot), fileURLToPath(file))}`);
      return;
    }

    const u = config.uncontended;
    log(`1. Uncontended acquire+release pairs, one process, sequential (${u.runs} runs x ${u.batch} rounds of one pair per implementation, order rotated)`);
    const uncontended = await benchUncontended(redis.url, admin, config.uncontended, TARGETS.uncontendedP50ToFloor);
    log();

    const c = config.contended;
    log(
      `2. Contended: ${c.processes} processes x ${c.workersPerProcess} workers, one key, hold ${c.holdMs} ms (${c.hold}), ${c.runMs / 1_000} s per run, ` +
        `${c.rounds} round(s), order rotated; ours: one Nest app (LockService + RedisLockStore) per process, shared by its ${c.workersPerProcess} workers.`,
    );
    log(
      '   ideal = 1 / (mean hold + median PING), both measured during the run (each process PINGs on a side connection every 20 ms); ' +
        'hand-over = previous holder starting its release to the next grant',
    );
    const contended = await benchContended(redis.url, admin, contendedOptions);
    log();

    const r = config.renewal;
    log(`3. Renewal: ${fmt(r.locks)} locks held through LockService on one RedisLockStore, ttl ${r.ttlMs} ms, for ${r.holdMs} ms`);
    const renewal = await benchRenewal(redis.url, config.renewal, TARGETS.locksPerRenewRoundTrip);
    for (const tick of renewal.ticks) {
      log(
        `  tick @${fmt(tick.at)} ms: ${fmt(tick.locks)} locks in ${tick.roundTrips} script request(s), sent at once (allowed ${tick.allowed})` +
          (tick.noscriptRetries ? `, of which ${tick.noscriptRetries} EVAL resent after NOSCRIPT (script not yet cached in Redis)` : '') +
          `; answered in ${ms(tick.ms, 1)}`,
      );
    }
    log(`  acquiring all took ${ms(renewal.acquireAllMs, 0)}, releasing all ${ms(renewal.releaseAllMs, 0)}; held at the end ${fmt(renewal.heldAtEnd)}, lost ${renewal.lost}`);
    log();

    // ------------------------------------------------------------ tables
    log(`Contended (median of ${c.rounds} run(s); waits = request to grant, including retries after a give-up)`);
    log(contendedTable(contended));
    log();
    log(`Uncontended acquire+release pair (${fmt(uncontended.pairsPerVariant)} pairs each; PING p50 ${us(uncontended.pingMs.p50)})`);
    log(uncontendedTable(uncontended));
    log();

    const ours = contended.find((s) => s.id === 'ours')!;
    const pass = {
      throughput: ours.median.toIdeal >= TARGETS.throughputToIdeal,
      ownerChanges: ours.median.ownerChangesPct >= TARGETS.ownerChangesPct,
      waitP99: ours.median.waitP99Ms <= TARGETS.waitP99Ms,
      waitMax: ours.median.waitMaxMs <= TARGETS.waitMaxMs,
      giveUps: ours.runs.every((run) => run.giveUps === TARGETS.giveUps),
      uncontended: uncontended.pass,
      renewal: renewal.pass,
    };
    const peers = contended.filter((s) => s.id !== 'ours' && s.id !== 'ring');
    const peerRange = (pick: (s: ContendedSummary) => number, digits: number, unit = '') =>
      `${fmt(Math.min(...peers.map(pick)), digits)}..${fmt(Math.max(...peers.map(pick)), digits)}${unit}`;
    const ticksAllowed = renewal.ticks.map((t) => `${t.roundTrips}/${t.allowed}`).join(', ');
    log('Targets for nestjs-distributed-lock (medians of runs; peers for comparison)');
    log(
      table([
        ['measure', 'ours', 'peers', 'target', 'result'],
        ['contended throughput / ideal', fmt(ours.median.toIdeal, 3), peerRange((s) => s.median.toIdeal, 2), `>= ${TARGETS.throughputToIdeal}`, mark(pass.throughput)],
        ['owner changes', `${fmt(ours.median.ownerChangesPct, 1)} %`, peerRange((s) => s.median.ownerChangesPct, 1, ' %'), `>= ${TARGETS.ownerChangesPct} %`, mark(pass.ownerChanges)],
        ['wait p99 (8 waiters)', ms(ours.median.waitP99Ms, 1), peerRange((s) => s.median.waitP99Ms, 0, ' ms'), `<= ${TARGETS.waitP99Ms} ms`, mark(pass.waitP99)],
        [
          'wait max (8 waiters)',
          `${ms(ours.median.waitMaxMs, 1)} (worst run ${ms(ours.worstRun.waitMaxMs, 1)})`,
          peerRange((s) => s.median.waitMaxMs, 0, ' ms'),
          `<= ${TARGETS.waitMaxMs} ms`,
          mark(pass.waitMax),
        ],
        ['give-ups', `${ours.runs.map((run) => run.giveUps).join(', ')} per run`, peerRange((s) => s.median.giveUps, 0), '0', mark(pass.giveUps)],
        [
          'uncontended pair p50 / raw floor',
          `${fmt(uncontended.ratioToFloor.ours!.median, 3)} (${us(uncontended.medianP50Ms.ours!)} vs ${us(uncontended.medianP50Ms.raw!)})`,
          `redlock ${fmt(uncontended.ratioToFloor.redlock!.median, 2)}, redis-semaphore ${fmt(uncontended.ratioToFloor.semaphore!.median, 2)}`,
          `<= ${TARGETS.uncontendedP50ToFloor}`,
          mark(pass.uncontended),
        ],
        [
          `renewal of ${fmt(renewal.locks)} locks`,
          `${fmt(renewal.locksPerRoundTrip)} locks per request; requests/allowed per tick ${ticksAllowed}${renewal.coldTicks ? ` (first: cold script cache)` : ''}`,
          '',
          `<= 1 round trip per ${fmt(TARGETS.locksPerRenewRoundTrip)} locks`,
          mark(pass.renewal),
        ],
      ]),
    );
    const ring = contended.find((s) => s.id === 'ring');
    if (ring) {
      log(
        `  against the pub/sub ring (the cheapest push hand-over, same runs): ours ${fmt(ours.median.toIdeal, 2)} x ideal vs ${fmt(ring.median.toIdeal, 2)}; ` +
          `hand-over p50 ${ms(ours.median.handoffP50Ms, 2)} vs ${ms(ring.median.handoffP50Ms, 2)}; ` +
          `wait p99 ${ms(ours.median.waitP99Ms, 1)} vs ${ms(ring.median.waitP99Ms, 1)}, max ${ms(ours.median.waitMaxMs, 1)} vs ${ms(ring.median.waitMaxMs, 1)}`,
      );
    }
    log(
      `  also: uncontended with wait ${WAIT_MS / 1_000} s (the waiting path) ${fmt(uncontended.ratioToFloor['ours-wait']!.median, 3)} x floor; ` +
        `RedisLockStore alone ${fmt(uncontended.ratioToFloor.store!.median, 3)} x floor`,
    );
    const endLoad = os.loadavg().map((l) => l.toFixed(2));
    log(`load average at the end: ${endLoad.join(' ')}`);

    const output = {
      benchmark: 'redis',
      question:
        'RedisLockStore through LockService vs raw ioredis, redlock 5 and redis-semaphore on a local redis-server: contended fairness, throughput and waits (4 processes x 2 workers, 1 ms holds), uncontended pair latency, and renewal round trips for 10,000 held locks.',
      command: 'npm run bench:redis  (node build/bench/redis.bench.js)',
      startedAt: startedAt.toISOString(),
      durationS: round((Date.now() - startedAt.getTime()) / 1_000),
      environment: { ...env, packages, redisServer: redisVersion, loadAverageAtEnd: os.loadavg().map((l) => round(l, 2)) },
      config,
      implementations: Object.fromEntries([...CONTENDED, 'ours-wait', 'store'].map((id) => [id, { label: LABELS[id as ContenderId], how: HOW[id as ContenderId] }])),
      targets: TARGETS,
      pass,
      contended: contended.map(({ waits: _waits, ...rest }) => rest),
      uncontended,
      renewal,
    };
    writeFileSync(new URL('redis.json', dir), JSON.stringify(output, null, 2) + '\n');
    writeFileSync(new URL('redis.svg', dir), chart(env, packages, redisVersion, contended, uncontended));
    log();
    log(`Wrote ${relative(fileURLToPath(repoRoot), fileURLToPath(new URL('redis.json', dir)))} and redis.svg next to it (${fmt((Date.now() - startedAt.getTime()) / 1_000)} s)`);
  } finally {
    await admin.quit().catch(() => admin.disconnect());
    await redis.stop();
  }
}

function chart(
  env: ReturnType<typeof environment>,
  packages: Record<string, string>,
  redisVersion: string,
  contended: (ContendedSummary & { waits: number[] })[],
  uncontended: UncontendedResult,
): string {
  const c = config.contended;
  const msFormat = (v: number): string => (v >= 1_000 ? `${+(v / 1_000).toPrecision(3)} s` : `${+v.toPrecision(3)} ms`);
  const bars = (pick: (s: ContendedSummary) => number, text: (s: ContendedSummary) => string): BarRow[] =>
    contended.map((s) => ({ label: s.label, value: pick(s), color: COLORS[s.id], text: text(s) }));
  return renderPanels(
    'nestjs-distributed-lock on Redis vs raw ioredis, redlock, redis-semaphore',
    `node ${env.node}, ${env.cpus} x ${env.cpu} (shared); redis-server ${redisVersion}; ioredis ${packages.ioredis}, redlock ${packages.redlock}, ` +
      `redis-semaphore ${packages['redis-semaphore']}; ${env.revision}`,
    [
      {
        kind: 'percentiles',
        title: `Wait for the lock: ${c.processes} processes x ${c.workersPerProcess} workers, 1 ms holds, ${c.rounds} x ${c.runMs / 1_000} s each`,
        yLabel: 'wait, request to grant (log scale)',
        format: msFormat,
        series: contended.map((s) => ({
          name: s.label,
          color: COLORS[s.id],
          values: s.waits,
          note: `p99 ${msFormat(s.median.waitP99Ms)}, max ${msFormat(s.median.waitMaxMs)}, ${fmt(s.median.giveUps)} give-ups`,
        })),
        lines: [
          { value: TARGETS.waitP99Ms, label: `target p99 ${TARGETS.waitP99Ms} ms`, color: '#d62728' },
          { value: TARGETS.waitMaxMs, label: `target max ${TARGETS.waitMaxMs} ms`, color: '#8c1d1d' },
        ],
      },
      {
        kind: 'bars',
        title: 'Throughput, as a fraction of ideal 1 / (hold + one round trip)',
        xLabel: 'critical sections per second / ideal (median of runs)',
        format: (v) => v.toFixed(2),
        rows: bars((s) => s.median.toIdeal, (s) => `${s.median.toIdeal.toFixed(2)} (${fmt(s.median.perSec)}/s)`),
        target: { value: TARGETS.throughputToIdeal, label: `target ${TARGETS.throughputToIdeal}`, color: '#d62728' },
      },
      {
        kind: 'bars',
        title: 'Fairness: how often the lock goes to a different worker',
        xLabel: 'owner changes, % of consecutive grants (median of runs)',
        format: (v) => `${v.toFixed(1)} %`,
        rows: bars((s) => s.median.ownerChangesPct, (s) => `${s.median.ownerChangesPct.toFixed(1)} %`),
        target: { value: TARGETS.ownerChangesPct, label: `target ${TARGETS.ownerChangesPct} %`, color: '#d62728' },
      },
      {
        kind: 'bars',
        title: 'Uncontended acquire + release, one process: p50 per pair',
        xLabel: 'µs per pair, median of runs; "x floor" = median of the per-run ratios to raw ioredis (SET NX PX + compare-and-delete)',
        format: (v) => `${fmt(v)} µs`,
        rows: UNCONTENDED.map((id) => ({
          label: LABELS[id],
          value: uncontended.medianP50Ms[id]! * 1_000,
          color: COLORS[id],
          text: `${fmt(uncontended.medianP50Ms[id]! * 1_000)} µs${id === 'raw' ? ' (floor)' : `, ${uncontended.ratioToFloor[id]!.median.toFixed(2)} x floor`}`,
        })),
        target: {
          value: uncontended.medianP50Ms.raw! * 1_000 * TARGETS.uncontendedP50ToFloor,
          label: `${TARGETS.uncontendedP50ToFloor} x floor`,
          color: '#d62728',
        },
      },
    ],
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
