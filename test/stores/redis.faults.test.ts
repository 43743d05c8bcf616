import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { INestApplication } from '@nestjs/common';
import { Redis } from 'ioredis';
import { LockLostError, LockService, LockStoreError, type AcquireResult } from 'nestjs-distributed-lock';
import { RedisLockStore, type RedisLockStoreOptions } from 'nestjs-distributed-lock/redis';
import { createTestApp } from '../support/app.js';
import { RedisServer } from '../support/redis-server.js';
import { waitFor } from '../support/wait-for.js';
import { grant, request } from '../support/store-requests.js';

const holderChild = fileURLToPath(new URL('../support/redis-holder-child.js', import.meta.url));

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function server(args: string[] = []): Promise<RedisServer> {
  const started = await RedisServer.start({ args });
  cleanups.push(() => started.stop());
  return started;
}

function store(url: string, options: Omit<RedisLockStoreOptions, 'url'> = {}): RedisLockStore {
  const opened = new RedisLockStore({ url, connectTimeout: 1_000, ...options });
  cleanups.push(() => opened.close());
  return opened;
}

async function app(url: string): Promise<INestApplication> {
  const created = await createTestApp({ lock: { store: new RedisLockStore({ url, connectTimeout: 1_000 }), closeStore: true } });
  cleanups.push(() => created.close());
  return created;
}

/** The store key LockService uses for `key` (no module prefix: just ':' before it). */
const serviceKey = (key: string) => `:${key}`;

/** A process holding `key`, and the lines it prints, awaitable one by one. */
function holder(url: string, key: string, ttl: number): { child: ChildProcess; line: () => Promise<string> } {
  const child = spawn(process.execPath, [holderChild, url, key, String(ttl)], { stdio: ['ignore', 'pipe', 'inherit'] });
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
  const line = async () => {
    const next = await lines.next();
    if (next.done) throw new Error('the holder process ended without saying more');
    return next.value;
  };
  return { child, line };
}

describe('RedisLockStore when a holder fails', () => {
  it('passes the lock on once the lease of a killed holder runs out, with a larger token', async () => {
    const redis = await server();
    const key = `killed:${randomUUID()}`;
    const { child, line } = holder(redis.url, key, 500);
    const token = Number((await line()).replace('held ', ''));
    child.kill('SIGKILL');
    const started = performance.now();
    const result = await store(redis.url).acquire(request(serviceKey(key), { wait: 5_000 }));
    assert.equal(result.acquired, true);
    assert.ok(performance.now() - started < 1_500, 'served once the lease ran out');
    if (result.acquired) assert.ok(result.fencingToken > token);
  });

  it('lets a holder stopped past its ttl find its lock lost when it resumes, without touching the new holder', async () => {
    const redis = await server();
    const key = `stopped:${randomUUID()}`;
    const { child, line } = holder(redis.url, key, 600);
    const token = Number((await line()).replace('held ', ''));
    child.kill('SIGSTOP');
    const next = await store(redis.url).acquire(request(serviceKey(key), { wait: 5_000 }));
    assert.equal(next.acquired, true, 'taken once the stopped holder stopped renewing');
    if (next.acquired) assert.ok(next.fencingToken > token);
    child.kill('SIGCONT');
    assert.match(await line(), /^lost (expired|not-owner)$/);
    assert.equal(await line(), 'released false');
    assert.equal((await store(redis.url).acquire(request(serviceKey(key)))).acquired, false, 'the new holder still holds it');
  });
});

