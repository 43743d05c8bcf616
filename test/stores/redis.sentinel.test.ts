import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Redis, type RedisOptions } from 'ioredis';
import { LockStoreError } from 'nestjs-distributed-lock';
import { runLockStoreContract } from 'nestjs-distributed-lock/testing';
import { RedisLockStore, type RedisLockStoreOptions } from 'nestjs-distributed-lock/redis';
import { RedisSentinel } from '../support/redis-sentinel.js';
import { waitFor } from '../support/wait-for.js';
import { grant, request } from '../support/store-requests.js';

let sentinel: RedisSentinel;
const clients: Redis[] = [];
const stores: RedisLockStore[] = [];

before(async () => {
  sentinel = await RedisSentinel.start();
});
after(async () => {
  await Promise.all(stores.map((store) => store.close()));
  for (const client of clients) client.disconnect();
  await sentinel.stop();
});

/** An ioredis client in Sentinel mode, as an application creates it; disconnected after the file. */
function sentinelClient(options: RedisOptions = {}): Redis {
  const client = new Redis({ sentinels: sentinel.sentinels, name: sentinel.name, ...options });
  client.on('error', () => {}); // reconnects during a fail-over are expected; the store reports failed calls
  clients.push(client);
  return client;
}

/** A store on its own Sentinel client, like a process of its own; closed after the file. */
function open(options: Omit<RedisLockStoreOptions, 'client'> = {}): RedisLockStore {
  const store = new RedisLockStore({ client: sentinelClient(), connectTimeout: 2_000, ...options });
  stores.push(store);
  return store;
}

runLockStoreContract(
  { describe, it },
  { name: 'RedisLockStore through Sentinel', createStore: () => new RedisLockStore({ client: sentinelClient() }) },
);

