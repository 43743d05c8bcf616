import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { INestApplication } from '@nestjs/common';
import { Redis } from 'ioredis';
import { LockLostError, LockService, type AcquireRequest } from 'nestjs-distributed-lock';
import { RedisLockStore } from 'nestjs-distributed-lock/redis';
import { createTestApp } from '../support/app.js';
import { RedisServer } from '../support/redis-server.js';
import { waitFor } from '../support/wait-for.js';

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

function store(url: string): RedisLockStore {
  const opened = new RedisLockStore({ url, connectTimeout: 1_000 });
  cleanups.push(() => opened.close());
  return opened;
}

async function app(url: string): Promise<INestApplication> {
  const created = await createTestApp({ lock: { store: new RedisLockStore({ url, connectTimeout: 1_000 }), closeStore: true } });
  cleanups.push(() => created.close());
  return created;
}

function request(key: string, overrides: Partial<AcquireRequest> = {}): AcquireRequest {
  return { key, owner: randomUUID(), ttl: 30_000, wait: 0, onLost: () => {}, ...overrides };
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
});
