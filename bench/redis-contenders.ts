/**
 * The implementations the Redis benchmark compares, behind one small
 * interface, so the contended workers (redis-worker.ts) and the uncontended
 * pairs (redis.bench.ts) run every one of them through the same code.
 *
 * Every implementation gets the same lease (TTL_MS) and, where the caller
 * chooses how long to wait, the same wait (WAIT_MS); otherwise each peer
 * keeps its own defaults, which is how it gives up:
 * - ours: `LockService.acquire(key, { wait })` of a real Nest application
 *   (LockModule.forRoot with a RedisLockStore); gives up with
 *   LockUnavailableError after `wait`.
 * - raw ioredis: `SET key owner PX ttl NX`, retried after a fixed
 *   RAW_RETRY_MS sleep until `wait` has passed; released by a
 *   compare-and-delete script sent by EVALSHA (the cheapest form: the script
 *   is loaded once, so the floor is as low as it can be).
 * - redlock 5 beta: `new Redlock([client], settings)`, `acquire([key], ttl)`;
 *   by default 10 retries 200 ms ± 100 ms apart, then ExecutionError.
 * - redis-semaphore: `new Mutex(client, key)` per acquisition, defaults:
 *   SET NX PX polled every 10 ms, TimeoutError after 10 s.
 * - the pub/sub ring: not a lock but the floor of a push hand-over (see ring()).
 *
 * Uncontended, ours runs with the module's default wait (0: one try) and,
 * as 'ours-wait', with WAIT_MS; 'store' is the RedisLockStore called
 * directly, to split the cost between the store and LockService.
 */
import 'reflect-metadata';
import { setTimeout as sleep } from 'node:timers/promises';
import { Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Redis } from 'ioredis';
import { LockModule, LockService, LockUnavailableError, type Lock, type LockStore } from 'nestjs-distributed-lock';
import { RedisLockStore } from 'nestjs-distributed-lock/redis';
import { Mutex, TimeoutError } from 'redis-semaphore';
import Redlock, { ExecutionError, ResourceLockedError } from 'redlock';

/** Lease of every lock in the contended and uncontended runs (redis-semaphore's default lockTimeout). */
export const TTL_MS = 10_000;
/** How long ours and raw ioredis wait before giving up: long enough that nobody should. */
export const WAIT_MS = 5_000;
/** The raw retry loop's sleep between SET NX attempts (fixed, no jitter). */
export const RAW_RETRY_MS = 5;

export const CONTENDED = ['ours', 'raw', 'redlock', 'redlock-10ms', 'semaphore', 'ring'] as const;
export const UNCONTENDED = ['raw', 'ours', 'ours-wait', 'store', 'redlock', 'semaphore'] as const;
export type ContenderId = (typeof CONTENDED)[number] | (typeof UNCONTENDED)[number];

export const LABELS: Record<ContenderId, string> = {
  ours: 'nestjs-distributed-lock',
  'ours-wait': `nestjs-distributed-lock, wait ${WAIT_MS / 1_000} s`,
  store: 'RedisLockStore alone (no LockService)',
  raw: 'raw ioredis',
  redlock: 'redlock (defaults)',
  'redlock-10ms': 'redlock (retryDelay 10 ms)',
  semaphore: 'redis-semaphore Mutex',
  ring: 'pub/sub ring (hand-over floor)',
};

/** How each one acquires, for the printed notes. */
export const HOW: Record<ContenderId, string> = {
  ours: `LockService.acquire(key, { ttl: ${TTL_MS}, wait: ${WAIT_MS} }) in a Nest app (LockModule.forRoot + RedisLockStore); FIFO queue, hand-off on release, pub/sub wake-up`,
  'ours-wait': `as ours, with wait ${WAIT_MS} ms even though the lock is free (the waiting path)`,
  store: `RedisLockStore.acquire({ wait: 0 }) + release() called directly, without LockService`,
  raw: `SET key owner PX ${TTL_MS} NX, retried every ${RAW_RETRY_MS} ms (fixed sleep) up to ${WAIT_MS} ms; release = compare-and-delete by EVALSHA`,
  redlock: `new Redlock([client]) defaults: retryCount 10, retryDelay 200 ms, retryJitter 100 ms; acquire([key], ${TTL_MS})`,
  'redlock-10ms': `new Redlock([client], { retryDelay: 10 }): retryCount 10, retryJitter 100 ms (default)`,
  semaphore: `new Mutex(client, key) per acquisition, defaults: lockTimeout 10 s, retryInterval 10 ms, acquireTimeout 10 s`,
  ring:
    'not a lock, a floor: worker i holds, then PUBLISHes to worker i+1 (round robin over all 8); ' +
    'the cheapest strict hand-over through Redis pub/sub, so its gap is what any push hand-off pays on this machine',
};

/** A held lock, whatever the implementation. */
export interface Held {
  release(): Promise<unknown>;
}

export interface Contender {
  /** Resolves the held lock, or null when the implementation gave up. `worker`: the contended worker asking (the ring needs it). */
  acquire(key: string, worker?: number): Promise<Held | null>;
  /** Errors the implementation reported without failing a call (redlock's 'error' events other than "already locked"). */
  readonly errors: string[];
  close(): Promise<void>;
}

const RELEASE_LUA = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

let ownerSeq = 0;
const newOwner = (): string => `${process.pid}:${++ownerSeq}`;

/** A client that fails fast instead of queueing forever if Redis goes away mid-run. */
function client(url: string): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  return redis;
}

/** Where a contended worker process sits: its workers' ids, how many workers there are in all, the run's key. */
export interface Placement {
  readonly key: string;
  readonly workers: readonly number[];
  readonly totalWorkers: number;
}

