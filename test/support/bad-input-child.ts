// Runs every bad input against one store and prints one JSON line of results.
// Run as a child process by test/matrix/bad-input.test.ts, which checks the
// results, that nothing was rejected unhandled, and that this process exits by
// itself once the cases are done: it ends without calling process.exit.
import 'reflect-metadata';
import { Injectable, type INestApplicationContext } from '@nestjs/common';
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import { LockModule, LockService, MemoryLockStore, WithLock, type LockModuleOptions, type LockStore } from 'nestjs-distributed-lock';
import { DbusLockStore } from 'nestjs-distributed-lock/dbus';
import { EtcdLockStore } from 'nestjs-distributed-lock/etcd';
import { RedisLockStore } from 'nestjs-distributed-lock/redis';
import { NestFactory } from '@nestjs/core';
import { Module } from '@nestjs/common';

interface Target {
  store(options?: { unreachable?: boolean; wrongPassword?: boolean }): LockStore;
  /** Takes the lock away from its holder behind its back. */
  steal(storeKey: string, store: LockStore): Promise<void>;
  /** Locks still held among the store keys the cases used (fencing counters aside). */
  leftovers(storeKeys: string[]): Promise<string[]>;
  connectTimeout: number;
  /** Whether the store authenticates with a password (D-Bus authenticates the process's user). */
  passwords: boolean;
  close(): Promise<void>;
}

const [kind, address] = process.argv.slice(2) as [string, string | undefined];
const CONNECT_TIMEOUT = 1_000;

/** Probes each store key with a fresh store: a key still held there was left behind. */
async function heldAmong(store: LockStore, storeKeys: string[]): Promise<string[]> {
  const left: string[] = [];
  for (const key of storeKeys) {
    const probe = await store.acquire({ key, owner: 'probe', ttl: 1000, wait: 0, onLost() {} });
    if (probe.acquired) await store.release(key, 'probe');
    else left.push(key);
  }
  await store.close();
  return left;
}

function target(): Target {
  if (kind === 'dbus') {
    return {
      store: (options = {}) =>
        new DbusLockStore({ address: options.unreachable ? 'unix:path=/nonexistent/bus.sock' : (address as string), timeout: CONNECT_TIMEOUT }),
      // Nothing can take a bus name from its owner; closing the owner's store ends its session.
      steal: async (_key, store) => store.close(),
      leftovers: (storeKeys) => heldAmong(new DbusLockStore({ address: address as string }), storeKeys),
      connectTimeout: CONNECT_TIMEOUT,
      passwords: false,
      close: async () => {},
    };
  }
  if (kind === 'memory') {
    const stores: MemoryLockStore[] = [];
    return {
      store: () => {
        const store = new MemoryLockStore();
        stores.push(store);
        return store;
      },
      steal: async (_key, store) => store.close(),
      leftovers: async (storeKeys) => {
        const left: string[] = [];
        for (const store of stores) {
          for (const key of storeKeys) {
            // A closed store holds nothing; its acquire rejects.
            const probe = await store.acquire({ key, owner: 'probe', ttl: 1000, wait: 0, onLost() {} }).catch(() => undefined);
            if (probe?.acquired) await store.release(key, 'probe');
            else if (probe) left.push(key);
          }
        }
        return left;
      },
      connectTimeout: 0,
      passwords: false,
      close: async () => {},
    };
  }
  if (kind === 'etcd') {
    // The address is the client URL with the user and password etcd's auth wants: http://user:password@host:port.
    const url = new URL(address as string);
    const auth = { username: decodeURIComponent(url.username), password: decodeURIComponent(url.password) };
    const admin = new Etcd3({ hosts: url.origin, auth });
    return {
      store: (options = {}) =>
        new EtcdLockStore({
          hosts: options.unreachable ? 'http://127.0.0.1:1' : url.origin,
          auth: options.wrongPassword ? { ...auth, password: 'not-the-password' } : auth,
          dialTimeout: CONNECT_TIMEOUT,
        }),
      // Every queue entry of a lock is under `lock/<store key>/` (the default key prefix; these keys have no '%' or '/' to escape).
      steal: async (storeKey) => void (await admin.delete().prefix(`lock/${storeKey}/`)),
      leftovers: () => admin.getAll().prefix('lock/').keys(),
      connectTimeout: CONNECT_TIMEOUT,
      passwords: true,
      close: async () => admin.close(),
    };
  }
  const admin = new Redis(address as string);
  return {
    store: (options = {}) =>
      new RedisLockStore({
        url: options.unreachable ? 'redis://127.0.0.1:1' : options.wrongPassword ? withPassword(address as string, 'not-the-password') : (address as string),
        connectTimeout: CONNECT_TIMEOUT,
      }),
    steal: async (storeKey) => void (await admin.del(`lock:{${storeKey}}`)),
    leftovers: async () => (await admin.keys('lock:*')).filter((key) => !key.endsWith(':fence')),
    connectTimeout: CONNECT_TIMEOUT,
    passwords: true,
    close: async () => void admin.disconnect(),
  };
}

