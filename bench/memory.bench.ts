/**
 * The in-memory benchmark: how fast is the library on its default
 * MemoryLockStore, what does @WithLock add over LockService.withLock, and what
 * do 10,000 held locks cost (timers, renewal traffic, heap)?
 *
 *   npm run bench
 *   # = npm run build && tsc -p tsconfig.test.json && node --expose-gc build/bench/memory.bench.js
 *   node --expose-gc build/bench/memory.bench.js --quick   # short smoke run; writes build/bench/results-quick/
 *
 * Everything runs through a real Nest application context with
 * LockModule.forRoot(). Timings are taken in several runs (the machine is
 * shared and noisy) and reported as the median of the runs, with percentiles
 * of per-operation latency measured over batches. Targets come from the issue;
 * PASS/MISS is computed from the figures measured here, never hard-coded.
 *
 * Writes bench/results/memory.json and bench/results/memory.svg.
 */
import 'reflect-metadata';
import { createHook } from 'node:async_hooks';
import { mkdirSync, writeFileSync } from 'node:fs';
import { relative } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Inject, Injectable, Module, type DynamicModule, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  LockModule,
  LockService,
  MemoryLockStore,
  WithLock,
  type AcquireRequest,
  type AcquireResult,
  type Clock,
  type Lock,
  type LockStore,
  type LockStoreTraits,
  type RenewRequest,
  type RenewResult,
  type Timer,
} from 'nestjs-distributed-lock';
import { renderChart } from './support/chart.js';
import { environment, repoRoot } from './support/env.js';
import { log, mark, rotation, table } from './support/report.js';
import { fmt, median, round, roundSummary, summarize, type Summary } from './support/stats.js';

// ---------------------------------------------------------------- settings

const QUICK = process.argv.includes('--quick');

const config = {
  throughput: { warmupMs: QUICK ? 300 : 1_500, runs: QUICK ? 3 : 7, runMs: QUICK ? 300 : 1_000, batch: 1_000 },
  pieces: { runs: QUICK ? 3 : 5, asyncMs: QUICK ? 150 : 400, batch: 1_000 },
  /** Each run interleaves the variants batch by batch (rotating order), so they share the machine's noise. */
  overhead: { warmupMs: QUICK ? 300 : 1_000, runs: QUICK ? 3 : 9, targetRunMs: QUICK ? 150 : 600, batch: 500 },
  held: { locks: 10_000, ttlMs: 3_000, holdMs: QUICK ? 2_500 : 5_000, memoryRounds: QUICK ? 2 : 5, loopDelayResolutionMs: 1 },
};

const TARGETS = {
  pairsPerSec: 500_000,
  withLockOverheadNs: 2_000,
  /** "No timer storm": a per-lock design would keep ~10,000 timers alive; grouped renewal needs a handful. */
  maxLiveTimers: 3,
  /** ...and would create at least one Timeout per lock; at most 1% of that passes. */
  maxTimeoutsCreatedPerLock: 0.01,
  /** "Renewals grouped": a per-lock design renews 1 lock per store call. */
  minLocksPerRenewCall: 1_000,
};

const gc = (): void => {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (collect) {
    collect();
    collect();
  }
};

// ---------------------------------------------------------------- timing helpers

interface Timed {
  readonly ops: number;
  readonly ms: number;
  /** CPU time of the process (user + system, all threads) over the same span. */
  readonly cpuMs: number;
  readonly opsPerSec: number;
  readonly nsPerOp: number;
  /** Mean ns per operation of each batch: the latency distribution the percentiles come from. */
  readonly batchNs: number[];
}

function timed(ops: number, ms: number, cpu: NodeJS.CpuUsage, batchNs: number[]): Timed {
  return { ops, ms, cpuMs: (cpu.user + cpu.system) / 1_000, opsPerSec: ops / (ms / 1_000), nsPerOp: (ms * 1e6) / ops, batchNs };
}

/** Runs `body(batch)` repeatedly for about `ms`. */
async function runFor(ms: number, batch: number, body: (n: number) => Promise<void>): Promise<Timed> {
  const batchNs: number[] = [];
  let ops = 0;
  const cpu = process.cpuUsage();
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    const t0 = now;
    await body(batch);
    now = performance.now();
    batchNs.push(((now - t0) * 1e6) / batch);
    ops += batch;
  }
  return timed(ops, now - start, process.cpuUsage(cpu), batchNs);
}

// ---------------------------------------------------------------- the application under test

const KEY = 'bench:k';