describe('RedisLockStore through Sentinel', () => {
  it('confirms each grant on the replica with waitForReplicas, and fails with a clear error while the replica is stopped', async () => {
    // The store's own Sentinel client (redisOptions), which it closes.
    const store = new RedisLockStore({
      redisOptions: { sentinels: sentinel.sentinels, name: sentinel.name },
      // Long enough for a loaded machine's replica to acknowledge; the stopped case waits it out.
      waitForReplicas: { replicas: 1, timeout: 1_000 },
      connectTimeout: 1_000,
    });
    stores.push(store);
    const key = `replicated:${randomUUID()}`;
    const first = request(key);
    await grant(store, first);
    assert.equal(await store.release(key, first.owner), true);

    const replica = await sentinel.replica();
    replica.pause();
    try {
      const started = performance.now();
      await assert.rejects(store.acquire(request(key)), (error: Error) => {
        assert.ok(error instanceof LockStoreError, `a LockStoreError, not ${error.name}`);
        assert.match(error.message, /Sentinel master "mymaster", but only 0 of 1 replica\(s\) confirmed it within 1000ms, so it was released again/);
        return true;
      });
      assert.ok(performance.now() - started < 2_500, 'failed once the WAIT timeout passed');
      await grant(open(), request(key)); // the unconfirmed grant was released, not left to expire
    } finally {
      replica.resume();
    }
  });

  it('does not take a WAIT answered over a new connection as confirming a grant made over the old one', async () => {
    const client = sentinelClient({ connectionName: 'confirming' });
    const store = new RedisLockStore({ client, waitForReplicas: { replicas: 1, timeout: 2_000 }, connectTimeout: 2_000 });
    stores.push(store);
    const master = await sentinel.master();
    const replica = await sentinel.replica();
    const admin = new Redis(master.url);
    const key = `reconnected:${randomUUID()}`;
    replica.pause(); // the store's WAIT blocks until its connection is cut
    try {
      const acquiring = store.acquire(request(key));
      let waiting: string | undefined;
      await waitFor(
        async () => {
          const lines = String(await admin.call('CLIENT', 'LIST', 'TYPE', 'normal')).split('\n');
          waiting = lines.find((line) => / name=confirming /.test(line) && / cmd=wait /.test(line) && / flags=[^ ]*b/.test(line));
          return waiting !== undefined;
        },
        2_000,
        "the store's WAIT blocked on the primary",
      );
      await admin.call('CLIENT', 'KILL', 'ID', /^id=(\d+)/.exec(waiting ?? '')?.[1] ?? '');
      // ioredis sends WAIT again over its new connection, which wrote nothing,
      // so the replica, running again, acknowledges it at once.
      replica.resume();
      await assert.rejects(acquiring, (error: Error) => {
        assert.ok(error instanceof LockStoreError, `a LockStoreError, not ${error.name}`);
        assert.match(error.message, /the connection was re-established .* before the replicas confirmed it, so whether they have it is unknown and it was released again/);
        return true;
      });
    } finally {
      replica.resume();
      admin.disconnect();
    }
    await grant(open(), request(key)); // released, not left held until its lease ends
  });

  it('keeps serving locks on the new primary after a fail-over, with tokens above every grant the replica had', async (t) => {
    const [holder, waiting, other] = [open(), open(), open()];
    const key = `failover:${randomUUID()}`;
    const counted = `counted:${randomUUID()}`;
    const held = request(key);
    const heldGrant = await grant(holder, held);
    let waiterSettled: number | undefined;
    const waiter = waiting.acquire(request(key, { wait: 60_000 })).finally(() => (waiterSettled = performance.now()));
    const probe = sentinelClient();
    await waitFor(async () => (await probe.zcard(`lock:{${key}}:queue`)) === 1, 2_000, 'waiter queued');
    let last = 0;
    for (let i = 0; i < 5; i++) {
      const req = request(counted);
      const result = await grant(other, req);
      assert.ok(result.fencingToken > last);
      last = result.fencingToken;
      assert.equal(await other.release(counted, req.owner), true);
    }

    // Until the sentinel demotes the old primary (and so drops its clients),
    // an ioredis client without failoverDetector keeps using it.
    const { sentAt, promotedAt, demotedAt } = await sentinel.failover();
    t.diagnostic(`after SENTINEL FAILOVER: promoted in ${Math.round(promotedAt - sentAt)}ms, old primary demoted in ${Math.round(demotedAt - sentAt)}ms`);
    assert.equal(waiterSettled, undefined, 'the waiter did not get the lock while the holder held it');

    const releasing = performance.now();
    assert.equal(await holder.release(key, held.owner), true, 'the new primary had the lock from the replica');
    t.diagnostic(`release on the new primary took ${Math.round(performance.now() - releasing)}ms`);
    assert.ok(performance.now() - releasing < 2_000, 'released within connectTimeout');
    const handed = await waiter;
    t.diagnostic(`the waiter got the lock ${Math.round(performance.now() - releasing)}ms after the release`);
    assert.equal(handed.acquired, true, 'the waiter that waited across the fail-over got the lock');
    assert.ok(performance.now() - releasing < 2_000, 'handed over promptly, not at the end of the wait');
    if (handed.acquired) assert.ok(handed.fencingToken > heldGrant.fencingToken, 'its token is above the holder it followed');

    const acquiring = performance.now();
    const next = await grant(other, request(counted));
    assert.ok(performance.now() - acquiring < 2_000, 'acquired within connectTimeout');
    assert.ok(next.fencingToken > last, `token ${next.fencingToken} after the fail-over is above ${last} before it`);
  });

  it('with waitForReplicas, refuses the grants a fail-over would forget, so no fencing token is handed out twice', async (t) => {
    // A long WAIT timeout: the fail-over is then likely to cut a connection while a WAIT is pending.
    const timeout = 1_000;
    const store = open({ waitForReplicas: { replicas: 1, timeout } });
    const key = `fenced:${randomUUID()}`;
    const tokens: number[] = [];
    const refusals: string[] = [];
    let slowest = 0;
    let stop = false;
    let afterDemotion = 0;
    // Acquire and release in a loop through the whole fail-over.
    const loop = (async () => {
      while (!stop) {
        const req = request(key);
        const started = performance.now();
        try {
          const result = await grant(store, req);
          tokens.push(result.fencingToken);
          await store.release(key, req.owner);
          afterDemotion++;
        } catch (error) {
          assert.ok(error instanceof LockStoreError, `a LockStoreError, not ${String(error)}`);
          refusals.push(error.message);
        }
        slowest = Math.max(slowest, performance.now() - started);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    await waitFor(() => tokens.length >= 3, 5_000, 'grants before the fail-over');
    try {
      await sentinel.failover();
      afterDemotion = 0;
      await waitFor(() => afterDemotion >= 3, 10_000, 'grants on the new primary once the old one is its replica');
    } finally {
      stop = true;
      await loop;
    }
    const reconnected = refusals.filter((message) => message.includes('connection was re-established')).length;
    t.diagnostic(`${tokens.length} grants, ${refusals.length} refused (${reconnected} as WAIT answered over a new connection), slowest call ${Math.round(slowest)}ms`);
    for (let i = 1; i < tokens.length; i++) {
      assert.ok((tokens[i] as number) > (tokens[i - 1] as number), `tokens only grow: ${tokens.slice(Math.max(0, i - 3), i + 2).join(', ')}`);
    }
    for (const message of refusals) assert.match(message, /replica\(s\) confirmed it|connection was re-established|did not answer within/);
    // A grant, a WAIT and a release again: each bounded by connectTimeout (2s), none hangs.
    assert.ok(slowest < 2 * 2_000 + timeout, `slowest call ${Math.round(slowest)}ms`);
  });
});
