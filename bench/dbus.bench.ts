/**
 * The D-Bus benchmark: what does DbusLockStore, used through LockService,
 * cost over raw dbus-next calls on the same private dbus-daemon?
 *
 *   npm run build && npx tsc -p tsconfig.test.json && node --expose-gc build/bench/dbus.bench.js
 *   node build/bench/dbus.bench.js --quick   # short smoke run; writes build/bench/results-quick/
 *
 * 1. Uncontended: one process takes and releases one free name, again and
 *    again. Raw: `RequestName(DO_NOT_QUEUE)` + `ReleaseName` on one dbus-next
 *    connection; against `locks.acquire(key)` + `lock.release()` through a
 *    real Nest application, and the bare store for reference. Variants
 *    alternate batch by batch (order rotated), over several runs.
 * 2. Contended: 4 worker processes x 2 workers, all on one key, each
 *    critical section held ~1 ms (`setTimeout(1)`). Raw: each worker has its
 *    own connection and queues with `RequestName` (no flags), waits for
 *    `NameAcquired`, releases with `ReleaseName`; against each worker
 *    calling `locks.acquire(key, { wait })` on one LockService per process
 *    (whose store opens the second connection by itself). The two variants
 *    alternate run by run on the same processes. Per run: critical sections
 *    per second, wait (ask -> grant) percentiles, the hand-off gap (one
 *    holder's release -> the next holder's grant, when the next was already
 *    waiting), and FIFO: a caller that asked while another had already been
 *    waiting for more than `fifoMarginMs` must not be served first.
 *
 * Times across processes are readings of the host's monotonic clock, which
 * all processes share. Targets come from the issue; PASS/MISS is computed
 * from the figures measured here. Writes bench/results/dbus.json and .svg.
 */
import 'reflect-metadata';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { relative } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { NameFlag, RequestNameReply, sessionBus, type Message, type MessageBus } from 'dbus-next';
import { LockModule, LockService } from 'nestjs-distributed-lock';
import { DbusLockStore, lockBusName } from 'nestjs-distributed-lock/dbus';
import { DbusDaemon } from '../test/support/dbus-daemon.js';
import { renderChart } from './support/chart.js';
import { environment, repoRoot, versionOf } from './support/env.js';
import { log, mark, rotation, table } from './support/report.js';
import { fmt, median, round, roundSummary, summarize, type Summary } from './support/stats.js';

// ---------------------------------------------------------------- settings

const QUICK = process.argv.includes('--quick');

const config = {
  uncontended: { runs: QUICK ? 3 : 9, batch: QUICK ? 200 : 500, warmupPairs: QUICK ? 300 : 1_500 },
  contended: { processes: 4, workersPerProcess: 2, holdMs: 1, runs: QUICK ? 2 : 5, runMs: QUICK ? 1_000 : 3_000, fifoMarginMs: 5 },
};

/** From the issue. */
const TARGETS = {
  /** Uncontended pair through LockService, p50, at most this times raw dbus-next. */
  maxUncontendedRatio: 1.2,
  /** Contended critical sections/s through LockService, at least this times raw. */
  minContendedRatio: 0.9,
};

/** Measured on this machine when the issue was written, for reference. */
const ISSUE_BASELINE = { pairP50Ms: 0.36, contendedPerSec: 622, waitP99Ms: 21, handoffGapMs: 0.36 };

const hostNow = (): number => Number(process.hrtime.bigint()) / 1e6;

const gc = (): void => (globalThis as { gc?: () => void }).gc?.();

// ---------------------------------------------------------------- raw dbus-next

/**
 * One dbus-next connection used the way a careful raw client uses it. The
 * `NameAcquired` of a queued request can be handed over before the
 * `IN_QUEUE` reply (dbus-next resolves replies through promises but emits
 * signals at once), so the signal is watched from before the request.
 */
class RawLocker {
  private acquiredSeen = false;
  private onAcquired?: () => void;

  private constructor(private readonly bus: MessageBus) {
    bus.on('message', (message: Message) => {
      if (message.type === 4 && message.sender === 'org.freedesktop.DBus' && message.member === 'NameAcquired' && !String(message.body[0]).startsWith(':')) {
        this.acquiredSeen = true;
        this.onAcquired?.();
      }
    });
  }

