import 'reflect-metadata';
import { setTimeout as sleep } from 'node:timers/promises';
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { LockStore } from 'nestjs-distributed-lock';
import { buildReport } from './demo-report.js';
import { AppModule } from './src/app.module.js';
import { Journal } from './src/journal.js';
import { storeFromUrl, UnsupportedStoreError } from './src/store-from-url.js';

const INSTANCES = ['app-1', 'app-2', 'app-3'];
/** Which order each payment request pays, and which instance it goes to: three for one order, spread out, and two other orders. */
const REQUESTS: ReadonlyArray<readonly [orderId: string, instance: number]> = [
  ['1', 0],
  ['1', 1],
  ['1', 2],
  ['2', 1],
  ['3', 2],
];
const TICKS = 4;
/** Past a tick, long enough for its run (50ms) to be recorded. */
const TICK_SETTLE_MS = 300;

interface Instance {
  readonly name: string;
  readonly app: INestApplication;
  readonly url: string;
}

async function start(name: string, store: LockStore): Promise<Instance> {
  const app = await NestFactory.create(AppModule.forRoot({ instance: name, store }), { logger: ['error', 'warn'] });
  await app.listen(0, '127.0.0.1');
  return { name, app, url: await app.getUrl() };
}

/** Waits until the instance answers, which also opens the client's connection, so the payments' wait times measure the lock. */
async function healthy(instance: Instance): Promise<void> {
  const response = await fetch(`${instance.url}/health`);
  if (!response.ok) throw new Error(`${instance.name} is not healthy: HTTP ${response.status}`);
  await response.arrayBuffer();
}

async function pay(instance: Instance, orderId: string): Promise<number> {
  const response = await fetch(`${instance.url}/orders/${orderId}/pay`, { method: 'POST' });
  await response.arrayBuffer();
  return response.status;
}

async function demo(store: LockStore): Promise<void> {
  const instances: Instance[] = [];
  try {
    for (const name of INSTANCES) instances.push(await start(name, store));
    await Promise.all(instances.map(healthy));
    // Only ticks that every instance's cron saw count: before that, a lone instance runs every tick.
    const firstTick = Math.ceil(Date.now() / 1000);
    const ticks = Array.from({ length: TICKS }, (_, i) => firstTick + i);

    const sentAt = performance.now();
    const statuses = await Promise.all(REQUESTS.map(([orderId, index]) => pay(instances[index], orderId)));

    await sleep(Math.max(0, (firstTick + TICKS - 1) * 1000 + TICK_SETTLE_MS - Date.now()));
    const journals = instances.map(({ app }) => app.get(Journal));
    const { lines, failures } = buildReport({
      instances: INSTANCES,
      store: store.traits.name,
      sentAt,
      statuses,
      payments: journals.flatMap((journal) => journal.payments),
      ticks,
      reports: journals.flatMap((journal) => journal.reports).filter((report) => ticks.includes(report.second)),
    });
    console.log(lines.join('\n'));
    if (failures.length === 0) {
      console.log('OK: 1 runner per tick, same-id payments serialized, different ids in parallel');
    } else {
      console.log(`FAIL: ${failures.join('; ')}`);
      process.exitCode = 1;
    }
  } finally {
    await Promise.all(instances.map(({ app }) => app.close()));
    await store.close();
  }
}

let store: LockStore | undefined;
try {
  store = storeFromUrl(process.env.LOCK_STORE);
} catch (error) {
  if (!(error instanceof UnsupportedStoreError)) throw error;
  console.error(error.message);
  process.exitCode = 2;
}
if (store) await demo(store);
