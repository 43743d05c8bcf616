import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, afterEach, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { InvalidLockOptionError, LockStoreError, type AcquireRequest } from 'nestjs-distributed-lock';
import { EtcdLockStore, type EtcdLockStoreOptions } from 'nestjs-distributed-lock/etcd';
import { EtcdCluster } from '../support/etcd-cluster.js';
import { grant, request as storeRequest } from '../support/store-requests.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait-for.js';

// Raft timing that lets etcd grant 1 s leases (its minimum is 1.5 election
// ticks' worth of heartbeats), so session-loss tests take about a second.
let etcd: EtcdCluster;
let admin: Etcd3;
let opened: EtcdLockStore[] = [];

before(async () => {
  etcd = await EtcdCluster.start({ timing: { heartbeat: 50, election: 500 } });
  admin = new Etcd3({ hosts: etcd.hosts });
});
afterEach(async () => {
  await Promise.all(opened.map((store) => store.close()));
  opened = [];
});
after(async () => {
  admin?.close();
  await etcd?.stop();
});

/** A store on the test etcd, like one process of an application; closed after the test. */
function open(options: Partial<EtcdLockStoreOptions> = {}): EtcdLockStore {
  const store = new EtcdLockStore({ ...(options.client ? {} : { hosts: etcd.hosts }), sessionTtl: '1s', ...options });
  opened.push(store);
  return store;
}

interface Losses {
  readonly reasons: string[];
  readonly at: number[];
}

/** A store request whose losses, if any, go into `losses`. */
function request(key: string, overrides: Partial<AcquireRequest> = {}, losses?: Losses): AcquireRequest {
  const onLost: AcquireRequest['onLost'] = (reason) => {
    losses?.reasons.push(reason);
    losses?.at.push(performance.now());
  };
  return storeRequest(key, { onLost, ...overrides });
}

/** The keys under a lock's prefix (default key prefix, keys without '%' or '/'), in queue order. */
async function queueOf(key: string): Promise<{ key: string; value: string; createRevision: number; lease: string }[]> {
  const kvs = (await admin.getAll().prefix(`lock/${key}/`).sort('Create', 'Ascend').exec()).kvs;
  return kvs.map((kv) => ({ key: kv.key.toString(), value: kv.value.toString(), createRevision: Number(kv.create_revision), lease: kv.lease }));
}