  static async open(address: string): Promise<RawLocker> {
    const bus = sessionBus({ busAddress: address });
    await new Promise<void>((resolve, reject) => {
      bus.once('connect', resolve);
      bus.once('error', reject);
    });
    return new RawLocker(bus);
  }

  async tryLock(name: string): Promise<boolean> {
    return (await this.bus.requestName(name, NameFlag.DO_NOT_QUEUE)) === RequestNameReply.PRIMARY_OWNER;
  }

  /** Queues for `name` and resolves once it owns it. */
  async lock(name: string): Promise<void> {
    this.acquiredSeen = false;
    const reply = await this.bus.requestName(name, 0);
    if (reply === RequestNameReply.PRIMARY_OWNER || this.acquiredSeen) return;
    if (reply !== RequestNameReply.IN_QUEUE) throw new Error(`RequestName answered ${reply}`);
    await new Promise<void>((resolve) => (this.onAcquired = resolve));
    this.onAcquired = undefined;
  }

  async unlock(name: string): Promise<void> {
    await this.bus.releaseName(name);
  }

  close(): void {
    this.bus.disconnect();
  }
}

// ---------------------------------------------------------------- the application under test

async function createApp(address: string): Promise<INestApplicationContext> {
  @Module({ imports: [LockModule.forRoot({ store: new DbusLockStore({ address }), closeStore: true, ttl: '30s' })] })
  class BenchModule {}
  return NestFactory.createApplicationContext(BenchModule, { logger: ['error', 'warn'] });
}

// ---------------------------------------------------------------- worker process (section 2)

interface Section {
  readonly worker: string;
  /** acquire called */
  readonly asked: number;
  /** lock held */
  readonly granted: number;
  /** release called */
  readonly released: number;
}

interface RunCommand {
  readonly variant: Variant;
  readonly key: string;
  readonly startAt: number;
  readonly runMs: number;
}

type Variant = 'raw dbus-next' | 'LockService';

async function worker(address: string): Promise<void> {
  const { workersPerProcess, holdMs } = config.contended;
  const raw = await Promise.all(Array.from({ length: workersPerProcess }, () => RawLocker.open(address)));
  const app = await createApp(address);
  const locks = app.get(LockService);
  const run = async ({ variant, key, startAt, runMs }: RunCommand): Promise<Section[]> => {
    const name = lockBusName(`:${key}`); // the name LockService uses for `key` (empty keyPrefix)
    const sections: Section[] = [];
    await sleep(Math.max(0, startAt - hostNow()));
    const until = startAt + runMs;
    await Promise.all(
      raw.map(async (connection, w) => {
        const id = `${process.pid}.${w}`;
        while (hostNow() < until) {
          const asked = hostNow();
          if (variant === 'raw dbus-next') {
            await connection.lock(name);
            const granted = hostNow();
            await sleep(holdMs);
            const released = hostNow();
            await connection.unlock(name);
            sections.push({ worker: id, asked, granted, released });
          } else {
            const lock = await locks.acquire(key, { wait: 30_000 });
            const granted = hostNow();
            await sleep(holdMs);
            const released = hostNow();
            await lock.release();
            sections.push({ worker: id, asked, granted, released });
          }
        }
      }),
    );
    return sections;
  };
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const sections = await run(JSON.parse(line) as RunCommand);
    process.stdout.write(`${JSON.stringify({ sections })}\n`);
  }
  for (const connection of raw) connection.close();
  await app.close();
}

/** A worker process and the lines it writes. */
class Worker {
  private readonly lines: string[] = [];
  private waiting?: () => void;

  constructor(private readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      this.lines.push(line);
      this.waiting?.();
    });
    child.stderr!.pipe(process.stderr);
  }

  async next<T>(): Promise<T> {
    while (this.lines.length === 0) {
      if (this.child.exitCode !== null) throw new Error(`worker ${this.child.pid} exited (${this.child.exitCode})`);
      await new Promise<void>((resolve) => (this.waiting = resolve));
    }
    return JSON.parse(this.lines.shift()!) as T;
  }

  send(command: RunCommand): void {
    this.child.stdin!.write(`${JSON.stringify(command)}\n`);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.stdin!.end();
    await exited;
  }
}

// ---------------------------------------------------------------- 1. uncontended

type PairVariant = 'raw dbus-next' | 'LockService' | 'store (no core)';