@Injectable()
class Worker {
  constructor(@Inject(LockService) private readonly locks: LockService) {}

  /** The method under @WithLock. */
  @WithLock(KEY)
  async decorated(n: number): Promise<number> {
    return n + 1;
  }

  /** The same body, undecorated: run bare or through locks.withLock. */
  async plain(n: number): Promise<number> {
    return n + 1;
  }

  /** Proves the decorator really locks through this application's LockService. */
  @WithLock(KEY)
  async probe(): Promise<string | undefined> {
    return this.locks.current()?.key;
  }
}

async function createApp(lockModule: DynamicModule): Promise<INestApplicationContext> {
  @Module({ imports: [lockModule], providers: [Worker] })
  class BenchModule {}
  return NestFactory.createApplicationContext(BenchModule, { logger: ['error', 'warn'] });
}

// ---------------------------------------------------------------- 1. acquire + release throughput

interface ThroughputResult {
  runs: { pairs: number; ms: number; cpuMs: number; pairsPerSec: number; pairsPerCpuSec: number }[];
  medianPairsPerSec: number;
  /** Pairs per second of this process's CPU time: less sensitive to other processes on a shared machine. */
  medianPairsPerCpuSec: number;
  perPairNs: Summary;
  pass: boolean;
}

async function pairs(locks: LockService, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const lock = await locks.acquire(KEY);
    await lock.release();
  }
}

async function benchThroughput(locks: LockService): Promise<ThroughputResult> {
  const { warmupMs, runs, runMs, batch } = config.throughput;
  await runFor(warmupMs, batch, (n) => pairs(locks, n));
  const results: Timed[] = [];
  for (let r = 0; r < runs; r++) {
    gc();
    const result = await runFor(runMs, batch, (n) => pairs(locks, n));
    results.push(result);
    log(
      `  run ${r + 1}/${runs}: ${fmt(result.opsPerSec)} pairs/s (${fmt(result.nsPerOp)} ns/pair; ${fmt(result.ops / (result.cpuMs / 1_000))} per CPU-second)`,
    );
  }
  const medianPairsPerSec = median(results.map((r) => r.opsPerSec));
  return {
    runs: results.map((r) => ({
      pairs: r.ops,
      ms: round(r.ms),
      cpuMs: round(r.cpuMs),
      pairsPerSec: Math.round(r.opsPerSec),
      pairsPerCpuSec: Math.round(r.ops / (r.cpuMs / 1_000)),
    })),
    medianPairsPerSec: Math.round(medianPairsPerSec),
    medianPairsPerCpuSec: Math.round(median(results.map((r) => r.ops / (r.cpuMs / 1_000)))),
    perPairNs: roundSummary(summarize(results.flatMap((r) => r.batchNs))),
    pass: medianPairsPerSec >= TARGETS.pairsPerSec,
  };
}

// ---------------------------------------------------------------- 1b. where an acquire+release pair spends its time

interface Piece {
  readonly name: string;
  readonly what: string;
  readonly run: () => Promise<number>;
}

interface PiecesResult {
  nsPerOp: Record<string, number>;
  notes: Record<string, string>;
  runs: Record<string, number[]>;
}


async function benchPieces(locks: LockService): Promise<PiecesResult> {
  const { runs, asyncMs, batch } = config.pieces;
  const bare = new MemoryLockStore();
  const owner = 'bench-owner';
  const noop = (): void => {};
  const storeKey = `:${KEY}`;
  const pieces: Piece[] = [
    {
      name: 'service pair',
      what: 'await locks.acquire(key) + await lock.release() (the figure of section 1)',
      run: async () => (await runFor(asyncMs, batch, (n) => pairs(locks, n))).nsPerOp,
    },
    {
      name: 'store pair',
      what: 'await store.acquire({...}) + await store.release(key, owner) on a bare MemoryLockStore',
      run: async () =>
        (
          await runFor(asyncMs, batch, async (n) => {
            for (let i = 0; i < n; i++) {
              await bare.acquire({ key: storeKey, owner, ttl: 30_000, wait: 0, onLost: noop });
              await bare.release(storeKey, owner);
            }
          })
        ).nsPerOp,
    },
  ];
  const samples: Record<string, number[]> = Object.fromEntries(pieces.map((p) => [p.name, []]));
  for (const piece of pieces) await piece.run(); // warm-up
  for (let r = 0; r < runs; r++) {
    for (const piece of rotation(pieces, r)) {
      gc();
      samples[piece.name]!.push(await piece.run());
    }
  }
  await bare.close();
  return {
    nsPerOp: Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, round(median(values))])),
    notes: Object.fromEntries(pieces.map((p) => [p.name, p.what])),
    runs: Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, values.map((v) => round(v))])),
  };
}

