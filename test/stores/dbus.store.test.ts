import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { InvalidLockOptionError, LockStoreError, type AcquireRequest } from 'nestjs-distributed-lock';
import { DbusLockStore, lockBusName } from 'nestjs-distributed-lock/dbus';
import { ManualClock } from 'nestjs-distributed-lock/testing';
import { DbusDaemon } from '../support/dbus-daemon.js';
import { HOSTILE_KEYS, LONGEST_PREFIX } from '../support/dbus-keys.js';
import { BusProbe } from '../support/dbus-probe.js';
import { waitFor } from '../support/wait-for.js';
import { assertExitsAfterClose } from '../support/exit-check.js';

const policyExample = fileURLToPath(new URL('../../../examples/dbus/nestjs-distributed-lock.conf', import.meta.url));

const request = (key: string, overrides: Partial<AcquireRequest> = {}): AcquireRequest => ({
  key,
  owner: randomUUID(),
  ttl: 30_000,
  wait: 0,
  onLost: () => {},
  ...overrides,
});

describe('DbusLockStore', () => {
  let bus: DbusDaemon;
  let probe: BusProbe;
  const stores: DbusLockStore[] = [];
  const open = (options: ConstructorParameters<typeof DbusLockStore>[0] = {}) => {
    const store = new DbusLockStore({ address: bus.address, ...options });
    stores.push(store);
    return store;
  };
  before(async () => {
    bus = await DbusDaemon.start();
    probe = await BusProbe.connect(bus.address);
  });
  after(async () => {
    await Promise.all(stores.map((store) => store.close()));
    probe.close();
    await bus.stop();
  });

  it('owns a separate name on the daemon for every hostile key, with the default and the longest prefix', async () => {
    for (const namePrefix of [undefined, LONGEST_PREFIX]) {
      const store = open(namePrefix ? { namePrefix } : {});
      const run = randomUUID();
      for (const key of HOSTILE_KEYS) assert.equal((await store.acquire(request(key + run))).acquired, true, JSON.stringify(key.slice(0, 20)));
      const other = open(namePrefix ? { namePrefix } : {});
      for (const key of HOSTILE_KEYS) assert.equal((await other.acquire(request(key + run))).acquired, false, JSON.stringify(key.slice(0, 20)));
    }
  });

  it('serves callers in FIFO order past maxConnections, queueing the rest in the process', async () => {
    const store = open({ maxConnections: 2 });
    const key = `overflow:${randomUUID()}`;
    const name = lockBusName(key);
    const holder = request(key);
    assert.equal((await store.acquire(holder)).acquired, true);
    const order: number[] = [];
    const waiters = [0, 1, 2, 3, 4].map((i) => {
      const req = request(key, { wait: 20_000 });
      return store.acquire(req).then(async (result) => {
        assert.equal(result.acquired, true, `waiter ${i} granted`);
        order.push(i);
        const places = (await probe.queue(name)).length;
        assert.ok(places <= 2, `${places} places on the bus: never more than maxConnections`);
        await store.release(key, req.owner);
      });
    });
    await waitFor(async () => (await probe.queue(name)).length === 2, 10_000, 'the first waiter queued on the bus');
    await store.release(key, holder.owner);
    await Promise.all(waiters);
    assert.deepEqual(order, [0, 1, 2, 3, 4]);
  });

  it('answers a try for a key this process holds without asking the bus, with the time the lease has left', async () => {
    const clock = new ManualClock(1_000);
    const store = open({ clock });
    const key = `local-try:${randomUUID()}`;
    assert.equal((await store.acquire(request(key, { ttl: 5_000 }))).acquired, true);
    await clock.advance(1_000);
    assert.deepEqual(await store.acquire(request(key)), { acquired: false, retryAfter: 4_000 });
  });

  it('releases a lease nobody renewed once its ttl passed, handing the name to the next in the queue', async () => {
    const clock = new ManualClock();
    const store = open({ clock });
    const key = `expire:${randomUUID()}`;
    const name = lockBusName(key);
    const stale = request(key, { ttl: 1_000 });
    assert.equal((await store.acquire(stale)).acquired, true);
    const next = open().acquire(request(key, { wait: 20_000 }));
    await waitFor(async () => (await probe.queue(name)).length === 2, 10_000, 'the next caller queued');
    await clock.advance(999);
    assert.equal((await store.renew([{ key, owner: stale.owner, ttl: 1_000 }]))[0]?.renewed, true, 'renewed just in time');
    await clock.advance(999);
    assert.equal((await probe.queue(name)).length, 2, 'the renewal moved the end');
    await clock.advance(2);
    assert.equal((await next).acquired, true, 'the next caller got the name');
    assert.equal((await store.renew([{ key, owner: stale.owner, ttl: 1_000 }]))[0]?.renewed, false);
    assert.equal(await store.release(key, stale.owner), false);
  });

  it('ends a lease at the shorter ttl of a renewal, as lockAtLeastFor sets it', async () => {
    const clock = new ManualClock();
    const store = open({ clock });
    const key = `shortened:${randomUUID()}`;
    const holder = request(key, { ttl: 10_000 });
    assert.equal((await store.acquire(holder)).acquired, true);
    assert.equal((await store.renew([{ key, owner: holder.owner, ttl: 800 }]))[0]?.renewed, true);
    await clock.advance(801);
    await waitFor(async () => (await probe.queue(lockBusName(key))).length === 0, 5_000, 'the name was released');
  });

  it('keeps a lease for as long as the connection lives with enforceTtl: false', async () => {
    const clock = new ManualClock();
    const store = open({ clock, enforceTtl: false });
    const key = `connection-lease:${randomUUID()}`;
    const holder = request(key, { ttl: 1_000 });
    assert.equal((await store.acquire(holder)).acquired, true);
    await clock.advance(60_000);
    assert.equal((await probe.queue(lockBusName(key))).length, 1, 'still owned a minute later');
    assert.deepEqual(await store.renew([{ key, owner: holder.owner, ttl: 1_000 }]), [{ renewed: true, validFrom: 60_000, validFor: 1_000 }]);
    assert.equal(await store.release(key, holder.owner), true);
    assert.deepEqual(await probe.queue(lockBusName(key)), []);
  });

  it('keeps a held name past close() until its lease ends, while a wait on the same connection ends at once and leaves the bus queue', async () => {
    const clock = new ManualClock();
    const store = open({ clock });
    const other = open();
    const kept = `kept:${randomUUID()}`;
    const taken = `kept-other:${randomUUID()}`;
    assert.equal((await store.acquire(request(kept, { ttl: 1_000 }))).acquired, true);
    assert.equal((await other.acquire(request(taken))).acquired, true);
    // The store's one connection owns `kept` and queues for `taken`.
    const waiting = store.acquire(request(taken, { wait: 20_000 }));
    await waitFor(async () => (await probe.queue(lockBusName(taken))).length === 2, 10_000, 'the store queued for the other key');
    const next = other.acquire(request(kept, { wait: 20_000 }));
    await waitFor(async () => (await probe.queue(lockBusName(kept))).length === 2, 10_000, 'the other store queued for the kept key');

    await store.close();

    assert.deepEqual(await waiting, { acquired: false });
    await waitFor(async () => (await probe.queue(lockBusName(taken))).length === 1, 5_000, 'the closed store left the queue of the other key');
    await clock.advance(999);
    assert.equal((await probe.queue(lockBusName(kept))).length, 2, 'the closed store still owns the kept name within its lease');
    await clock.advance(1);
    assert.equal((await next).acquired, true, 'the kept name went to the next in the queue when its lease ended');
    await assert.rejects(store.release(kept, 'anyone'), /closed/);
  });

  it('releases a held name at close() with enforceTtl: false, which has no lease to wait for', async () => {
    const store = open({ enforceTtl: false });
    const key = `no-lease-close:${randomUUID()}`;
    let lost: string | undefined;
    assert.equal((await store.acquire(request(key, { onLost: (reason) => (lost = reason) }))).acquired, true);
    const next = open().acquire(request(key, { wait: 20_000 }));
    await waitFor(async () => (await probe.queue(lockBusName(key))).length === 2, 10_000, 'the next caller queued');
    await store.close();
    assert.equal((await next).acquired, true);
    assert.equal(lost, 'session-lost');
  });

  it('lets a process that shut its application down exit by itself', async () => {
    await assertExitsAfterClose([`dbus:${bus.address}`]);
  });

  it('refuses options it cannot use, saying what to pass', () => {
    assert.throws(() => new DbusLockStore({ address: 'not-an-address' }), /use a D-Bus address such as 'unix:path=/);
    assert.throws(() => new DbusLockStore({ address: bus.address, maxConnections: 0 }), /maxConnections: 0; use a whole number from 1 to 1000/);
    assert.throws(() => new DbusLockStore({ address: bus.address, timeout: -1 }), /timeout: -1/);
    assert.throws(() => new DbusLockStore({ address: bus.address, timeout: 2 ** 31 }), /timeout: 2147483648; .*at most 2147483647/);
    assert.throws(() => new DbusLockStore({ address: bus.address, ttl: 5 } as never), /option "ttl": 5; remove it/);
    const session = process.env.DBUS_SESSION_BUS_ADDRESS;
    delete process.env.DBUS_SESSION_BUS_ADDRESS;
    try {
      assert.throws(
        () => new DbusLockStore(),
        (error: unknown) => error instanceof InvalidLockOptionError && /DBUS_SESSION_BUS_ADDRESS is not set/.test(error.message),
      );
    } finally {
      if (session !== undefined) process.env.DBUS_SESSION_BUS_ADDRESS = session;
    }
  });
});

describe('DbusLockStore on a bus that stops answering', () => {
  let bus: DbusDaemon;
  before(async () => {
    bus = await DbusDaemon.start();
  });
  after(() => bus.stop());

  it('fails calls the frozen bus does not answer within `timeout`, and lets go of what it is granted later', async () => {
    const store = new DbusLockStore({ address: bus.address, timeout: 300 });
    const other = new DbusLockStore({ address: bus.address });
    const late = new DbusLockStore({ address: bus.address, timeout: 300 });
    try {
      const warm = request('frozen:warm-up');
      assert.equal((await store.acquire(warm)).acquired, true);
      assert.equal(await store.release(warm.key, warm.owner), true);
      bus.pause();
      const started = performance.now();
      await assert.rejects(store.acquire(request('frozen:a')), (error: unknown) => {
        assert.ok(error instanceof LockStoreError);
        assert.match(error.message, /did not answer RequestName \S+ within 300ms; the bus daemon is not answering/);
        return true;
      });
      assert.ok(performance.now() - started < 5_000, 'failed about `timeout` after asking');
      await assert.rejects(late.acquire(request('frozen:b')), /handshake within 300ms/);
      bus.resume();
      // The late answer made the store owner of frozen:a; it must give the name up, or this waits in vain.
      assert.equal((await other.acquire(request('frozen:a', { wait: 10_000 }))).acquired, true);
      assert.equal((await store.acquire(request('frozen:c'))).acquired, true, 'the store works again');
    } finally {
      bus.resume();
      await Promise.all([store.close(), other.close(), late.close()]);
    }
  });
});

describe('DbusLockStore on a bus that limits names per connection', () => {
  let bus: DbusDaemon;
  before(async () => {
    bus = await DbusDaemon.start({ limits: { max_names_per_connection: 3 } });
  });
  after(() => bus.stop());

  it('moves on to another connection when one is full, and says what to raise when all are', async () => {
    const store = new DbusLockStore({ address: bus.address, maxConnections: 2 });
    try {
      // The limit counts each connection's unique name too: 2 lock names per connection.
      const keys = Array.from({ length: 4 }, (_, i) => `limited:${i}`);
      for (const key of keys) assert.equal((await store.acquire(request(key))).acquired, true, key);
      await assert.rejects(store.acquire(request('limited:5')), (error: unknown) => {
        assert.ok(error instanceof LockStoreError);
        assert.match(error.message, /limited:5/);
        assert.match(error.message, /raise the store's maxConnections/);
        return true;
      });
    } finally {
      await store.close();
    }
  });
});

describe('DbusLockStore on a system-style bus with the shipped policy file', () => {
  let bus: DbusDaemon;
  before(async () => {
    // The example, for the user running the tests, included by a bus with the default policy of Debian's system bus:
    // nobody owns names, and only the bus itself takes method calls.
    bus = await DbusDaemon.start({
      policy: `<policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
  </policy>`,
      include: readFileSync(policyExample, 'utf8').replace('user="nestjs-app"', `user="${userInfo().username}"`),
    });
  });
  after(() => bus.stop());

  it('lets the user own names under the prefix the policy allows, and explains a refusal elsewhere', async () => {
    const allowed = new DbusLockStore({ address: bus.address, namePrefix: 'com.example.Locks' });
    const refused = new DbusLockStore({ address: bus.address });
    try {
      const holder = request('policy:a');
      assert.equal((await allowed.acquire(holder)).acquired, true);
      assert.equal(await allowed.release('policy:a', holder.owner), true);
      await assert.rejects(refused.acquire(request('policy:a')), (error: unknown) => {
        assert.ok(error instanceof LockStoreError);
        assert.match(error.message, /AccessDenied|not allowed/);
        assert.match(error.message, /examples\/dbus\/nestjs-distributed-lock\.conf/);
        return true;
      });
    } finally {
      await allowed.close();
      await refused.close();
    }
  });
});