interface UncontendedResult {
  /** Per run, per variant: p50 of the pairs of that run, ms. */
  runs: Record<PairVariant, number>[];
  medianP50Ms: Record<PairVariant, number>;
  perPairMs: Record<PairVariant, Summary>;
  /** LockService p50 / raw p50, median over runs (each ratio taken within one run). */
  ratio: number;
  pass: boolean;
}

async function benchUncontended(address: string, locks: LockService, store: DbusLockStore): Promise<UncontendedResult> {
  const { runs, batch, warmupPairs } = config.uncontended;
  const raw = await RawLocker.open(address);
  const key = 'bench:uncontended';
  const name = lockBusName(`:${key}`);
  const storeKey = ':bench:bare';
  const noop = (): void => {};
  const bodies: Record<PairVariant, () => Promise<void>> = {
    'raw dbus-next': async () => {
      if (!(await raw.tryLock(name))) throw new Error('raw: the name was busy');
      await raw.unlock(name);
    },
    LockService: async () => {
      const lock = await locks.acquire(key);
      await lock.release();
    },
    'store (no core)': async () => {
      const owner = 'bench';
      const result = await store.acquire({ key: storeKey, owner, ttl: 30_000, wait: 0, onLost: noop });
      if (!result.acquired) throw new Error('store: the key was busy');
      await store.release(storeKey, owner);
    },
  };
  const variants = Object.keys(bodies) as PairVariant[];
  for (const variant of variants) for (let i = 0; i < warmupPairs / variants.length; i++) await bodies[variant]();
  const samples: Record<PairVariant, number[]> = { 'raw dbus-next': [], LockService: [], 'store (no core)': [] };
  const perRun: Record<PairVariant, number>[] = [];
  for (let r = 0; r < runs; r++) {
    gc();
    const thisRun: Record<PairVariant, number[]> = { 'raw dbus-next': [], LockService: [], 'store (no core)': [] };
    // Ten rounds of one small batch per variant, order rotated: the variants share the machine's noise.
    for (let round = 0; round < 10; round++) {
      for (const variant of rotation(variants, r + round)) {
        for (let i = 0; i < batch / 10; i++) {
          const t0 = performance.now();
          await bodies[variant]();
          thisRun[variant].push(performance.now() - t0);
        }
      }
    }
    const p50 = Object.fromEntries(variants.map((v) => [v, median(thisRun[v])])) as Record<PairVariant, number>;
    perRun.push(p50);
    for (const v of variants) samples[v].push(...thisRun[v]);
    log(
      `  run ${r + 1}/${runs}: p50 raw ${fmt(p50['raw dbus-next'] * 1e3)} us, LockService ${fmt(p50.LockService * 1e3)} us, ` +
        `store ${fmt(p50['store (no core)'] * 1e3)} us (ratio ${(p50.LockService / p50['raw dbus-next']).toFixed(2)})`,
    );
  }
  raw.close();
  const ratio = median(perRun.map((p) => p.LockService / p['raw dbus-next']));
  return {
    runs: perRun.map((p) => Object.fromEntries(variants.map((v) => [v, round(p[v], 4)])) as Record<PairVariant, number>),
    medianP50Ms: Object.fromEntries(variants.map((v) => [v, round(median(perRun.map((p) => p[v])), 4)])) as Record<PairVariant, number>,
    perPairMs: Object.fromEntries(variants.map((v) => [v, roundSummary(summarize(samples[v]), 4)])) as Record<PairVariant, Summary>,
    ratio: round(ratio, 3),
    pass: ratio <= TARGETS.maxUncontendedRatio,
  };
}

// ---------------------------------------------------------------- 2. contended

interface ContendedRun {
  variant: Variant;
  sections: number;
  perSec: number;
  waitMs: Summary;
  handoffGapMs: Summary;
  /** Pairs served out of order although the one served later had waited more than fifoMarginMs longer. */
  fifoInversions: number;
  /** Pairs that could be checked (both waited, asked more than fifoMarginMs apart). */
  fifoPairs: number;
  /** Critical sections of the least and most served worker. */
  perWorker: [number, number];
}

interface ContendedResult {
  runs: ContendedRun[];
  median: Record<Variant, { perSec: number; waitP50Ms: number; waitP99Ms: number; handoffGapP50Ms: number; fifoInversions: number }>;
  ratio: number;
  pass: boolean;
}