// ---------------------------------------------------------------- 2. @WithLock vs LockService.withLock

type Variant = '@WithLock' | 'withLock' | 'no lock';

interface OverheadResult {
  batch: number;
  batchesPerRun: number;
  runs: { ns: Record<Variant, number>; diffNs: number }[];
  medianNs: Record<Variant, number>;
  /** Per-call ns of each batch. */
  perCallNs: Record<Variant, Summary>;
  /** Median over runs of (@WithLock - withLock) ns per call, each difference taken within one run. */
  medianDiffNs: number;
  diffRangeNs: [number, number];
  /** (@WithLock - withLock) of back-to-back batch pairs, over all runs. */
  pairedBatchDiffNs: Summary;
  pass: boolean;
}

async function benchOverhead(locks: LockService, worker: Worker): Promise<OverheadResult> {
  const { warmupMs, runs, targetRunMs, batch } = config.overhead;
  const bodies: Record<Variant, (n: number) => Promise<void>> = {
    '@WithLock': async (n) => {
      for (let i = 0; i < n; i++) await worker.decorated(i);
    },
    withLock: async (n) => {
      for (let i = 0; i < n; i++) await locks.withLock(KEY, () => worker.plain(i));
    },
    'no lock': async (n) => {
      for (let i = 0; i < n; i++) await worker.plain(i);
    },
  };
  const variants = Object.keys(bodies) as Variant[];
  for (const variant of variants) await runFor(warmupMs / variants.length, batch, bodies[variant]);
  // Calibrate: a run is `batchesPerRun` rounds of one batch of each variant, about targetRunMs in all.
  const probe = (await runFor(100, batch, bodies['@WithLock'])).nsPerOp + (await runFor(100, batch, bodies.withLock)).nsPerOp;
  const batchesPerRun = Math.max(5, Math.round((targetRunMs * 1e6) / (probe * batch)));
  const perRun: OverheadResult['runs'] = [];
  const batchNs: Record<Variant, number[]> = { '@WithLock': [], withLock: [], 'no lock': [] };
  const pairedDiffs: number[] = [];
  for (let r = 0; r < runs; r++) {
    gc();
    const totalMs: Record<Variant, number> = { '@WithLock': 0, withLock: 0, 'no lock': 0 };
    for (let b = 0; b < batchesPerRun; b++) {
      const nsThisRound = {} as Record<Variant, number>;
      for (const variant of rotation(variants, r + b)) {
        const t0 = performance.now();
        await bodies[variant](batch);
        const dt = performance.now() - t0;
        totalMs[variant] += dt;
        nsThisRound[variant] = (dt * 1e6) / batch;
        batchNs[variant].push(nsThisRound[variant]);
      }
      pairedDiffs.push(nsThisRound['@WithLock'] - nsThisRound.withLock);
    }
    const calls = batchesPerRun * batch;
    const ns = {
      '@WithLock': (totalMs['@WithLock'] * 1e6) / calls,
      withLock: (totalMs.withLock * 1e6) / calls,
      'no lock': (totalMs['no lock'] * 1e6) / calls,
    };
    const diffNs = ns['@WithLock'] - ns.withLock;
    perRun.push({ ns: { '@WithLock': round(ns['@WithLock']), withLock: round(ns.withLock), 'no lock': round(ns['no lock']) }, diffNs: round(diffNs) });
    log(
      `  run ${r + 1}/${runs}: @WithLock ${fmt(ns['@WithLock'])} ns, withLock ${fmt(ns.withLock)} ns, no lock ${fmt(ns['no lock'])} ns, difference ${fmt(diffNs)} ns`,
    );
  }
  const diffs = perRun.map((r) => r.diffNs);
  const medianDiffNs = median(diffs);
  return {
    batch,
    batchesPerRun,
    runs: perRun,
    medianNs: {
      '@WithLock': round(median(perRun.map((r) => r.ns['@WithLock']))),
      withLock: round(median(perRun.map((r) => r.ns.withLock))),
      'no lock': round(median(perRun.map((r) => r.ns['no lock']))),
    },
    perCallNs: {
      '@WithLock': roundSummary(summarize(batchNs['@WithLock'])),
      withLock: roundSummary(summarize(batchNs.withLock)),
      'no lock': roundSummary(summarize(batchNs['no lock'])),
    },
    medianDiffNs: round(medianDiffNs),
    diffRangeNs: [Math.min(...diffs), Math.max(...diffs)],
    pairedBatchDiffNs: roundSummary(summarize(pairedDiffs)),
    pass: medianDiffNs < TARGETS.withLockOverheadNs,
  };
}

