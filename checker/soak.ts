// Leak soak: many acquire/release cycles and many waits that time out or are
// aborted, through LockService on one store; heap and handle counts must come
// back to where they started. Run with --expose-gc.
//
//   npm run soak -- --store redis [--cycles 1000000] [--waits 10000] [--json out.json]
import 'reflect-metadata';
import { writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { LockModule, LockService, LockUnavailableError } from 'nestjs-distributed-lock';
import { storeFromUrl } from '../sample-app/src/store-from-url.js';
import { targets } from './targets.js';

const { values: args } = parseArgs({
  options: {
    store: { type: 'string', default: 'redis' },
    cycles: { type: 'string', default: '1000000' },
    waits: { type: 'string', default: '10000' },
    json: { type: 'string' },
  },
});
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run the soak with node --expose-gc, so heap figures are taken after a full collection');
const TTL = 3_000;
const cycles = Number(args.cycles);
const waits = Number(args.waits);

/** Heap after a full collection, and open handles by kind (sockets, timers, ...). */
async function snapshot(): Promise<{ heap: number; handles: Record<string, number> }> {
  // Renewal timers end at most ttl/3 after the last lock; let them, then collect twice.
  await sleep(TTL / 3 + 200);
  gc?.();
  await sleep(50);
  gc?.();
  const handles: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) handles[kind] = (handles[kind] ?? 0) + 1;
  return { heap: process.memoryUsage().heapUsed, handles };
}

const target = await targets[args.store as string]?.(TTL);
if (!target) throw new Error(`--store ${args.store}: unknown; use one of ${Object.keys(targets).join(', ')}`);
@Module({ imports: [LockModule.forRoot({ store: storeFromUrl(target.url), ttl: TTL })] })
class SoakModule {}
const app = await NestFactory.createApplicationContext(SoakModule, { logger: ['error'] });
const locks = app.get(LockService);

// Warm up (connections, the wake-up subscription a first wait opens, script
// cache, JIT) before the first snapshot.
for (let i = 0; i < 2_000; i++) await (await locks.acquire(`soak:${i % 10}`)).release();
{
  const held = await locks.acquire('soak:warm');
  await locks.acquire('soak:warm', { wait: 5 }).catch(() => undefined);
  await held.release();
}
const before = await snapshot();
const started = performance.now();
for (let i = 0; i < cycles; i++) await (await locks.acquire(`soak:${i % 100}`)).release();
const cycleSeconds = (performance.now() - started) / 1_000;

// Waits that end without the lock: half run out, half are aborted.
const holder = await locks.acquire('soak:busy', { ttl: '1m' });
let timedOut = 0;
let aborted = 0;
for (let done = 0; done < waits; done += 100) {
  await Promise.all(
    Array.from({ length: Math.min(100, waits - done) }, async (_, i) => {
      const controller = new AbortController();
      if (i % 2 === 1) setTimeout(() => controller.abort(), 2);
      try {
        await locks.acquire('soak:busy', { wait: i % 2 === 0 ? 5 : 10_000, signal: controller.signal });
      } catch (error) {
        if (error instanceof LockUnavailableError) timedOut++;
        else aborted++;
      }
    }),
  );
}
await holder.release();
const after = await snapshot();
await app.close();
await target.stop();

const growth = after.heap - before.heap;
const handleKinds = new Set([...Object.keys(before.handles), ...Object.keys(after.handles)]);
const handleDiff = [...handleKinds].filter((kind) => before.handles[kind] !== after.handles[kind]);
const result = {
  store: args.store,
  cycles,
  cyclesPerSecond: Math.round(cycles / cycleSeconds),
  waits: { timedOut, aborted },
  heapBefore: before.heap,
  heapAfter: after.heap,
  heapGrowthBytes: growth,
  handlesBefore: before.handles,
  handlesAfter: after.handles,
};
console.log(JSON.stringify(result, null, 2));
if (args.json) writeFileSync(args.json, JSON.stringify(result, null, 2));
// A few hundred kB of drift is the JIT and V8's own caches; a leak of even
// 100 bytes per cycle would show as tens of MB here.
const heapOk = growth < 2 * 1024 * 1024;
console.log(
  `soak ${args.store}: ${cycles} cycles (${result.cyclesPerSecond}/s), ${timedOut} waits timed out, ${aborted} aborted; ` +
    `heap ${(before.heap / 1e6).toFixed(1)} MB -> ${(after.heap / 1e6).toFixed(1)} MB (${growth >= 0 ? '+' : ''}${(growth / 1e3).toFixed(0)} kB)${heapOk ? '' : ' LEAK?'}; ` +
    `handles ${handleDiff.length === 0 ? 'unchanged' : `changed: ${handleDiff.join(', ')}`}`,
);
process.exitCode = heapOk && handleDiff.length === 0 && timedOut + aborted === waits ? 0 : 1;