function analyse(variant: Variant, sections: Section[], startAt: number, runMs: number): ContendedRun {
  const { fifoMarginMs } = config.contended;
  const inWindow = sections.filter((s) => s.granted >= startAt && s.granted < startAt + runMs).sort((a, b) => a.granted - b.granted);
  const waits = inWindow.map((s) => s.granted - s.asked);
  const gaps: number[] = [];
  for (let i = 1; i < inWindow.length; i++) {
    const [before, after] = [inWindow[i - 1]!, inWindow[i]!];
    if (after.asked < before.released) gaps.push(after.granted - before.released);
  }
  // FIFO: for every two sections, the one asked more than the margin earlier, and still waiting when the other asked, goes first.
  let fifoPairs = 0;
  let fifoInversions = 0;
  for (let i = 0; i < inWindow.length; i++) {
    const a = inWindow[i]!;
    for (let j = i + 1; j < inWindow.length; j++) {
      const b = inWindow[j]!; // granted after a
      if (b.asked + fifoMarginMs < a.asked) {
        fifoPairs++;
        fifoInversions++; // b asked well before a, and still waited when a asked, yet a was served first
      } else if (a.asked + fifoMarginMs < b.asked) {
        fifoPairs++;
      }
    }
  }
  const perWorker = new Map<string, number>();
  for (const s of inWindow) perWorker.set(s.worker, (perWorker.get(s.worker) ?? 0) + 1);
  const counts = [...perWorker.values()];
  return {
    variant,
    sections: inWindow.length,
    perSec: round(inWindow.length / (runMs / 1_000)),
    waitMs: roundSummary(summarize(waits), 3),
    handoffGapMs: roundSummary(summarize(gaps), 3),
    fifoInversions,
    fifoPairs,
    perWorker: [Math.min(...counts), Math.max(...counts)],
  };
}

async function benchContended(workers: Worker[]): Promise<ContendedResult> {
  const { runs, runMs } = config.contended;
  const variants: Variant[] = ['raw dbus-next', 'LockService'];
  const runOnce = async (variant: Variant, key: string): Promise<ContendedRun> => {
    const startAt = hostNow() + 200;
    for (const w of workers) w.send({ variant, key, startAt, runMs });
    const results = await Promise.all(workers.map((w) => w.next<{ sections: Section[] }>()));
    return analyse(variant, results.flatMap((r) => r.sections), startAt, runMs);
  };
  for (const variant of variants) await runOnce(variant, `bench:warmup:${variant}`); // warm-up, not recorded
  const results: ContendedRun[] = [];
  for (let r = 0; r < runs; r++) {
    for (const variant of rotation(variants, r)) {
      const result = await runOnce(variant, `bench:contended:${r}:${variant}`);
      results.push(result);
      log(
        `  run ${r + 1}/${runs} ${variant.padEnd(13)}: ${fmt(result.perSec)} sections/s, wait p50 ${fmt(result.waitMs.p50, 2)} ms p99 ${fmt(result.waitMs.p99, 2)} ms, ` +
          `hand-off gap p50 ${fmt(result.handoffGapMs.p50, 3)} ms, FIFO inversions ${result.fifoInversions}/${fmt(result.fifoPairs)}, per worker ${result.perWorker.join('..')}`,
      );
    }
  }
  const of = (variant: Variant) => results.filter((r) => r.variant === variant);
  const medianOf = (variant: Variant) => ({
    perSec: round(median(of(variant).map((r) => r.perSec))),
    waitP50Ms: round(median(of(variant).map((r) => r.waitMs.p50)), 3),
    waitP99Ms: round(median(of(variant).map((r) => r.waitMs.p99)), 3),
    handoffGapP50Ms: round(median(of(variant).map((r) => r.handoffGapMs.p50)), 3),
    fifoInversions: of(variant).reduce((sum, r) => sum + r.fifoInversions, 0),
  });
  const median_ = { 'raw dbus-next': medianOf('raw dbus-next'), LockService: medianOf('LockService') };
  // Each run's ratio against the raw run next to it, then the median: both shared the same moment's noise.
  const ratios: number[] = [];
  for (let r = 0; r < runs; r++) {
    const pair = results.slice(r * 2, r * 2 + 2);
    const raw = pair.find((x) => x.variant === 'raw dbus-next')!;
    const service = pair.find((x) => x.variant === 'LockService')!;
    ratios.push(service.perSec / raw.perSec);
  }
  const ratio = median(ratios);
  return { runs: results, median: median_, ratio: round(ratio, 3), pass: ratio >= TARGETS.minContendedRatio && median_.LockService.fifoInversions === 0 };
}

