// The mutual-exclusion checker: K worker processes (real Nest applications
// with @WithLock) contend for a few keys and increment counters on a fenced
// resource, while a seeded schedule kills and freezes holders and pauses and
// restarts the store. It prints what it saw and exits non-zero on any
// violation. Replay a run with the seed it prints.
//
//   npm run check:locks -- --store redis [--seconds 30] [--workers 4] [--seed N] [--long] [--json out.json]
import { fork, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { analyse, type Fault, type History } from './analysis.js';
import type { EnterEvent, SectionEvent, WorkerConfig, WorkerEvent } from './protocol.js';
import { Random, hostNow } from './random.js';
import { FencedResource } from './resource.js';
import { report } from './report.js';
import { targets } from './targets.js';

const { values: args } = parseArgs({
  options: {
    store: { type: 'string', default: 'redis' },
    seconds: { type: 'string' },
    workers: { type: 'string' },
    keys: { type: 'string', default: '3' },
    ttl: { type: 'string', default: '1000' },
    seed: { type: 'string' },
    long: { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const start = targets[args.store ?? ''];
if (!start) throw new Error(`--store ${args.store}: unknown; use one of ${Object.keys(targets).join(', ')}`);
const seconds = Number(args.seconds ?? (args.long ? 300 : 30));
const workerCount = Number(args.workers ?? (args.long ? 8 : 4));
const ttl = Number(args.ttl);
const seed = Number(args.seed ?? Math.floor(Math.random() * 2 ** 31));
const keys = Array.from({ length: Number(args.keys) }, (_, i) => `checker:${i}`);
const random = new Random(seed);
console.log(`checker: store ${args.store}, ${workerCount} workers, ${keys.length} keys, ttl ${ttl}ms, ${seconds}s, seed ${seed}`);

const target = await start(ttl);
const resource = new FencedResource(target.fencing);
const resourceUrl = await resource.start();
const workerScript = fileURLToPath(new URL('./worker.js', import.meta.url));

interface Worker {
  id: number;
  process: ChildProcess;
  /** The section it is in, if any. */
  current?: EnterEvent;
  stopped: boolean;
  exited: boolean;
  /** The last thing it reported, to say where a worker that does not exit was. */
  last?: WorkerEvent;
  /** Sent SIGTERM (a rolling deploy): it must finish its section, close and exit by itself. */
  terminated?: boolean;
  /** Host time of its exit. */
  exitedAt?: number;
}
const workers = new Map<number, Worker>();
const sections: SectionEvent[] = [];
/**
 * Kills, with the worker and its fault. Which section the worker was in is
 * read only after the run: when the kill was chosen, its reports of leaving
 * one section (and entering the next) may still have been on their way.
 */
const kills: { worker: Worker; at: number; fault: Fault }[] = [];
/** Workers stopped by SIGTERM, which must exit by themselves like the rest. */
const terminated: Worker[] = [];
const faults: Fault[] = [];
const counts = { busy: 0, storeErrors: 0, crashed: 0 };
let nextId = 0;

function spawnWorker(): Worker {
  const id = nextId++;
  const config: WorkerConfig = {
    id,
    storeUrl: target.url,
    resourceUrl,
    keys,
    ttl,
    wait: ttl * 3,
    holdMs: 5,
    seed: seed * 31 + id,
    checkHeldBeforeWrite: !target.fencing,
  };
  const child = fork(workerScript, { env: { ...process.env, CHECKER_WORKER: JSON.stringify(config) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const worker: Worker = { id, process: child, stopped: false, exited: false };
  child.on('message', (event: WorkerEvent) => {
    worker.last = event;
    if (event.type === 'enter') worker.current = event;
    else if (event.type === 'section') {
      sections.push(event);
      worker.current = undefined;
    } else if (event.type === 'busy') counts.busy++;
    else if (event.type === 'store-error') counts.storeErrors++;
    else if (event.type === 'stopped') worker.stopped = true;
  });
  child.on('exit', (code, signal) => {
    worker.exited = true;
    worker.exitedAt = hostNow();
    // Nest re-raises SIGTERM once its shutdown hooks have run.
    const expected = signal === 'SIGKILL' || (worker.terminated && signal === 'SIGTERM');
    if (!expected && code !== 0) counts.crashed++;
  });
  workers.set(id, worker);
  return worker;
}

for (let i = 0; i < workerCount; i++) spawnWorker();

const holders = () => [...workers.values()].filter((w) => w.current && !w.exited);
/** A worker inside a section, waiting up to two seconds for one (between sections, nobody holds). */
async function someHolder(): Promise<(Worker & { current: EnterEvent }) | undefined> {
  for (const until = hostNow() + 2_000; hostNow() < until; await sleep(5)) {
    const worker = random.pick(holders());
    if (worker?.current) return worker as Worker & { current: EnterEvent };
  }
  return undefined;
}
const holderFaults: Record<string, () => Promise<void>> = {
  async 'kill-holder'() {
    const worker = await someHolder();
    if (!worker) return;
    const at = hostNow();
    worker.process.kill('SIGKILL');
    const fault: Fault = { kind: 'kill-holder', at, worker: worker.id };
    kills.push({ worker, at, fault });
    faults.push(fault);
    workers.delete(worker.id);
    spawnWorker();
  },
  async 'term-holder'() {
    // A rolling deploy: the holder's application closes mid-section
    // (enableShutdownHooks), and must not let the next holder in before its
    // section has ended; a replacement starts at once, as a deploy does.
    const worker = await someHolder();
    if (!worker) return;
    faults.push({ kind: 'term-holder', at: hostNow(), worker: worker.id, key: worker.current.key });
    worker.terminated = true;
    worker.process.kill('SIGTERM');
    terminated.push(worker);
    workers.delete(worker.id);
    spawnWorker();
  },
  async 'stop-holder'() {
    const worker = await someHolder();
    if (!worker) return;
    faults.push({ kind: 'stop-holder', at: hostNow(), worker: worker.id, key: worker.current.key });
    worker.process.kill('SIGSTOP');
    await sleep(random.int(ttl * 1.5, ttl * 2.5));
    worker.process.kill('SIGCONT');
  },
};
const serverFaults = Object.entries(target.faults).map(([kind, inject]) => [kind, async () => {
  const fault: Fault = { kind, at: hostNow() };
  faults.push(fault);
  await inject(random);
  fault.until = hostNow();
}] as const);
const allFaults = [...Object.entries(holderFaults), ...serverFaults];

const startedAt = hostNow();
const endAt = startedAt + seconds * 1_000;
await sleep(Math.min(2_000, seconds * 100));
// Every kind of fault first, until each has been injected once (a holder
// fault finds no holder while the store is out), so even a short run has each;
// then at random.
const injected = new Set<string>();
while (hostNow() < endAt - ttl * 3) {
  const [kind, inject] = allFaults.find(([name]) => !injected.has(name)) ?? random.pick(allFaults);
  const before = faults.length;
  await inject();
  if (faults.length > before) injected.add(kind);
  await sleep(random.int(500, 2_000));
}
await sleep(Math.max(0, endAt - hostNow()));
const endedAt = hostNow();
const elapsed = (endedAt - startedAt) / 1_000;

// Stop: every worker finishes its section, closes its app and must exit by itself.
for (const worker of workers.values()) worker.process.send('stop');
const exitBy = hostNow() + ttl * 3 + 10_000;
const everyWorker = [...workers.values(), ...terminated];
while (everyWorker.some((w) => !w.exited) && hostNow() < exitBy) await sleep(20);
const stragglers = everyWorker.filter((w) => !w.exited);
for (const worker of stragglers) {
  console.log(`worker ${worker.id} did not exit by itself; stopped: ${worker.stopped}; last event: ${JSON.stringify(worker.last)}`);
  worker.process.kill('SIGKILL');
}
await resource.stop();
await target.stop();

// Every killed worker's reports have arrived by now (its channel closed long
// ago): the section it was in when killed is its last one entered and not left.
const killed: History['killed'] = [];
for (const { worker, at, fault } of kills) {
  if (!worker.current) continue; // it had left its section: it held nothing
  killed.push({ enter: worker.current, at });
  fault.key = worker.current.key;
}
// A terminated worker that exited inside a section died in it (its lock was
// given up before its work was done): the section ends at the exit.
for (const worker of terminated) {
  if (worker.current && worker.exitedAt !== undefined) killed.push({ enter: worker.current, at: worker.exitedAt });
}

const findings = analyse({
  sections,
  killed,
  ops: resource.ops,
  faults,
  finalValues: new Map(keys.map((key) => [key, resource.value(key)])),
  seconds: elapsed,
  endedAt,
  leaseResets: target.leaseResets,
  outages: target.outages,
});
const violations = report({ findings, counts, stragglers: stragglers.length, ttl, deathMargin: target.deathMargin, leaseResets: target.leaseResets, outages: target.outages, fencing: target.fencing, seed, store: args.store ?? '' });
if (args.json) writeFileSync(args.json, JSON.stringify({ store: args.store, seed, seconds: elapsed, workers: workerCount, ttl, counts, findings }, null, 2));
process.exitCode = violations > 0 ? 1 : 0;