// ---------------------------------------------------------------- 3. 10,000 locks held at once

/** The system clock (performance.now, Node timers, unref'd unless keepAlive), counting the timers the library makes through it. */
class CountingClock implements Clock {
  created = 0;
  cancelled = 0;
  fired = 0;
  live = 0;
  peakLive = 0;

  now(): number {
    return performance.now();
  }

  setTimer(fn: () => void, ms: number, keepAlive = false): Timer {
    this.created++;
    this.live++;
    if (this.live > this.peakLive) this.peakLive = this.live;
    let done = false;
    const handle = setTimeout(() => {
      if (!done) {
        done = true;
        this.live--;
        this.fired++;
      }
      fn();
    }, ms);
    if (!keepAlive) handle.unref();
    return {
      cancel: () => {
        if (!done) {
          done = true;
          this.live--;
          this.cancelled++;
        }
        clearTimeout(handle);
      },
    };
  }

  resetPeak(): void {
    this.peakLive = this.live;
  }
}

interface RenewCall {
  /** ms since the first lock of the hold phase was acquired */
  at: number;
  locks: number;
  /** time inside the real store's renew, ms */
  storeMs: number;
}

/** The real MemoryLockStore behind a thin wrapper that counts every call and delegates it unchanged. */
class CountingStore implements LockStore {
  readonly traits: LockStoreTraits;
  readonly clock: Clock;
  acquires = 0;
  releases = 0;
  renewCalls: RenewCall[] = [];
  origin = 0;

  constructor(private readonly inner: MemoryLockStore) {
    this.traits = inner.traits;
    this.clock = inner.clock;
  }

  acquire(request: AcquireRequest): Promise<AcquireResult> {
    this.acquires++;
    return this.inner.acquire(request);
  }

  renew(requests: readonly RenewRequest[]): Promise<readonly RenewResult[]> {
    const start = performance.now();
    const result = this.inner.renew(requests);
    this.renewCalls.push({ at: round(start - this.origin), locks: requests.length, storeMs: round(performance.now() - start, 2) });
    return result;
  }