// ---------------------------------------------------------------- report

async function main(): Promise<void> {
  const env = {
    ...environment(),
    dbusNext: versionOf('dbus-next'),
    dbusDaemon: execFileSync('dbus-daemon', ['--version'], { encoding: 'utf8' }).split('\n')[0]!.trim(),
  };
  const startedAt = new Date();
  log(`nestjs-distributed-lock D-Bus benchmark${QUICK ? ' (--quick: short smoke run, written under build/, not bench/results)' : ''}`);
  log(`node ${env.node} on ${env.os}; ${env.cpus} x ${env.cpu}; load ${env.loadAverage.join(' ')}; dbus-next ${env.dbusNext}; ${env.dbusDaemon}`);
  log();

  const bus = await DbusDaemon.start();
  const workers: Worker[] = [];
  try {
    const app = await createApp(bus.address);
    const locks = app.get(LockService);
    const store = new DbusLockStore({ address: bus.address });
    log(`1. Uncontended pair: take a free name and release it (${config.uncontended.runs} runs of ${config.uncontended.batch} pairs per variant, interleaved)`);
    const uncontended = await benchUncontended(bus.address, locks, store);
    await store.close();
    await app.close();
    log();

    const { processes, workersPerProcess, holdMs, runs, runMs } = config.contended;
    log(`2. Contended: ${processes} processes x ${workersPerProcess} workers on one key, hold ~${holdMs} ms (${runs} runs of ${runMs} ms per variant, alternating)`);
    const script = fileURLToPath(import.meta.url);
    for (let p = 0; p < processes; p++) {
      workers.push(new Worker(spawn(process.execPath, [script, '--worker', bus.address, ...(QUICK ? ['--quick'] : [])], { stdio: ['pipe', 'pipe', 'pipe'] })));
    }
    await Promise.all(workers.map((w) => w.next()));
    const contended = await benchContended(workers);
    await Promise.all(workers.map((w) => w.stop()));
    log();

    const u = uncontended.medianP50Ms;
    const raw = contended.median['raw dbus-next'];
    const svc = contended.median.LockService;
    log('Results (medians of runs)');
    log(
      table([
        ['measure', 'raw dbus-next', 'LockService', 'ratio', 'target', 'result'],
        [
          'uncontended pair, p50',
          `${fmt(u['raw dbus-next'] * 1e3)} us`,
          `${fmt(u.LockService * 1e3)} us`,
          uncontended.ratio.toFixed(2),
          `<= ${TARGETS.maxUncontendedRatio} x raw`,
          mark(uncontended.pass),
        ],
        [
          'uncontended pair, p99',
          `${fmt(uncontended.perPairMs['raw dbus-next'].p99 * 1e3)} us`,
          `${fmt(uncontended.perPairMs.LockService.p99 * 1e3)} us`,
          '',
          'report',
          '',
        ],
        ['  bare store (no core), p50', '', `${fmt(u['store (no core)'] * 1e3)} us`, '', 'report', ''],
        ['contended sections/s', fmt(raw.perSec), fmt(svc.perSec), contended.ratio.toFixed(2), `>= ${TARGETS.minContendedRatio} x raw`, mark(contended.pass)],
        ['  wait p50', `${fmt(raw.waitP50Ms, 2)} ms`, `${fmt(svc.waitP50Ms, 2)} ms`, '', 'report', ''],
        ['  wait p99', `${fmt(raw.waitP99Ms, 2)} ms`, `${fmt(svc.waitP99Ms, 2)} ms`, '', 'report', ''],
        ['  hand-off gap p50', `${fmt(raw.handoffGapP50Ms, 3)} ms`, `${fmt(svc.handoffGapP50Ms, 3)} ms`, '', 'report', ''],
        ['  FIFO inversions (all runs)', String(raw.fifoInversions), String(svc.fifoInversions), '', '0 for LockService', mark(svc.fifoInversions === 0)],
      ]),
    );
    log();
    log(
      `Issue baseline (measured when the issue was written): pair p50 ${ISSUE_BASELINE.pairP50Ms} ms; contended ${ISSUE_BASELINE.contendedPerSec}/s, ` +
        `wait p99 ${ISSUE_BASELINE.waitP99Ms} ms, hand-off gap ${ISSUE_BASELINE.handoffGapMs} ms.`,
    );

    const output = {
      benchmark: 'dbus',
      question: 'DbusLockStore through LockService against raw dbus-next on the same dbus-daemon: uncontended pair latency, contended throughput, fairness.',
      command: 'node --expose-gc build/bench/dbus.bench.js  (after npm run build && tsc -p tsconfig.test.json)',
      startedAt: startedAt.toISOString(),
      durationS: round((Date.now() - startedAt.getTime()) / 1_000),
      environment: env,
      config,
      targets: TARGETS,
      issueBaseline: ISSUE_BASELINE,
      pass: { uncontended: uncontended.pass, contended: contended.pass },
      uncontended,
      contended,
    };
    const dir = QUICK ? new URL('results-quick/', import.meta.url) : new URL('bench/results/', repoRoot);
    mkdirSync(dir, { recursive: true });
    writeFileSync(new URL('dbus.json', dir), JSON.stringify(output, null, 2) + '\n');
    writeFileSync(new URL('dbus.svg', dir), chart(env, uncontended, contended));
    log();
    log(`Wrote ${relative(fileURLToPath(repoRoot), fileURLToPath(new URL('dbus.json', dir)))} and dbus.svg next to it`);
  } finally {
    await Promise.all(workers.map((w) => w.stop().catch(() => {})));
    await bus.stop();
  }
}

