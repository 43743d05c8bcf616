// One checker worker: a real Nest application with LockModule and a
// @WithLock method, contending with the other workers for a few keys. Each
// critical section reads a counter from the checker's resource, waits a
// little, and writes the counter plus one, fenced with the lock's token.
// Everything it does is reported to the checker over IPC.
import 'reflect-metadata';
import { setTimeout as sleep } from 'node:timers/promises';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { LockLostError, LockModule, LockService, LockShutdownError, LockStoreError, LockUnavailableError, WithLock } from 'nestjs-distributed-lock';
import { storeFromUrl } from '../sample-app/src/store-from-url.js';
import type { WorkerConfig, WorkerEvent } from './protocol.js';
import { Random, hostNow } from './random.js';

const config = JSON.parse(process.env.CHECKER_WORKER ?? '{}') as WorkerConfig;
const random = new Random(config.seed);
const send = (event: WorkerEvent) => process.send?.(event);

async function resource(body: object): Promise<{ status: number; value?: number }> {
  const response = await fetch(config.resourceUrl, { method: 'POST', body: JSON.stringify(body) });
  const { value } = (await response.json()) as { value?: number };
  return { status: response.status, value };
}

@Injectable()
class CriticalSection {
  constructor(private readonly locks: LockService) {}

  @WithLock((key: string) => key, { ttl: config.ttl, wait: config.wait })
  async run(key: string): Promise<void> {
    const lock = this.locks.current();
    if (!lock) throw new Error('@WithLock did not expose its lock');
    // Host time at which this holder's own clock says the lease ends.
    const deadline = () => hostNow() + (lock.deadline - performance.now());
    const start = hostNow();
    let abortedAt: number | undefined;
    // Told it lost the lock. A release is no such news: the section's own lock
    // is released only after the section ends, and a release while it still
    // runs (at shutdown, say) is exactly what the checker must catch.
    lock.signal.addEventListener(
      'abort',
      () => {
        if (!(lock.signal.reason instanceof LockLostError && lock.signal.reason.reason === 'released')) abortedAt = hostNow();
      },
      { once: true },
    );
    send({ type: 'enter', worker: config.id, key, token: lock.fencingToken, start, deadline: deadline() });
    let write: 'accepted' | 'stale' | 'failed' | 'skipped' = 'failed';
    try {
      const read = await resource({ op: 'read', key, token: lock.fencingToken });
      if (read.status === 409) write = 'stale';
      else {
        await sleep(random.int(0, config.holdMs));
        if (config.checkHeldBeforeWrite && !lock.held) {
          write = 'skipped';
          return;
        }
        const written = await resource({ op: 'write', key, token: lock.fencingToken, read: read.value });
        write = written.status === 200 ? 'accepted' : 'stale';
      }
      // Told to stop mid-section: work is left, as in a real deploy, long
      // enough that a lock handed on at shutdown lets the next holder in.
      if (terminating) await sleep(SHUTDOWN_WORK_MS);
    } finally {
      const end = hostNow();
      send({ type: 'section', worker: config.id, key, token: lock.fencingToken, start, end, deadline: deadline(), abortedAt: abortedAt && abortedAt <= end ? abortedAt : undefined, write });
    }
  }
}

@Module({
  imports: [LockModule.forRoot({ store: storeFromUrl(config.storeUrl), closeStore: true })],
  providers: [CriticalSection],
})
class WorkerModule {}

let stopping = false;
/** Set by SIGTERM, which Nest also hears (enableShutdownHooks) and answers by closing the application. */
let terminating = false;
const SHUTDOWN_WORK_MS = 50;
process.once('SIGTERM', () => (terminating = true));
process.on('message', (message) => {
  if (message === 'stop') stopping = true;
});

const app = await NestFactory.createApplicationContext(WorkerModule, { logger: ['error'] });
// SIGTERM closes the application as a deployment does (the checker's term-holder fault).
app.enableShutdownHooks();
const section = app.get(CriticalSection);
send({ type: 'ready', worker: config.id });
let closedBySignal = false;
while (!stopping) {
  try {
    await section.run(random.pick(config.keys));
  } catch (error) {
    if (error instanceof LockUnavailableError) send({ type: 'busy', worker: config.id });
    else if (error instanceof LockShutdownError) {
      closedBySignal = true; // Nest is closing the application; it exits once done
      break;
    } else {
      send({ type: 'store-error', worker: config.id, message: error instanceof Error ? error.message : String(error) });
      if (!(error instanceof LockStoreError)) console.error(error);
      await sleep(50);
    }
  }
}
if (!closedBySignal) await app.close();
send({ type: 'stopped', worker: config.id });
process.disconnect?.();
