// Run as a child process by the exit tests: an application takes, waits for,
// aborts and releases locks in every way an application does, then simply
// stops doing work. The tests check the process exits by itself, so nothing
// the library or the store left behind (a timer, a socket, a stream, a
// listener, a pending promise) keeps it alive.
//
// Arguments: [store url, as LOCK_STORE takes it; default memory:] [--close]
// (close the application first) [--client] (the application makes the
// Redis or etcd client and passes it in, so the module does not close the
// store; the application quits its client after closing) [--shared] (two
// applications on one store instance, both closed). Otherwise the store is
// made the way the sample app makes it, so the module closes it or not by its
// usual rule. It prints "done" last, so the parent can time the exit from it.
import 'reflect-metadata';
import { Module, type DynamicModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import { LockModule, LockService, type LockStore } from 'nestjs-distributed-lock';
import { EtcdLockStore } from 'nestjs-distributed-lock/etcd';
import { RedisLockStore } from 'nestjs-distributed-lock/redis';
import { storeFromUrl } from '../../sample-app/src/store-from-url.js';

const url = process.argv.slice(2).find((arg) => !arg.startsWith('--'));
const close = process.argv.includes('--close');

/** The application's own client, for --client; `quit` is what the application does with it after closing. */
function ownClient(): { store: LockStore; quit: () => Promise<unknown> } {
  if (url?.startsWith('redis://')) {
    const client = new Redis(url);
    return { store: new RedisLockStore({ client }), quit: () => client.quit() };
  }
  if (url?.startsWith('etcd://')) {
    const client = new Etcd3({ hosts: url.slice('etcd://'.length).split(',').map((host) => `http://${host}`) });
    return { store: new EtcdLockStore({ client }), quit: async () => client.close() };
  }
  throw new Error(`--client needs a redis:// or etcd:// url, not ${url}`);
}

const own = process.argv.includes('--client') ? ownClient() : undefined;
const store = own?.store ?? storeFromUrl(url);

// A short shutdownTimeout: the lock kept below outlives it, and is then left
// to run out, so each run has its own keyPrefix: the next run's keys are free.
function appModule(): DynamicModule {
  @Module({})
  class AppModule {}
  const options = { store, ttl: '2s', shutdownTimeout: '300ms', keyPrefix: `exit-${process.pid}` };
  return { module: AppModule, imports: [LockModule.forRoot(options)] };
}

async function exercise(locks: LockService): Promise<void> {
  const held = await locks.acquire('exit:a');
  const waiter = locks.acquire('exit:a', { wait: '5s' });
  setTimeout(() => void held.release(), 50);
  await (await waiter).release();
  await locks.withLock('exit:b', async () => {});
  const busy = await locks.acquire('exit:c');
  await locks.tryAcquire('exit:c', { wait: '100ms' });
  await busy.release();
  const aborted = new AbortController();
  const blocked = await locks.acquire('exit:d');
  const abortedWait = locks.acquire('exit:d', { wait: '10s', signal: aborted.signal }).catch(() => 'aborted');
  setTimeout(() => aborted.abort(), 20);
  await abortedWait;
  await blocked.release();
}

const apps = await Promise.all(
  (process.argv.includes('--shared') ? [0, 1] : [0]).map(() => NestFactory.createApplicationContext(appModule(), { logger: false })),
);
for (const app of apps) await exercise(app.get(LockService));
// Still held when the application closes: shutdown waits shutdownTimeout for
// its release, then leaves its lease to run out in the store.
await apps[0]?.get(LockService).acquire('exit:kept');
if (close) {
  // Waiting when the application closes: the wait ends at once.
  const late = apps[0]?.get(LockService).acquire('exit:kept', { wait: '10s' }).catch((error: Error) => error.name);
  for (const app of apps) await app.close();
  console.log(`late waiter: ${await late}`);
  await own?.quit();
}
console.log('done');