function chart(env: ReturnType<typeof environment> & { dbusNext: string; dbusDaemon: string }, uncontended: UncontendedResult, contended: ContendedResult): string {
  const variants: PairVariant[] = ['raw dbus-next', 'LockService', 'store (no core)'];
  const raws = contended.runs.filter((r) => r.variant === 'raw dbus-next');
  const services = contended.runs.filter((r) => r.variant === 'LockService');
  const runLabels = raws.map((_, i) => `run ${i + 1}`);
  const rawMedian = contended.median['raw dbus-next'];
  return renderChart(
    'nestjs-distributed-lock, D-Bus store vs raw dbus-next',
    `node ${env.node}, ${env.cpus} x ${env.cpu}; dbus-next ${env.dbusNext}; ${env.dbusDaemon}; ${env.revision}`,
    [
      {
        title: `Uncontended take + release of a free name, p50 per run: LockService ${uncontended.ratio.toFixed(2)} x raw (${mark(uncontended.pass)})`,
        xLabel: 'run',
        yLabel: 'microseconds per pair',
        categories: uncontended.runs.map((_, i) => `run ${i + 1}`),
        series: variants.map((variant, i) => ({
          name: variant,
          color: ['#999999', '#4c78a8', '#72b7b2'][i]!,
          values: uncontended.runs.map((r) => r[variant] * 1e3),
        })),
        lines: [
          {
            value: uncontended.medianP50Ms['raw dbus-next'] * 1e3 * TARGETS.maxUncontendedRatio,
            label: `target ${TARGETS.maxUncontendedRatio} x raw`,
            color: '#d62728',
            dashed: true,
          },
        ],
        format: (v) => fmt(v),
      },
      {
        title: `Contended (4 processes x 2 workers, hold ~1 ms): LockService ${contended.ratio.toFixed(2)} x raw (${mark(contended.pass)})`,
        xLabel: 'run (variants alternate)',
        yLabel: 'critical sections per second',
        categories: runLabels,
        series: [
          { name: 'raw dbus-next', color: '#999999', values: raws.map((r) => r.perSec) },
          { name: 'LockService', color: '#4c78a8', values: services.map((r) => r.perSec) },
        ],
        lines: [{ value: rawMedian.perSec * TARGETS.minContendedRatio, label: `target ${TARGETS.minContendedRatio} x raw`, color: '#d62728', dashed: true }],
        valueLabels: true,
        format: (v) => fmt(v),
      },
      {
        title: 'Contended: waiting and hand-off (medians of runs)',
        xLabel: 'measure',
        yLabel: 'milliseconds',
        categories: ['wait p50', 'wait p99', 'hand-off gap p50'],
        series: (['raw dbus-next', 'LockService'] as const).map((variant, i) => ({
          name: variant,
          color: ['#999999', '#4c78a8'][i]!,
          values: [contended.median[variant].waitP50Ms, contended.median[variant].waitP99Ms, contended.median[variant].handoffGapP50Ms],
        })),
        valueLabels: true,
        format: (v) => fmt(v, 2),
      },
    ],
  );
}

if (process.argv[2] === '--worker') await worker(process.argv[3] ?? '');
else await main();