function withPassword(url: string, password: string): string {
  const parsed = new URL(url);
  parsed.password = password;
  return parsed.toString();
}

@Injectable()
class Orders {
  @WithLock((id: string): string => {
    if (id === 'boom') throw new Error('no tenant for this order');
    return `orders:${id}`;
  })
  async pay(_id: string): Promise<void> {}
}

const t = target();
const unhandled: string[] = [];
process.on('unhandledRejection', (reason) => unhandled.push(String(reason)));
const results: Record<string, { ok: boolean; error?: string; message?: string; ms: number; value?: unknown }> = {};

async function app(options: LockModuleOptions): Promise<INestApplicationContext> {
  @Module({ imports: [LockModule.forRoot(options)], providers: [Orders] })
  class MatrixModule {}
  return NestFactory.createApplicationContext(MatrixModule, { logger: false, abortOnError: false });
}

async function run(name: string, body: () => Promise<unknown>): Promise<void> {
  const started = performance.now();
  try {
    const value = await body();
    results[name] = { ok: true, ms: performance.now() - started, value };
  } catch (error) {
    results[name] = {
      ok: false,
      error: error instanceof Error ? error.constructor.name : typeof error,
      message: error instanceof Error ? error.message : String(error),
      ms: performance.now() - started,
    };
  }
}

const main = await app({ store: t.store(), ttl: 600, closeStore: true });
const locks = main.get(LockService);
const badKeys: [string, unknown][] = [
  ['empty key', ''],
  ['non-string key', 42],
  ['over-long key', 'k'.repeat(1025)],
  ['unpaired surrogate', 'a\uD800'],
];
for (const [name, key] of badKeys) await run(name, () => locks.acquire(key as string));
const badDurations: [string, Record<string, unknown>][] = [
  ['zero ttl', { ttl: 0 }],
  ['negative ttl', { ttl: -1 }],
  ['NaN ttl', { ttl: Number.NaN }],
  ['infinite wait', { wait: Infinity }],
  ['unparsable wait', { wait: 'soon' }],
];
for (const [name, options] of badDurations) await run(name, () => locks.acquire('matrix:d', options));
await run('unknown module option', () => app({ store: t.store(), tll: '5s' } as LockModuleOptions));
await run('key function that throws', () => main.get(Orders).pay('boom'));
await run('release twice', async () => {
  const lock = await locks.acquire('matrix:twice');
  return [await lock.release(), await lock.release()];
});
{
  const store = t.store();
  const owner = await app({ store, ttl: 600, closeStore: true });
  const lock = await owner.get(LockService).acquire('matrix:lost');
  await t.steal(':matrix:lost', store);
  const until = performance.now() + 5_000;
  while (lock.held && performance.now() < until) await new Promise((resolve) => setTimeout(resolve, 20));
  await run('release after loss', () => lock.release());
  await run('extend after loss', () => lock.extend());
  await owner.close();
}
{
  const store = t.store();
  await store.close();
  const closed = await app({ store });
  await run('closed store', () => closed.get(LockService).acquire('matrix:closed'));
  await closed.close();
}
if (t.connectTimeout > 0) {
  const network = [['unreachable server', { unreachable: true }], ['wrong password', { wrongPassword: true }]] as const;
  for (const [name, options] of network.filter(([name]) => t.passwords || name !== 'wrong password')) {
    const failing = await app({ store: t.store(options), closeStore: true });
    await run(name, () => failing.get(LockService).acquire('matrix:net'));
    await failing.close();
  }
}
await main.close();
const leftovers = await t.leftovers([':matrix:d', ':matrix:twice', ':matrix:lost', ':matrix:closed', ':matrix:net', ':orders:boom']);
await t.close();
console.log(JSON.stringify({ results, unhandled, leftovers, connectTimeout: t.connectTimeout }));