describe('RedisLockStore when Redis fails', () => {
  it('reports a held lock lost when Redis restarts without its data', async () => {
    const redis = await server();
    const locks = (await app(redis.url)).get(LockService);
    const lock = await locks.acquire(`restart:${randomUUID()}`, { ttl: '900ms' });
    await redis.restart();
    const reason = await new Promise<unknown>((resolve) => lock.signal.addEventListener('abort', () => resolve(lock.signal.reason)));
    assert.ok(reason instanceof LockLostError);
    assert.ok(['not-owner', 'expired'].includes(reason.reason), `lost as ${reason.reason}`);
  });

  it('keeps locks and fencing tokens across a restart when Redis persists every write', async () => {
    const redis = await server(['--appendonly', 'yes', '--appendfsync', 'always']);
    const locks = (await app(redis.url)).get(LockService);
    const key = `persisted:${randomUUID()}`;
    const first = await locks.acquire(key, { ttl: '3s' });
    await redis.restart();
    await first.extend();
    assert.equal(first.held, true, 'still held after the restart');
    await first.release();
    const second = await locks.acquire(key);
    assert.ok(second.fencingToken > first.fencingToken, 'the token kept growing');
    await second.release();
  });

  it('wakes a waiter whose hand-off message was published while its subscription was reconnecting', async () => {
    const redis = await server();
    const admin = new Redis(redis.url);
    cleanups.push(() => admin.disconnect());
    const [holder, waiting] = [store(redis.url), store(redis.url)];
    const key = `missed:${randomUUID()}`;
    const held = request(key);
    assert.equal((await holder.acquire(held)).acquired, true);
    // ttl 30s: the waiter's own re-check would come only after a second.
    const result = waiting.acquire(request(key, { wait: 10_000 }));
    await waitFor(async () => (await admin.zcard(`lock:{${key}}:queue`)) === 1, 2_000, 'waiter queued');
    await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    const released = performance.now();
    await holder.release(key, held.owner);
    assert.equal((await result).acquired, true);
    assert.ok(performance.now() - released < 800, 'woken by the re-check after reconnecting, not by the periodic one');
  });

  it('fails a release that Redis does not answer within connectTimeout, and frees the lock once Redis runs again', async () => {
    const redis = await server();
    const [holding, next] = [store(redis.url), store(redis.url)];
    const key = `paused-release:${randomUUID()}`;
    const ttl = 3_000;
    const held = request(key, { ttl });
    await grant(holding, held);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      redis.pause();
      const releasing = performance.now();
      await assert.rejects(holding.release(key, held.owner), (error: Error) => {
        assert.ok(error instanceof LockStoreError, `a LockStoreError, not ${error.name}`);
        assert.match(error.message, /could not release lock ".*": redis:\/\/127\.0\.0\.1:\d+ did not answer within 1000ms/);
        return true;
      });
      const failedAfter = performance.now() - releasing;
      assert.ok(failedAfter >= 990 && failedAfter < 1_300, `failed after ${Math.round(failedAfter)}ms, at connectTimeout`);

      redis.resume();
      const resumed = performance.now();
      // The release was sent before the pause: Redis runs it once it runs again.
      const taken = await next.acquire(request(key, { wait: ttl }));
      assert.equal(taken.acquired, true);
      assert.ok(performance.now() - resumed < ttl, 'free again within the holder\'s ttl');
      assert.equal((await holding.acquire(request(`after:${key}`))).acquired, true, 'the store that timed out works again');
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(unhandled, [], 'no promise was left to reject unhandled');
    } finally {
      redis.resume();
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe("RedisLockStore when a waiter's own connections drop", () => {
  /** The ids of the connections named `name`: its command connection and, once it waits, its subscriber. */
  async function connections(admin: Redis, name: string): Promise<{ command: string[]; subscriber: string[] }> {
    const lines = String(await admin.call('CLIENT', 'LIST')).split('\n').filter((line) => line.includes(` name=${name} `));
    const id = (line: string) => /^id=(\d+)/.exec(line)?.[1] ?? '';
    return { command: lines.filter((line) => / sub=0 /.test(line)).map(id), subscriber: lines.filter((line) => !/ sub=0 /.test(line)).map(id) };
  }

  /**
   * A holder holds `key`, a store whose connections are named `name` waits
   * for it; resolves once it waits in the queue, with the waiter's result
   * and when it settled.
   */
  async function waiting(redis: RedisServer, admin: Redis, name: string) {
    const holding = store(redis.url);
    const waiter = store(redis.url, { redisOptions: { connectionName: name } });
    const key = `own-connection:${randomUUID()}`;
    const held = request(key);
    const holderGrant = await grant(holding, held);
    const settled: { at?: number } = {};
    const result: Promise<AcquireResult> = waiter.acquire(request(key, { wait: 10_000 })).finally(() => (settled.at = performance.now()));
    await waitFor(async () => (await admin.zcard(`lock:{${key}}:queue`)) === 1, 2_000, 'waiter queued');
    const release = async () => {
      assert.equal(settled.at, undefined, 'the waiter got nothing while the holder held the lock');
      const released = performance.now();
      assert.equal(await holding.release(key, held.owner), true);
      return released;
    };
    return { result, settled, release, holderToken: holderGrant.fencingToken };
  }

  it('gets the lock when both its connections are cut and the holder releases before they are back', async () => {
    const redis = await server();
    const admin = new Redis(redis.url);
    cleanups.push(() => admin.disconnect());
    const { result, settled, release, holderToken } = await waiting(redis, admin, 'cut-both');
    const { command, subscriber } = await connections(admin, 'cut-both');
    assert.equal(command.length, 1, 'one command connection');
    assert.equal(subscriber.length, 1, 'one subscriber connection');
    for (const id of [...command, ...subscriber]) await admin.call('CLIENT', 'KILL', 'ID', id);
    // Released while the waiter reconnects: the hand-off message is published to nobody.
    const released = await release();
    const taken = await result;
    assert.equal(taken.acquired, true);
    if (taken.acquired) assert.ok(taken.fencingToken > holderToken);
    assert.ok((settled.at ?? Infinity) - released < 1_000, `got it ${Math.round((settled.at ?? Infinity) - released)}ms after the release`);
  });

  it('gets the lock by the hand-off message once its cut connections are back', async () => {
    const redis = await server();
    const admin = new Redis(redis.url);
    cleanups.push(() => admin.disconnect());
    const { result, settled, release } = await waiting(redis, admin, 'cut-then-back');
    const before = await connections(admin, 'cut-then-back');
    for (const id of [...before.command, ...before.subscriber]) await admin.call('CLIENT', 'KILL', 'ID', id);
    await waitFor(
      async () => {
        const now = await connections(admin, 'cut-then-back');
        return now.command.length === 1 && now.subscriber.length === 1 && !before.command.includes(now.command[0] ?? '');
      },
      2_000,
      'the waiter reconnected and subscribed again',
    );
    const released = await release();
    assert.equal((await result).acquired, true);
    assert.ok((settled.at ?? Infinity) - released < 200, `got it ${Math.round((settled.at ?? Infinity) - released)}ms after the release`);
  });
});
