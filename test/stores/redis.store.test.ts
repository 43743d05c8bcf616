import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { InvalidLockOptionError, LockStoreError } from 'nestjs-distributed-lock';
import { RedisLockStore, type RedisLockStoreOptions } from 'nestjs-distributed-lock/redis';
import { freePort } from '../support/free-port.js';
import { RedisServer } from '../support/redis-server.js';
import { waitFor } from '../support/wait-for.js';
import { grant, request } from '../support/store-requests.js';

const waiterChild = fileURLToPath(new URL('../support/redis-waiter-child.js', import.meta.url));

let server: RedisServer;
let admin: Redis;
const stores: RedisLockStore[] = [];

before(async () => {
  server = await RedisServer.start();
  admin = new Redis(server.url);
});
after(async () => {
  await Promise.all(stores.map((store) => store.close()));
  admin.disconnect();
  await server.stop();
});

/** A store on the test server; closed after the file. Each store is its own connection, like a process of its own. */
function open(options: Partial<RedisLockStoreOptions> = {}): RedisLockStore {
  const store = new RedisLockStore({ url: server.url, ...options });
  stores.push(store);
  return store;
}

/** Calls of each command since the server started, from INFO commandstats. */
async function commandCalls(redis: Redis = admin): Promise<Record<string, number>> {
  const calls: Record<string, number> = {};
  for (const [, name, count] of (await redis.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    calls[name as string] = Number(count);
  }
  return calls;
}

/** The queue of `key` under the default prefix (for keys without '%' or '}', which the store escapes). */
const queueOf = (key: string) => `lock:{${key}}:queue`;

describe('RedisLockStore', () => {
  it('serves waiters from different processes in the order they started waiting', async () => {
    const key = `fifo:${randomUUID()}`;
    const [holder, ...others] = [open(), open(), open()];
    const held = request(key);
    await grant(holder, held);
    const order: number[] = [];
    const pending = [0, 1, 2, 3].map(async (i) => {
      const store = others[i % 2] as RedisLockStore;
      const waiter = request(key, { wait: 10_000 });
      // Each waiter joins only once the previous one is in the queue.
      await waitFor(async () => (await admin.zcard(queueOf(key))) === i, 2_000, `waiter ${i - 1} queued`);
      await grant(store, waiter);
      order.push(i);
      await store.release(key, waiter.owner);
    });
    await waitFor(async () => (await admin.zcard(queueOf(key))) === 4, 2_000, 'all waiters queued');
    await holder.release(key, held.owner);
    await Promise.all(pending);
    assert.deepEqual(order, [0, 1, 2, 3]);
  });

  it('wakes a waiter when the holder releases, without asking Redis in between', async () => {
    const key = `push:${randomUUID()}`;
    const [holder, waiting] = [open(), open()];
    const held = request(key);
    await grant(holder, held);
    const before = await commandCalls();
    const result = waiting.acquire(request(key, { wait: 10_000 }));
    await waitFor(async () => (await admin.zcard(queueOf(key))) === 1, 2_000, 'waiter queued');
    // Whatever polling there were would show up in this window.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const queued = await commandCalls();
    assert.equal((queued.evalsha ?? 0) - (before.evalsha ?? 0), 1, 'one script call to join the queue, nothing while waiting');
    const released = performance.now();
    await holder.release(key, held.owner);
    assert.equal((await result).acquired, true);
    assert.ok(performance.now() - released < 100, 'woken at once');
    const after = await commandCalls();
    assert.equal((after.evalsha ?? 0) - (queued.evalsha ?? 0), 1, 'the release alone: the hand-off cost no round trip');
  });

  it('keeps the fencing counter through release and expiry, and leaves nothing else behind', async () => {
    const keyPrefix = `fence-${randomUUID()}:`;
    const store = open({ keyPrefix });
    const first = request('k');
    const a = await grant(store, first);
    await store.release('k', first.owner);
    const b = await grant(store, request('k', { ttl: 50 }));
    await waitFor(async () => (await admin.exists(`${keyPrefix}{k}`)) === 0, 2_000, 'lease ran out');
    const last = request('k');
    const c = await grant(store, last);
    assert.ok(a.fencingToken < b.fencingToken && b.fencingToken < c.fencingToken, 'tokens grow across release and expiry');
    await store.release('k', last.owner);
    assert.deepEqual(await admin.keys(`${keyPrefix}*`), [`${keyPrefix}{k}:fence`]);
    assert.equal(Number(await admin.get(`${keyPrefix}{k}:fence`)), c.fencingToken);
  });

  it('still works after Redis flushed its script cache', async () => {
    const store = open();
    const key = `flush:${randomUUID()}`;
    await admin.script('FLUSH');
    const before = await commandCalls();
    const held = request(key);
    await grant(store, held);
    assert.deepEqual(
      (await store.renew([{ key, owner: held.owner, ttl: 30_000 }])).map((r) => r.renewed),
      [true],
    );
    const gaveUp = await store.acquire(request(key, { wait: 30 }));
    assert.equal(gaveUp.acquired, false);
    assert.equal(await store.release(key, held.owner), true);
    const after = await commandCalls();
    assert.ok((after.eval ?? 0) - (before.eval ?? 0) >= 1, 'the scripts were sent in full again');
  });

  it('puts all keys of a lock in one Cluster slot and never mixes two locks up', async () => {
    const names = ['}', '{', '}x{', 'a}b{c', '{a}', '{}', 'a\u0000b', '%7D', '%', '%25', 'a:fence', 'x'.repeat(1000), 'ключ🔒'];
    const slots = await RedisServer.start({ args: ['--cluster-enabled', 'yes'] });
    const slotOf = new Redis(slots.url);
    try {
      for (const [i, name] of names.entries()) {
        const keyPrefix = `slots-${i}-${randomUUID()}:`;
        const store = open({ keyPrefix });
        const held = request(name);
        await grant(store, held);
        const waiting = store.acquire(request(name, { wait: 10_000 }));
        await waitFor(async () => (await admin.keys(`${keyPrefix}*`)).length === 4, 2_000, `four keys for ${JSON.stringify(name)}`);
        const keys = await admin.keys(`${keyPrefix}*`);
        const keySlots = new Set(await Promise.all(keys.map((key) => slotOf.call('CLUSTER', 'KEYSLOT', key))));
        assert.equal(keySlots.size, 1, `${JSON.stringify(name)}: ${keys.join(', ')} share one slot`);
        await store.release(name, held.owner);
        assert.equal((await waiting).acquired, true);
      }
      // All held at once, under one prefix: each is its own lock.
      const store = open({ keyPrefix: `apart-${randomUUID()}:` });
      for (const name of names) await grant(store, request(name));
      for (const name of names) assert.equal((await store.acquire(request(name))).acquired, false, `${JSON.stringify(name)} stays held`);
    } finally {
      slotOf.disconnect();
      await slots.stop();
    }
  });

  it('renews 2,500 locks with three script calls, answering in order', async () => {
    const store = open();
    const run = randomUUID();
    const held = Array.from({ length: 2_500 }, (_, i) => request(`renew:${run}:${i}`, { ttl: 10_000 }));
    await Promise.all(held.map((req) => grant(store, req)));
    const before = await commandCalls();
    const results = await store.renew(
      held.map((req, i) => ({ key: req.key, owner: i % 7 === 0 ? 'someone-else' : req.owner, ttl: 60_000 })),
    );
    const after = await commandCalls();
    assert.equal((after.evalsha ?? 0) - (before.evalsha ?? 0), 3);
    assert.deepEqual(
      results.map((r) => r.renewed),
      held.map((_, i) => i % 7 !== 0),
    );
    assert.ok((await admin.pttl(`lock:{${held[1]?.key}}`)) > 10_000, 'the lease was extended');
    assert.ok((await admin.pttl(`lock:{${held[0]?.key}}`)) <= 10_000, 'a stranger did not extend it');
  });

  it('drops a waiter whose process died from the queue, and never hands it the lock', async () => {
    const key = `dead-waiter:${randomUUID()}`;
    const store = open();
    const held = request(key);
    await grant(store, held);
    const child = spawn(process.execPath, [waiterChild, server.url, key, '300'], { stdio: ['ignore', 'inherit', 'inherit'] });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      await waitFor(async () => (await admin.zcard(queueOf(key))) === 1, 5_000, 'the child queued');
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    // Its entry lives three refresh intervals (3 x 30ms for a 300ms ttl) and some slack.
    await waitFor(async () => (await admin.exists(queueOf(key))) === 0, 2_000, 'the dead waiter left the queue');
    assert.equal(await store.release(key, held.owner), true);
    await grant(open(), request(key));
  });

  it('resolves pending waits with acquired: false on close, leaves the queue, and refuses later calls', async () => {
    const key = `close:${randomUUID()}`;
    const holder = open();
    const held = request(key);
    await grant(holder, held);
    const closing = open();
    const waiting = closing.acquire(request(key, { wait: 10_000 }));
    await waitFor(async () => (await admin.zcard(queueOf(key))) === 1, 2_000, 'waiter queued');
    await closing.close();
    assert.deepEqual(await waiting, { acquired: false });
    assert.equal(await admin.exists(queueOf(key)), 0, 'the queue is empty');
    await assert.rejects(closing.acquire(request(key)), LockStoreError);
    await assert.rejects(closing.release(key, held.owner), LockStoreError);
  });

  it('refuses options it cannot use, saying what to pass', () => {
    const refused = (options: unknown, message: RegExp) =>
      assert.throws(() => new RedisLockStore(options as RedisLockStoreOptions), (error: unknown) => error instanceof InvalidLockOptionError && message.test(error.message));
    refused({ url: server.url, ttl: 5 }, /option "ttl": 5; remove it/);
    refused({}, /pass \{ client \}/);
    refused({ url: 'localhost:6379' }, /url.*pass a URL such as "redis:\/\/127\.0\.0\.1:6379\/0"/);
    refused({ url: server.url, client: admin }, /pass either a client or the options to create one/);
    refused({ url: server.url, keyPrefix: 'locks{' }, /keyPrefix.*without '\{' or '\}'/);
    refused({ url: server.url, connectTimeout: 0 }, /connectTimeout": 0; pass a number of milliseconds above 0/);
    // Node fires a timer longer than 2^31-1 ms at once: such a timeout would fail every call on the spot.
    refused({ url: server.url, connectTimeout: 2 ** 31 }, /connectTimeout": 2147483648; .*at most 1073741823/);
    refused({ url: server.url, waitForReplicas: { replicas: 0, timeout: 100 } }, /waitForReplicas.*at least 1 replica/);
    refused({ url: server.url, waitForReplicas: { replicas: 1, timeout: 2 ** 31 } }, /waitForReplicas.*at most 1073741823/);
  });

  it('fails within connectTimeout with an error that names the server but not the password when Redis is unreachable', async () => {
    const port = await freePort();
    const store = open({ url: `redis://locks:s3cret@127.0.0.1:${port}/0`, connectTimeout: 300 });
    const started = performance.now();
    await assert.rejects(store.acquire(request('unreachable')), (error: Error) => {
      assert.ok(error instanceof LockStoreError);
      assert.match(error.message, new RegExp(`redis://127\\.0\\.0\\.1:${port}/0`));
      assert.doesNotMatch(error.message, /s3cret/);
      return true;
    });
    assert.ok(performance.now() - started < 2_000, 'failed promptly');
    await store.close();
  });

  it('fails within connectTimeout when Redis stops answering, and passes on a grant that arrives late', async () => {
    const paused = await RedisServer.start();
    try {
      const store = open({ url: paused.url, connectTimeout: 300 });
      const key = `paused:${randomUUID()}`;
      await grant(store, request('warm-up'));
      paused.pause();
      const started = performance.now();
      await assert.rejects(store.acquire(request(key)), /did not answer within 300ms/);
      assert.ok(performance.now() - started < 2_000, 'failed promptly');
      paused.resume();
      // The acquire ran once Redis woke up; the leave sent after it released the lock.
      await waitFor(async () => (await store.acquire(request(key))).acquired, 2_000, 'the late grant passed on');
    } finally {
      await paused.stop();
    }
  });

  describe('waitForReplicas', () => {
    let primary: RedisServer;
    let replica: RedisServer;
    before(async () => {
      // No delay before a full sync (Redis waits 5s by default for more replicas to join it).
      primary = await RedisServer.start({ args: ['--repl-diskless-sync-delay', '0'] });
      replica = await RedisServer.start({ args: ['--replicaof', '127.0.0.1', String(primary.port)] });
      const probe = new Redis(replica.url);
      try {
        await waitFor(async () => (await probe.info('replication')).includes('master_link_status:up'), 10_000, 'replica in sync');
      } finally {
        probe.disconnect();
      }
    });
    after(async () => {
      await replica?.stop();
      await primary?.stop();
    });

    it('grants once the replica confirmed, also after a hand-off', async () => {
      const store = open({ url: primary.url, waitForReplicas: { replicas: 1, timeout: 1_000 } });
      const key = `replicated:${randomUUID()}`;
      const held = request(key);
      await grant(store, held);
      const waiting = store.acquire(request(key, { wait: 10_000 }));
      const check = new Redis(primary.url);
      try {
        await waitFor(async () => (await check.zcard(queueOf(key))) === 1, 2_000, 'waiter queued');
      } finally {
        check.disconnect();
      }
      await store.release(key, held.owner);
      assert.equal((await waiting).acquired, true);
    });

    it('fails and releases the lock when too few replicas confirm', async () => {
      const store = open({ url: primary.url, waitForReplicas: { replicas: 2, timeout: 50 } });
      const key = `under-replicated:${randomUUID()}`;
      await assert.rejects(store.acquire(request(key)), /only 1 of 2 replica\(s\) confirmed it within 50ms/);
      await grant(open({ url: primary.url }), request(key));
    });
  });
});