/**
 * Creates one implementation, connected and ready. With `placement` (the
 * contended runs) ours waits up to WAIT_MS on every acquire; without it,
 * 'ours' keeps the module's default (one try) and 'ours-wait' waits.
 */
export async function createContender(id: ContenderId, url: string, placement?: Placement): Promise<Contender> {
  const contended = placement !== undefined;
  switch (id) {
    case 'ours':
    case 'ours-wait':
      return ours(url, id === 'ours-wait' || contended ? WAIT_MS : undefined);
    case 'store':
      return bareStore(url);
    case 'raw':
      return raw(url);
    case 'redlock':
    case 'redlock-10ms':
      return redlock(url, id === 'redlock' ? {} : { retryDelay: 10 });
    case 'semaphore':
      return semaphore(url);
    case 'ring':
      if (!placement) throw new Error('the pub/sub ring runs only contended');
      return ring(url, placement);
  }
}

/** Ours, through a real Nest application context; `wait` undefined: the module's default (0, one try). */
async function ours(url: string, wait: number | undefined): Promise<Contender> {
  const store = new RedisLockStore({ url });
  @Module({ imports: [LockModule.forRoot({ store, ttl: TTL_MS })] })
  class BenchModule {}
  const app: INestApplicationContext = await NestFactory.createApplicationContext(BenchModule, { logger: ['error', 'warn'] });
  const locks = app.get(LockService);
  const options = wait === undefined ? {} : { wait };
  return {
    errors: [],
    async acquire(key) {
      try {
        const lock: Lock = await locks.acquire(key, options);
        return lock;
      } catch (error) {
        if (error instanceof LockUnavailableError) return null;
        throw error;
      }
    },
    close: () => app.close(), // closes the store too: it owns its connection
  };
}

/** The store alone, to split the pair's cost between the store and LockService. */
async function bareStore(url: string): Promise<Contender> {
  const store: LockStore = new RedisLockStore({ url });
  const onLost = (): void => {};
  return {
    errors: [],
    async acquire(key) {
      const owner = newOwner();
      const result = await store.acquire({ key, owner, ttl: TTL_MS, wait: 0, onLost });
      return result.acquired ? { release: () => store.release(key, owner) } : null;
    },
    close: () => store.close(),
  };
}

async function raw(url: string): Promise<Contender> {
  const redis = client(url);
  const sha = (await redis.script('LOAD', RELEASE_LUA)) as string;
  return {
    errors: [],
    async acquire(key) {
      const owner = newOwner();
      const until = performance.now() + WAIT_MS;
      for (;;) {
        if ((await redis.set(key, owner, 'PX', TTL_MS, 'NX')) === 'OK') {
          return { release: () => redis.evalsha(sha, 1, key, owner) };
        }
        if (performance.now() + RAW_RETRY_MS > until) return null;
        await sleep(RAW_RETRY_MS);
      }
    },
    close: async () => {
      await redis.quit();
    },
  };
}

async function redlock(url: string, settings: { retryDelay?: number }): Promise<Contender> {
  const redis = client(url);
  await redis.ping();
  const lock = new Redlock([redis], settings);
  const errors: string[] = [];
  // redlock emits every failed attempt as 'error'; an EventEmitter without a
  // listener would throw it. Its README's listener ignores ResourceLockedError.
  lock.on('error', (error: unknown) => {
    if (error instanceof ResourceLockedError) return;
    if (errors.length < 20) errors.push(String(error));
  });
  return {
    errors,
    async acquire(key) {
      try {
        return await lock.acquire([key], TTL_MS);
      } catch (error) {
        if (error instanceof ExecutionError) return null;
        throw error;
      }
    },
    close: async () => {
      await redis.quit();
    },
  };
}

async function semaphore(url: string): Promise<Contender> {
  const redis = client(url);
  await redis.ping();
  return {
    errors: [],
    async acquire(key) {
      const mutex = new Mutex(redis, key);
      try {
        await mutex.acquire();
        return mutex;
      } catch (error) {
        if (error instanceof TimeoutError) return null;
        throw error;
      }
    },
    close: async () => {
      await redis.quit();
    },
  };
}

/**
 * The hand-over floor: a token passed round robin through Redis pub/sub.
 * Each worker waits for a message on its own channel, holds, and PUBLISHes
 * to the next worker's channel; worker 0 starts with the token. One publish
 * per hand-over and nothing else, so its gap between sections is what a
 * push hand-off costs on this machine before any lock logic.
 */
async function ring(url: string, { key, workers, totalWorkers }: Placement): Promise<Contender> {
  const pub = client(url);
  const sub = client(url);
  const channel = (worker: number) => `${key}:ring:${worker}`;
  const tokens = new Set<number>(workers.includes(0) ? [0] : []);
  const waiting = new Map<number, () => void>();
  sub.on('message', (name: string) => {
    const worker = Number(name.slice(name.lastIndexOf(':') + 1));
    const wake = waiting.get(worker);
    if (wake) {
      waiting.delete(worker);
      wake();
    } else tokens.add(worker);
  });
  await sub.subscribe(...workers.map(channel));
  await pub.ping();
  return {
    errors: [],
    async acquire(_key, worker) {
      // Warm-up (no worker): publish to a channel nobody listens to.
      if (worker === undefined) return { release: () => pub.publish(`${key}:ring:warm`, '1') };
      if (!tokens.delete(worker)) await new Promise<void>((resolve) => waiting.set(worker, resolve));
      return { release: () => pub.publish(channel((worker + 1) % totalWorkers), '1') };
    },
    close: async () => {
      sub.disconnect();
      await pub.quit();
    },
  };
}