/** A gauge or counter from etcd's Prometheus endpoint. */
async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${etcd.hosts[0]}/metrics`)).text();
  const line = text.split('\n').find((row) => row.startsWith(`${name} `));
  if (!line) throw new Error(`etcd has no metric ${name}`);
  return Number(line.slice(name.length + 1));
}

/** A real client whose KV calls are counted (each call still goes to etcd). */
function countingClient(): { client: Etcd3; calls: Record<'range' | 'txn' | 'deleteRange', number> } {
  const client = new Etcd3({ hosts: etcd.hosts });
  const calls = { range: 0, txn: 0, deleteRange: 0 };
  for (const method of ['range', 'txn', 'deleteRange'] as const) {
    const original = client.kv[method].bind(client.kv) as (...args: unknown[]) => Promise<unknown>;
    (client.kv as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
      calls[method]++;
      return original(...args);
    };
  }
  return { client, calls };
}

describe('EtcdLockStore', () => {
  it('serves waiters from different stores in the order they started waiting', async () => {
    const key = `fifo-${randomUUID()}`;
    const [holder, ...others] = [open(), open(), open()];
    const held = request(key);
    await grant(holder, held);
    const order: number[] = [];
    const pending = [0, 1, 2, 3].map(async (i) => {
      const store = others[i % 2] as EtcdLockStore;
      const waiter = request(key, { wait: 10_000 });
      // Each waiter joins only once the previous one is in the queue.
      await waitFor(async () => (await queueOf(key)).length === i + 1, 5_000, `waiter ${i - 1} queued`);
      await grant(store, waiter);
      order.push(i);
      await store.release(key, waiter.owner);
    });
    await waitFor(async () => (await queueOf(key)).length === 5, 5_000, 'all waiters queued');
    await holder.release(key, held.owner);
    await Promise.all(pending);
    assert.deepEqual(order, [0, 1, 2, 3]);
  });

  it('hands the lock on at the predecessor\'s deletion, without reading etcd again and with no watch etcd must catch up', async () => {
    const key = `handoff-${randomUUID()}`;
    await waitFor(async () => (await metric('etcd_debugging_mvcc_watcher_total')) === 0, 5_000, 'no watch left from earlier tests');
    const [a, b] = [open(), open()];
    const counted = countingClient();
    const c = open({ client: counted.client });
    const first = request(key);
    const second = request(key, { wait: 10_000 });
    const third = request(key, { wait: 10_000 });
    await grant(a, first);
    const secondGranted = b.acquire(second);
    await waitFor(async () => (await queueOf(key)).length === 2, 5_000, 'second queued');
    const thirdGranted = c.acquire(third);
    // Both waiters watch their predecessor: etcd counts their watches.
    await waitFor(async () => (await metric('etcd_debugging_mvcc_watcher_total')) === 2, 5_000, 'both waiters watching');
    const reads = counted.calls.range;
    const writes = counted.calls.txn;
    await a.release(key, first.owner);
    assert.equal((await secondGranted).acquired, true);
    // The second owner marks its key (without waiting); its successor sees the mark before the release.
    await waitFor(async () => (await queueOf(key))[0]?.value === 'owner', 5_000, 'second marked as owner');
    const released = performance.now();
    await b.release(key, second.owner);
    assert.equal((await thirdGranted).acquired, true);
    const handoff = performance.now() - released;
    assert.equal(counted.calls.range, reads, 'the third waiter read nothing: it knew it was next');
    assert.equal(counted.calls.txn, writes + 1, 'its only write was its own owner mark');
    assert.ok(handoff < 500, `handed over in ${handoff.toFixed(1)}ms`);
    assert.equal(await metric('etcd_debugging_mvcc_slow_watcher_total'), 0, 'every watch started at the current revision');
    await c.release(key, third.owner);
    counted.client.close();
  });

  it('deletes the key of a waiter that gives up, whether its wait ran out or its signal aborted', async () => {
    const key = `give-up-${randomUUID()}`;
    const [holder, other] = [open(), open()];
    const held = request(key);
    await grant(holder, held);
    const [holderEntry] = await queueOf(key);
    assert.equal((await other.acquire(request(key, { wait: 100 }))).acquired, false);
    assert.deepEqual((await queueOf(key)).map((entry) => entry.key), [holderEntry?.key], 'only the holder is left after the timeout');
    const controller = new AbortController();
    const aborted = other.acquire(request(key, { wait: 10_000, signal: controller.signal }));
    await waitFor(async () => (await queueOf(key)).length === 2, 5_000, 'waiter queued');
    controller.abort();
    assert.equal((await aborted).acquired, false);
    assert.equal((await queueOf(key)).length, 1, 'only the holder is left after the abort');
  });

  it('uses the create revision of the holder\'s key as the fencing token, growing across releases, under one reused name', async () => {
    const key = `fence-${randomUUID()}`;
    const store = open();
    let last = 0;
    const names = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const req = request(key);
      const { fencingToken } = await grant(store, req);
      const [entry] = await queueOf(key);
      assert.match(entry?.key ?? '', new RegExp(`^lock/${key}/[0-9a-f]+$`), 'prefix, lock key, session lease in hex');
      assert.equal(fencingToken, entry?.createRevision, 'the token is the key\'s create revision');
      assert.ok(fencingToken > last, `token ${fencingToken} > ${last}`);
      last = fencingToken;
      names.add(entry?.key ?? '');
      await store.release(key, req.owner);
    }
    assert.equal(names.size, 1, 'a session reuses its name, so a busy lock leaves no trail of deleted keys');
  });

  it('treats its own key, left by an earlier attempt of a single try, as its place: first in line it owns the lock, behind a holder it deletes it', async () => {
    // etcd3 re-sends a request whose connection failed, and the first attempt
    // may have been applied. The admin client plays that first attempt by
    // putting the store's next name itself.
    const key = `resent-${randomUUID()}`;
    const store = open();
    const first = request(key);
    await grant(store, first);
    const [entry] = await queueOf(key);
    const name = entry?.key ?? '';
    await store.release(key, first.owner);

    await admin.put(name).value('');
    const [earlier] = await queueOf(key);
    const again = request(key);
    assert.equal((await grant(store, again)).fencingToken, earlier?.createRevision, 'the earlier attempt\'s key holds the lock');
    await store.release(key, again.owner);
    assert.deepEqual(await queueOf(key), [], 'released');

    await admin.put(`lock/${key}/holder`).value('');
    await admin.put(name).value('');
    assert.equal((await store.acquire(request(key))).acquired, false, 'busy: someone holds it');
    assert.deepEqual((await queueOf(key)).map((row) => row.key), [`lock/${key}/holder`], 'the key behind the holder was deleted');
    await admin.delete().key(`lock/${key}/holder`);
  });

  it('gives concurrent acquisitions of one lock in one store names of their own', async () => {
    const key = `slots-${randomUUID()}`;
    const store = open();
    const first = request(key);
    await grant(store, first);
    const second = store.acquire(request(key, { wait: 10_000 }));
    await waitFor(async () => (await queueOf(key)).length === 2, 5_000, 'second queued');
    const [a, b] = await queueOf(key);
    assert.equal(b?.key, `${a?.key}/1`, 'slot 1 of the same session');
    await store.release(key, first.owner);
    assert.equal((await second).acquired, true);
  });

  it('keeps every lock\'s queue under its own prefix, whatever the key contains', async () => {
    const base = `layout-${randomUUID()}`;
    const store = open();
    for (const name of ['', '/', '/b', '%2F', '/a/b']) await grant(store, request(`${base}${name}`));
    const keys = (await admin.getAll().prefix(`lock/${base}`).keys()).sort();
    assert.equal(keys.length, 5);
    assert.equal(keys.filter((k) => k.startsWith(`lock/${base}/`)).length, 1, 'only the lock itself under its prefix');
    assert.ok(keys.some((k) => k.startsWith(`lock/${base}%2Fa%2Fb/`)), `escaped: ${keys.join(' ')}`);
  });

  it('keeps a held lock exclusive after a thousand other locks have come and gone', async () => {
    // The store remembers the paths of the last 1,000 locks; this one's is forgotten and built again.
    const key = `remembered-${randomUUID()}`;
    const store = open();
    await grant(store, request(key));
    for (let batch = 0; batch < 10; batch++) {
      const others = Array.from({ length: 101 }, (_, i) => request(`other-${batch}-${i}-${randomUUID()}`));
      await Promise.all(others.map((other) => grant(store, other)));
      await Promise.all(others.map((other) => store.release(other.key, other.owner)));
    }
    assert.equal((await store.acquire(request(key))).acquired, false, 'still held: its queue is where it was');
  });

  it('reuses a released name only when its delete was sent once, so no late copy can delete the next key', async () => {
    const proxy = await TcpProxy.start(etcd.hosts[0] as string);
    try {
      const key = `resent-${randomUUID()}`;
      const store = open({ hosts: proxy.url, sessionTtl: '30s' });
      const entry = async () => (await queueOf(key))[0]?.key ?? '';

      const first = request(key);
      await grant(store, first);
      const name = await entry();
      assert.equal(await store.release(key, first.owner), true);
      const second = request(key);
      await grant(store, second);
      assert.equal(await entry(), name, 'a delete answered on its only attempt frees the name at once');

      // The delete reaches etcd, its answer is lost with the connection, and etcd3 sends it again.
      const cut = proxy.withholdAnswersThenCut(200);
      await store.release(key, second.owner);
      await cut;
      await grant(store, request(key));
      assert.equal(await entry(), `${name}/1`, 'the name of a delete sent twice stays taken: the next key has another');
    } finally {
      await proxy.stop();
    }
  });

  it('releases with a compare-and-delete on a client passed in, whose re-sends it cannot see, and reuses the name at once', async () => {
    const proxy = await TcpProxy.start(etcd.hosts[0] as string);
    const client = new Etcd3({ hosts: proxy.url });
    try {
      const key = `passed-${randomUUID()}`;
      const store = open({ client, sessionTtl: '30s' });
      const first = request(key);
      await grant(store, first);
      const name = (await queueOf(key))[0]?.key;
      const cut = proxy.withholdAnswersThenCut(200);
      await store.release(key, first.owner);
      await cut;
      await grant(store, request(key));
      assert.equal((await queueOf(key))[0]?.key, name, 'a late copy of a compare-and-delete cannot touch the next key, so the name is free');
    } finally {
      client.close();
      await proxy.stop();
    }
  });

  it('deletes a key of its lease that no acquisition holds (a late copy of a join), and keeps the held ones', async () => {
    const store = open();
    const key = `stray-${randomUUID()}`;
    const held = request(key);
    await grant(store, held);
    const entry = (await queueOf(key))[0];
    assert.ok(entry);
    // What a join's copy that landed after its acquisition ended leaves: a key under the lease, in a slot nobody holds.
    const strays = [`${entry.key}/7`, `lock/other-${randomUUID()}/${entry.key.split('/').pop()}`];
    for (const stray of strays) await admin.put(stray).value('').lease(entry.lease).exec();
    await waitFor(async () => (await Promise.all(strays.map((stray) => admin.get(stray).string()))).every((value) => value === null), 5_000, 'strays deleted');
    assert.equal((await queueOf(key))[0]?.key, entry.key, 'the held key stays');
    const [renewed] = await store.renew([{ key, owner: held.owner, ttl: 5_000 }]);
    assert.equal(renewed?.renewed, true, 'and the lock with it');
  });

  it('never promises a lock past its own ttl or the session lease etcd last confirmed', async () => {
    const store = open();
    const clock = store.clock;
    const key = `validity-${randomUUID()}`;
    const req = request(key, { ttl: 60_000 });
    const before = clock.now();
    const result = await grant(store, req);
    const answered = clock.now();
    assert.ok(result.validFrom >= before, 'counted from before the request');
    // The newest keepalive was sent by the time of the answer, and etcd keeps the lease one TTL (1 s) after it.
    assert.ok(result.validFrom + result.validFor <= answered + 1_000, 'never past the session lease, although the lock asked for 60 s');
    const [renewed] = await store.renew([{ key, owner: req.owner, ttl: 200 }]);
    assert.ok(renewed?.renewed && renewed.validFor <= 200, 'a renewal never outlasts its ttl');
  });

  it('reports every lock of the session lost at once when keepalives go unanswered on an open stream, then starts a new session', async () => {
    const [store, other] = [open(), open()];
    const losses: Losses = { reasons: [], at: [] };
    const keys = [0, 1, 2].map(() => `frozen-${randomUUID()}`);
    const grants = [];
    for (const key of keys) grants.push(await grant(store, request(key, {}, losses)));
    const waiting = other.acquire(request(keys[1] as string, { wait: 20_000 }));
    await waitFor(async () => (await queueOf(keys[1] as string)).length === 2, 5_000, 'a waiter in another store');
    const [member] = etcd.members;
    const paused = performance.now();
    member?.pause(); // connections stay open; nothing answers
    try {
      await waitFor(() => losses.reasons.length === 3, 10_000, 'all three locks reported lost');
    } finally {
      member?.resume();
    }
    assert.deepEqual(losses.reasons, ['session-lost', 'session-lost', 'session-lost']);
    assert.ok(Math.max(...losses.at) - Math.min(...losses.at) < 5, 'reported together');
    for (const result of grants) {
      assert.ok(result.validFrom + result.validFor <= (losses.at[0] ?? 0) + 1, 'no lock was promised past the moment it was reported lost');
    }
    assert.ok((losses.at[0] ?? 0) - paused < 2_000, 'reported within the 1 s lease (plus scheduling)');
    await etcd.untilHealthy();
    const again = await grant(store, request(keys[0] as string, { wait: 10_000 }));
    assert.ok(again.fencingToken > (grants[0]?.fencingToken ?? 0), 'the next grant has a higher token');
    const waited = await waiting;
    assert.ok(waited.acquired && waited.fencingToken > (grants[1]?.fencingToken ?? 0), 'the waiter queued again on a new session and got the lock');
    await waitFor(async () => (await queueOf(keys[2] as string)).length === 0, 5_000, 'the old session\'s keys are gone');
  });

  it('reports every lock lost when someone revokes the session lease, and serves later acquires from a new one', async () => {
    const store = open();
    const losses: Losses = { reasons: [], at: [] };
    const keys = [0, 1].map(() => `revoked-${randomUUID()}`);
    for (const key of keys) await grant(store, request(key, {}, losses));
    const [entry] = await queueOf(keys[0] as string);
    await admin.leaseClient.leaseRevoke({ ID: entry?.lease });
    await waitFor(() => losses.reasons.length === 2, 3_000, 'both locks reported lost');
    assert.deepEqual(losses.reasons, ['session-lost', 'session-lost']);
    const again = await grant(store, request(keys[0] as string));
    assert.ok(again.fencingToken > (entry?.createRevision ?? 0));
    assert.notEqual((await queueOf(keys[0] as string))[0]?.lease, entry?.lease, 'a new session');
  });

  it('reports a lock lost when someone deletes its key, keeps the others, and hands it to the next waiter', async () => {
    const key = `deleted-${randomUUID()}`;
    const other = `kept-${randomUUID()}`;
    const [store, waiting] = [open(), open()];
    const losses: Losses = { reasons: [], at: [] };
    const victim = request(key, {}, losses);
    const kept = request(other, {}, losses);
    await grant(store, victim);
    await grant(store, kept);
    const next = waiting.acquire(request(key, { wait: 10_000 }));
    await waitFor(async () => (await queueOf(key)).length === 2, 5_000, 'waiter queued');
    const [victimEntry] = await queueOf(key);
    await admin.delete().key(victimEntry?.key ?? '');
    assert.equal((await next).acquired, true, 'the waiter took over at the deletion');
    await waitFor(() => losses.reasons.length === 1, 3_000, 'the holder learns within a keepalive interval');
    assert.deepEqual(losses.reasons, ['not-owner']);
    assert.equal((await store.renew([{ key: other, owner: kept.owner, ttl: 30_000 }]))[0]?.renewed, true, 'the other lock is still held');
    assert.equal(await store.release(key, victim.owner), false, 'the deleted lock cannot be released');
  });

  it('revokes its session on close, keeps a lock still held for the rest of its ttl, and leaves a client passed in open', async () => {
    const client = new Etcd3({ hosts: etcd.hosts });
    const store = new EtcdLockStore({ client, sessionTtl: '10s' });
    const key = `close-${randomUUID()}`;
    const losses: Losses = { reasons: [], at: [] };
    const held = request(key, { ttl: 1_500 }, losses); // left to run out, as lockAtLeastFor does
    await grant(store, held);
    const waiting = store.acquire(request(key, { wait: 10_000 }));
    await waitFor(async () => (await queueOf(key)).length === 2, 5_000, 'waiter queued');
    const [before] = await queueOf(key);
    await store.close();
    const closed = performance.now();
    assert.equal((await waiting).acquired, false, 'a pending wait answers "not acquired"');
    const after = await queueOf(key);
    assert.deepEqual(after.map((entry) => entry.key), [before?.key], 'the waiting key went with the session; the held one stayed');
    assert.notEqual(after[0]?.lease, before?.lease, 'the held key moved to a lease of its own');
    assert.deepEqual(losses.reasons, ['session-lost'], 'nobody renews it any more');
    await grant(open(), request(key, { wait: 10_000 }));
    assert.ok(performance.now() - closed >= 1_000, 'others got it only once its ttl had run out');
    await assert.rejects(store.acquire(request(key)), LockStoreError);
    await client.put(`close-check-${randomUUID()}`).value('still open');
    client.close();
  });

  it('fails within dialTimeout, naming where etcd was expected, when nothing answers there', async () => {
    const store = open({ hosts: ['http://127.0.0.1:1'], dialTimeout: 300 });
    const started = performance.now();
    await assert.rejects(store.acquire(request(`unreachable-${randomUUID()}`)), (error: Error) => {
      assert.ok(error instanceof LockStoreError);
      assert.match(error.message, /http:\/\/127\.0\.0\.1:1/);
      return true;
    });
    assert.ok(performance.now() - started < 5_000, 'fails quickly');
  });

  it('keeps fencing tokens growing across an etcd restart on the same data', async () => {
    const key = `restart-${randomUUID()}`;
    const before = open();
    const req = request(key);
    const first = await grant(before, req);
    await before.release(key, req.owner);
    await before.close();
    const [member] = etcd.members;
    if (!member) throw new Error('no member');
    await etcd.restart(member);
    await admin.put(`after-restart-${randomUUID()}`).value('x'); // the admin client reconnects
    const after = open();
    const second = await grant(after, request(key));
    assert.ok(second.fencingToken > first.fencingToken, `token ${second.fencingToken} > ${first.fencingToken} after the restart`);
  });
});

describe('EtcdLockStore options', () => {
  const refuse = (options: unknown, pattern: RegExp) =>
    assert.throws(() => new EtcdLockStore(options as EtcdLockStoreOptions), (error: Error) => {
      assert.ok(error instanceof InvalidLockOptionError);
      assert.match(error.message, pattern);
      return true;
    });

  it('refuses options it cannot use, saying what to pass', () => {
    refuse({}, /pass \{ client \} \(an Etcd3\) or \{ hosts/);
    refuse({ hosts: ['127.0.0.1:2379'] }, /client URLs starting with http:\/\/ or https:\/\//);
    refuse({ hosts: ['http://127.0.0.1:2379'], sessionTtl: 0 }, /sessionTtl/);
    refuse({ hosts: ['http://127.0.0.1:2379'], keyPrefix: '' }, /non-empty string/);
    refuse({ hosts: ['http://127.0.0.1:2379'], ttl: 5 }, /option "ttl".*remove it/);
    refuse({ client: {} }, /pass an etcd3 client/);
  });
});