  release(key: string, owner: string): Promise<boolean> {
    this.releases++;
    return this.inner.release(key, owner);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * Counts Timeout handles created anywhere in the process, ref'd or not
 * (process.getActiveResourcesInfo lists only ref'd ones, and the library unrefs its timers).
 */
class TimeoutCounter {
  created = 0;
  private readonly hook = createHook({
    init: (_id, type) => {
      if (type === 'Timeout') this.created++;
    },
  });

  start(): void {
    this.hook.enable();
  }

  stop(): void {
    this.hook.disable();
  }
}

const refedTimeouts = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

interface HeldResult {
  locks: number;
  ttlMs: number;
  holdMs: number;
  /** Sequential acquisition / release of all the locks, median of the memory rounds. */
  acquireAllMs: number;
  releaseAllMs: number;
  memory: { rounds: number[]; medianBytesPerLock: number; heapBeforeMiB: number; heapHeldMiB: number };
  timers: {
    libraryTimersCreated: number;
    libraryTimersFired: number;
    libraryTimersCancelled: number;
    libraryPeakLive: number;
    libraryLiveAfterRelease: number;
    /** Timeout handles created in the whole process while acquiring and holding, ref'd or not (async_hooks), less the bench's own sleep. */
    processTimeoutsCreated: number;
    refedTimeoutsBefore: number;
    refedTimeoutsHolding: number;
  };
  renewals: {
    calls: RenewCall[];
    totalLocksRenewed: number;
    locksPerCall: Summary;
    intervalMs: Summary;
    nominalIntervalMs: number;
    renewalsPerLock: number;
  };
  /** Event-loop lag while holding: monitorEventLoopDelay readings less its 1 ms sampling interval. */
  eventLoopLagMs: { p50: number; p99: number; max: number };
  heldAtEnd: number;
  lost: number;
  pass: { timers: boolean; grouped: boolean; allHeld: boolean };
}

async function benchHeld(): Promise<HeldResult> {
  const { locks: count, ttlMs, holdMs, memoryRounds } = config.held;
  const clock = new CountingClock();
  const store = new CountingStore(new MemoryLockStore({ clock }));
  const app = await createApp(LockModule.forRoot({ store, ttl: ttlMs }));
  const locks = app.get(LockService);
  let lost = 0;
  locks.onLost(() => lost++);
  const keys = Array.from({ length: count }, (_, i) => `held:${i}`);
  const held: (Lock | null)[] = new Array<Lock | null>(count).fill(null);

  const acquireAll = async (): Promise<number> => {
    const start = performance.now();
    for (let i = 0; i < count; i++) held[i] = await locks.acquire(keys[i]!);
    return performance.now() - start;
  };
  const acquireMs: number[] = [];
  const releaseMs: number[] = [];
  const releaseAll = async (): Promise<number> => {
    const start = performance.now();
    for (let i = 0; i < count; i++) {
      await held[i]!.release();
      held[i] = null;
    }
    return performance.now() - start;
  };

  // Heap per held lock: the keys and the array holding the handles exist before the baseline,
  // so the difference is what the library (service, handle, scheduler, store) keeps per lock.
  await acquireAll(); // warm-up: JIT, and the store's Map grows to size once
  await releaseAll();
  const rounds: number[] = [];
  let heapBefore = 0;
  let heapHeld = 0;
  for (let r = 0; r < memoryRounds; r++) {
    gc();
    heapBefore = process.memoryUsage().heapUsed;
    acquireMs.push(await acquireAll());
    gc();
    heapHeld = process.memoryUsage().heapUsed;
    rounds.push(round((heapHeld - heapBefore) / count));
    releaseMs.push(await releaseAll());
  }
  log(`  heap per held lock, ${memoryRounds} rounds: ${rounds.map((b) => fmt(b)).join(', ')} bytes`);

  // Hold phase: 10,000 locks for a few renewal periods, counting timers and renewals.
  gc();
  const tracker = new TimeoutCounter();
  tracker.start();
  const refedTimeoutsBefore = refedTimeouts();
  const createdBefore = clock.created;
  const firedBefore = clock.fired;
  const cancelledBefore = clock.cancelled;
  clock.resetPeak();
  store.renewCalls = [];
  const resolution = config.held.loopDelayResolutionMs;
  const delay = monitorEventLoopDelay({ resolution });
  store.origin = performance.now();
  const acquiredIn = await acquireAll();
  delay.enable();
  const refedTimeoutsHolding = refedTimeouts();
  await sleep(holdMs - acquiredIn); // the bench's one own Timeout while holding
  delay.disable();
  const heldAtEnd = held.filter((lock) => lock?.held === true).length;
  const processTimeoutsCreated = tracker.created - 1;
  tracker.stop();
  await releaseAll();
  const lag = (ns: number): number => round(Math.max(0, ns / 1e6 - resolution), 2);

  const calls = store.renewCalls;
  const intervals = calls.slice(1).map((c, i) => c.at - calls[i]!.at);
  const totalLocksRenewed = calls.reduce((sum, c) => sum + c.locks, 0);
  const result: HeldResult = {
    locks: count,
    ttlMs,
    holdMs,
    acquireAllMs: round(median(acquireMs)),
    releaseAllMs: round(median(releaseMs)),
    memory: {
      rounds,
      medianBytesPerLock: round(median(rounds)),
      heapBeforeMiB: round(heapBefore / 2 ** 20, 2),
      heapHeldMiB: round(heapHeld / 2 ** 20, 2),
    },
    timers: {
      libraryTimersCreated: clock.created - createdBefore,
      libraryTimersFired: clock.fired - firedBefore,
      libraryTimersCancelled: clock.cancelled - cancelledBefore,
      libraryPeakLive: clock.peakLive,
      libraryLiveAfterRelease: clock.live,
      processTimeoutsCreated,
      refedTimeoutsBefore,
      refedTimeoutsHolding,
    },
    renewals: {
      calls,
      totalLocksRenewed,
      locksPerCall: roundSummary(summarize(calls.map((c) => c.locks))),
      intervalMs: roundSummary(summarize(intervals)),
      nominalIntervalMs: round(ttlMs / 3),
      renewalsPerLock: round(totalLocksRenewed / count, 2),
    },
    eventLoopLagMs: { p50: lag(delay.percentile(50)), p99: lag(delay.percentile(99)), max: lag(delay.max) },
    heldAtEnd,
    lost,
    pass: {
      timers: clock.peakLive <= TARGETS.maxLiveTimers && processTimeoutsCreated <= TARGETS.maxTimeoutsCreatedPerLock * count,
      grouped: calls.length > 0 && totalLocksRenewed / calls.length >= TARGETS.minLocksPerRenewCall,
      allHeld: heldAtEnd === count && lost === 0,
    },
  };
  await app.close();
  await store.close();
  return result;
}

// ---------------------------------------------------------------- report

async function main(): Promise<void> {
  const env = environment();
  const startedAt = new Date();
  log(`nestjs-distributed-lock in-memory benchmark${QUICK ? ' (--quick: short smoke run, written under build/, not bench/results)' : ''}`);
  log(`node ${env.node} (V8 ${env.v8}) on ${env.os}; ${env.cpus} x ${env.cpu}; ${env.memoryGiB} GiB; load ${env.loadAverage.join(' ')}`);
  log(`packages: ${Object.entries(env.packages).map(([name, version]) => `${name} ${version}`).join(', ')}; revision ${env.revision}`);
  if (!env.exposeGc) log('warning: run with node --expose-gc; without it heap figures and run-to-run noise are worse');
  log();

  const app = await createApp(LockModule.forRoot()); // the default MemoryLockStore
  const locks = app.get(LockService);
  const worker = app.get(Worker);
  if (locks.store.traits.name !== 'memory') throw new Error(`expected the default MemoryLockStore, got ${locks.store.traits.name}`);

  // Sections 1 and 1b run before anything calls withLock / @WithLock: on Node 20 the first
  // AsyncLocalStorage.run turns on promise hooks for the whole process, and they stay on.
  log(`1. Uncontended acquire + release pairs through LockService (${config.throughput.runs} runs of ~${config.throughput.runMs} ms, batches of ${config.throughput.batch})`);
  const throughput = await benchThroughput(locks);
  log();
  log(`1b. Where a pair spends its time (median of ${config.pieces.runs} alternating runs)`);
  const pieces = await benchPieces(locks);
  for (const [name, ns] of Object.entries(pieces.nsPerOp)) log(`  ${name.padEnd(18)} ${fmt(ns).padStart(6)} ns   ${pieces.notes[name]}`);
  log();

  const probeKey = await worker.probe();
  if (probeKey !== KEY) throw new Error(`@WithLock did not run under the lock (current() = ${String(probeKey)})`);
  log(
    `2. @WithLock method vs the same body under locks.withLock (${config.overhead.runs} runs; variants interleaved in batches of ${config.overhead.batch}, order rotated)`,
  );
  const overhead = await benchOverhead(locks, worker);
  const alsPairs: number[] = [];
  for (let r = 0; r < config.pieces.runs; r++) {
    gc();
    alsPairs.push((await runFor(config.pieces.asyncMs, config.pieces.batch, (n) => pairs(locks, n))).nsPerOp);
  }
  const alsName = 'pair, ALS on';
  pieces.nsPerOp[alsName] = round(median(alsPairs));
  pieces.runs[alsName] = alsPairs.map((v) => round(v));
  pieces.notes[alsName] =
    'the same pair after the first withLock/@WithLock: AsyncLocalStorage has turned on promise hooks for the process (Node 20)';
  log(`  acquire + release after the first withLock (AsyncLocalStorage hooks on): ${fmt(pieces.nsPerOp[alsName])} ns/pair`);
  await app.close();
  log();
  log(`3. ${fmt(config.held.locks)} locks held at once (ttl ${config.held.ttlMs} ms, held ~${config.held.holdMs} ms)`);
  const held = await benchHeld();
  log(
    `  renew calls: ${held.renewals.calls.map((c) => `${fmt(c.locks)} locks @${fmt(c.at)}ms`).join(', ')}`,
  );
  log();

  const pt = throughput.perPairNs;
  const oc = overhead.perCallNs;
  const pd = overhead.pairedBatchDiffNs;
  const iv = held.renewals.intervalMs;
  const alsNs = pieces.nsPerOp[alsName]!;
  log('Results (medians of runs; percentiles over batches of calls)');
  log(
    table([
      ['measure', 'median of runs', 'spread', 'target', 'result'],
      [
        'acquire+release pairs/s (LockService)',
        `${fmt(throughput.medianPairsPerSec)} /s`,
        `per pair p50 ${fmt(pt.p50)} ns, p99 ${fmt(pt.p99)} ns`,
        `>= ${fmt(TARGETS.pairsPerSec)} /s`,
        mark(throughput.pass),
      ],
      ['  same, per CPU-second of the process', `${fmt(throughput.medianPairsPerCpuSec)} /s`, 'less sensitive to other processes', 'report', ''],
      ['  same, after the first withLock (ALS on)', `${fmt(1e9 / alsNs)} /s`, `${fmt(alsNs)} ns per pair`, 'report', ''],
      ['@WithLock method call', `${fmt(overhead.medianNs['@WithLock'])} ns`, `p50 ${fmt(oc['@WithLock'].p50)} ns, p99 ${fmt(oc['@WithLock'].p99)} ns`, '', ''],
      ['locks.withLock call', `${fmt(overhead.medianNs.withLock)} ns`, `p50 ${fmt(oc.withLock.p50)} ns, p99 ${fmt(oc.withLock.p99)} ns`, '', ''],
      ['same call, no lock', `${fmt(overhead.medianNs['no lock'])} ns`, `p50 ${fmt(oc['no lock'].p50)} ns, p99 ${fmt(oc['no lock'].p99)} ns`, '', ''],
      [
        '@WithLock minus withLock, per call',
        `${fmt(overhead.medianDiffNs)} ns`,
        `runs ${fmt(overhead.diffRangeNs[0])} .. ${fmt(overhead.diffRangeNs[1])} ns; batch pairs p50 ${fmt(pd.p50)}, p90 ${fmt(pd.p90)} ns`,
        `< ${fmt(TARGETS.withLockOverheadNs)} ns`,
        mark(overhead.pass),
      ],
      [
        `timers, ${fmt(held.locks)} locks held`,
        `${held.timers.libraryPeakLive} live at most`,
        `${held.timers.libraryTimersCreated} made by the library, ${held.timers.processTimeoutsCreated} Timeouts in the process`,
        `<= ${TARGETS.maxLiveTimers} live, <= ${fmt(TARGETS.maxTimeoutsCreatedPerLock * held.locks)} made`,
        mark(held.pass.timers),
      ],
      [
        'locks per store.renew call',
        `${fmt(held.renewals.locksPerCall.p50)}`,
        `${held.renewals.calls.length} calls` + (iv.n > 0 ? `, every ${fmt(iv.p50)} ms (ttl/3 = ${fmt(held.renewals.nominalIntervalMs)} ms)` : ''),
        `>= ${fmt(TARGETS.minLocksPerRenewCall)}`,
        mark(held.pass.grouped),
      ],
      ['still held at the end', `${fmt(held.heldAtEnd)} / ${fmt(held.locks)}`, `${held.lost} lost`, 'all', mark(held.pass.allHeld)],
      ['heap per held lock', `${fmt(held.memory.medianBytesPerLock)} bytes`, `rounds ${held.memory.rounds.map((b) => fmt(b)).join(', ')}`, 'report', ''],
      [
        'event-loop lag while holding',
        `p50 ${fmt(held.eventLoopLagMs.p50, 2)} ms`,
        `p99 ${fmt(held.eventLoopLagMs.p99, 2)} ms, max ${fmt(held.eventLoopLagMs.max, 2)} ms`,
        'report',
        '',
      ],
    ]),
  );
  log();
  log(
    `Timers: process.getActiveResourcesInfo() lists ${held.timers.refedTimeoutsBefore} 'Timeout' before and ${held.timers.refedTimeoutsHolding} while holding, ` +
      `but it lists only ref'd timers and the library unrefs its own; so library timers were counted through the store's clock, ` +
      `and Timeouts made anywhere in the process with an async_hooks 'Timeout' hook (the bench's own sleep excluded).`,
  );
  log(
    `Hold: acquiring ${fmt(held.locks)} locks one after another took ${fmt(held.acquireAllMs)} ms, releasing them ${fmt(held.releaseAllMs)} ms; ` +
      `${fmt(held.renewals.renewalsPerLock, 2)} renewals per lock in ${fmt(held.holdMs)} ms; library timers live after release: ${held.timers.libraryLiveAfterRelease}.`,
  );

  const output = {
    benchmark: 'memory',
    question:
      'In-memory store: acquire+release pairs per second through LockService, @WithLock overhead over LockService.withLock, and the cost of 10,000 held locks.',
    command: 'npm run bench  (node --expose-gc build/bench/memory.bench.js)',
    startedAt: startedAt.toISOString(),
    durationS: round((Date.now() - startedAt.getTime()) / 1_000),
    environment: env,
    config,
    targets: TARGETS,
    pass: {
      pairsPerSec: throughput.pass,
      withLockOverhead: overhead.pass,
      heldTimers: held.pass.timers,
      heldRenewalsGrouped: held.pass.grouped,
      heldAllStillHeld: held.pass.allHeld,
    },
    throughput,
    pieces,
    overhead,
    held,
  };

  // --quick writes next to the compiled script (build/ is not committed), so a smoke run never replaces the cited results.
  const dir = QUICK ? new URL('results-quick/', import.meta.url) : new URL('bench/results/', repoRoot);
  mkdirSync(dir, { recursive: true });
  writeFileSync(new URL('memory.json', dir), JSON.stringify(output, null, 2) + '\n');
  writeFileSync(new URL('memory.svg', dir), chart(output));
  log();
  log(`Wrote ${relative(fileURLToPath(repoRoot), fileURLToPath(new URL('memory.json', dir)))} and memory.svg next to it`);
}

function chart(output: {
  environment: ReturnType<typeof environment>;
  throughput: ThroughputResult;
  pieces: PiecesResult;
  overhead: OverheadResult;
  held: HeldResult;
}): string {
  const { environment: env, throughput, pieces, overhead, held } = output;
  const pieceNames = Object.keys(pieces.nsPerOp);
  const runLabels = (n: number) => Array.from({ length: n }, (_, i) => `run ${i + 1}`);
  return renderChart(
    'nestjs-distributed-lock, in-memory store',
    `node ${env.node}, ${env.cpus} x ${env.cpu}, ${env.os}; @nestjs/core ${env.packages['@nestjs/core']}; ${output.environment.revision}`,
    [
      {
        title: `Uncontended acquire + release through LockService: median ${fmt(throughput.medianPairsPerSec)} pairs/s (${mark(throughput.pass)})`,
        xLabel: 'run (each ~1 s, after warm-up)',
        yLabel: 'pairs per second',
        categories: runLabels(throughput.runs.length),
        series: [{ name: 'pairs/s', color: '#4c78a8', values: throughput.runs.map((r) => r.pairsPerSec) }],
        lines: [
          { value: TARGETS.pairsPerSec, label: `target ${fmt(TARGETS.pairsPerSec / 1e3)}k/s`, color: '#d62728', dashed: true },
          { value: throughput.medianPairsPerSec, label: `median ${fmt(throughput.medianPairsPerSec / 1e3)}k/s`, color: '#2a4d74' },
        ],
        valueLabels: true,
      },
      {
        title: 'Where an acquire + release pair spends its time (each piece measured alone)',
        xLabel: 'piece',
        yLabel: 'ns per operation',
        categories: pieceNames,
        series: [{ name: 'ns/op', color: '#72b7b2', values: pieceNames.map((name) => pieces.nsPerOp[name]!) }],
        lines: [{ value: 1e9 / TARGETS.pairsPerSec, label: `${fmt(1e9 / TARGETS.pairsPerSec)} ns = ${fmt(TARGETS.pairsPerSec / 1e3)}k/s`, color: '#d62728', dashed: true }],
        valueLabels: true,
        format: (v) => fmt(v),
      },
      {
        title: `Cost per call: @WithLock minus withLock = ${fmt(overhead.medianDiffNs)} ns median (target < ${fmt(TARGETS.withLockOverheadNs)} ns, ${mark(overhead.pass)})`,
        xLabel: 'run (variant order rotated each run)',
        yLabel: 'ns per call',
        categories: runLabels(overhead.runs.length),
        series: [
          { name: '@WithLock', color: '#f58518', values: overhead.runs.map((r) => r.ns['@WithLock']) },
          { name: 'locks.withLock', color: '#4c78a8', values: overhead.runs.map((r) => r.ns.withLock) },
          { name: 'no lock', color: '#9d9d9d', values: overhead.runs.map((r) => r.ns['no lock']) },
        ],
        lines: [
          {
            value: overhead.medianNs.withLock + TARGETS.withLockOverheadNs,
            label: 'withLock + 2 µs',
            color: '#d62728',
            dashed: true,
          },
        ],
        format: (v) => `${fmt(v)}`,
      },
      {
        title: `${fmt(held.locks)} held locks (ttl ${held.ttlMs / 1000} s): locks per store.renew call; ${held.timers.libraryPeakLive} library timer(s) live at peak`,
        xLabel: 'store.renew call, at ms since the first acquisition',
        yLabel: 'locks renewed in the call',
        categories: held.renewals.calls.map((c) => `${fmt(c.at)}`),
        series: [{ name: 'locks per call', color: '#54a24b', values: held.renewals.calls.map((c) => c.locks) }],
        lines: [{ value: held.locks, label: `${fmt(held.locks)} held`, color: '#2a4d74', dashed: true }],
        valueLabels: true,
        format: (v) => fmt(v),
      },
    ],
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
