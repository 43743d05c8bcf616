import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { systemClock } from '../clock.js';
import { LockStoreError } from '../errors.js';
import type { AcquireRequest, AcquireResult, LockStore } from '../store/lock-store.js';

/** The test functions of your runner: node:test, Jest and Vitest all fit. */
export interface ContractHarness {
  describe(name: string, fn: () => void): void;
  it(name: string, fn: () => Promise<void>): void;
}

export interface ContractOptions {
  /** Names the suite, such as `RedisLockStore`. */
  name: string;
  /** A new, open store for each test; the suite closes it. Keys are unique per test, so stores may share a backend. */
  createStore(): LockStore | Promise<LockStore>;
  /**
   * Lease length the timing tests use, in milliseconds (default 300). Raise
   * it for a backend whose round trips or expiry are coarse.
   */
  ttl?: number;
}

/**
 * The rules of the `LockStore` contract as tests. Run it against every store
 * you write; this repository runs it against each of its own.
 *
 * @example
 * import { describe, it } from 'node:test';
 * runLockStoreContract({ describe, it }, { name: 'MyStore', createStore: () => new MyStore(url) });
 */
export function runLockStoreContract(harness: ContractHarness, options: ContractOptions): void {
  const { describe, it } = harness;
  const ttl = options.ttl ?? 300;
  /** Runs a test with a fresh store and keys no other test uses. */
  const test = (name: string, body: (store: LockStore, key: (name?: string) => string) => Promise<void>) =>
    it(name, async () => {
      const store = await options.createStore();
      const run = randomUUID();
      try {
        await body(store, (name = 'k') => `contract:${run}:${name}`);
      } finally {
        await store.close();
      }
    });
  const request = (key: string, overrides: Partial<AcquireRequest> = {}): AcquireRequest => ({
    key,
    owner: randomUUID(),
    ttl,
    wait: 0,
    onLost: () => {},
    ...overrides,
  });
  const grant = async (store: LockStore, req: AcquireRequest) => {
    const result = await store.acquire(req);
    assert.equal(result.acquired, true, `expected ${req.key} to be granted to ${req.owner}`);
    return result as Extract<AcquireResult, { acquired: true }>;
  };

  describe(`${options.name} keeps the LockStore contract`, () => {
    test('grants a free key with a safe-integer token and a validity counted from before the request', async (store, key) => {
      const clock = store.clock ?? systemClock;
      const before = clock.now();
      const result = await grant(store, request(key()));
      const after = clock.now();
      assert.ok(Number.isSafeInteger(result.fencingToken), 'fencing token is a safe integer');
      assert.ok(result.validFrom >= before && result.validFrom <= after, 'validFrom lies between the call and its answer');
      assert.ok(result.validFor > 0 && result.validFor <= ttl, 'validFor is positive and no longer than the ttl');
    });

    test('refuses a held key to another owner and says how long the holder keeps it', async (store, key) => {
      await grant(store, request(key()));
      const result = await store.acquire(request(key()));
      assert.equal(result.acquired, false);
      if (!result.acquired && result.retryAfter !== undefined) {
        assert.ok(result.retryAfter >= 0 && result.retryAfter <= ttl, `retryAfter ${result.retryAfter} within [0, ttl]`);
      }
    });

    test('keeps keys independent, including keys with separators, wildcards, NUL and non-Latin text', async (store, key) => {
      const names = ['a', 'a:b', 'a*', '*', '../a', 'a\u0000b', 'ключ🔒', 'x'.repeat(1000)];
      for (const name of names) await grant(store, request(key(name)));
      for (const name of names) assert.equal((await store.acquire(request(key(name)))).acquired, false, `${JSON.stringify(name)} stays held`);
    });

    test('releases only for the owner that holds the key (compare-and-set)', async (store, key) => {
      const holder = request(key());
      await grant(store, holder);
      assert.equal(await store.release(key(), randomUUID()), false, 'a stranger cannot release');
      assert.equal((await store.acquire(request(key()))).acquired, false, 'still held after the stranger tried');
      assert.equal(await store.release(key(), holder.owner), true, 'the holder releases');
      assert.equal(await store.release(key(), holder.owner), false, 'a second release finds nothing');
      await grant(store, request(key()));
    });

    test('renews only for the owner, answering a batch in order', async (store, key) => {
      const a = request(key('a'));
      const b = request(key('b'));
      await grant(store, a);
      await grant(store, b);
      const clock = store.clock ?? systemClock;
      const before = clock.now();
      const results = await store.renew([
        { key: a.key, owner: a.owner, ttl: ttl * 2 },
        { key: b.key, owner: randomUUID(), ttl },
        { key: key('never-taken'), owner: randomUUID(), ttl },
        { key: b.key, owner: b.owner, ttl },
      ]);
      assert.equal(results.length, 4);
      assert.equal(results[0]?.renewed, true);
      assert.equal(results[1]?.renewed, false);
      assert.equal(results[2]?.renewed, false);
      assert.equal(results[3]?.renewed, true);
      const first = results[0];
      if (first?.renewed) {
        assert.ok(first.validFrom >= before, 'a renewal counts from when it was sent');
        assert.ok(first.validFor > 0 && first.validFor <= ttl * 2);
      }
    });

    test('draws a larger fencing token for every acquisition of a key', async (store, key) => {
      if (store.traits.fencing === 'none') return;
      let last = -Infinity;
      for (let i = 0; i < 5; i++) {
        const req = request(key());
        const result = await grant(store, req);
        assert.ok(result.fencingToken > last, `token ${result.fencingToken} > ${last}`);
        last = result.fencingToken;
        await store.release(req.key, req.owner);
      }
    });

    test('lets another owner in after the lease runs out, and ignores the stale owner afterwards', async (store, key) => {
      const stale = request(key(), { ttl: Math.round(ttl / 3) });
      const first = await grant(store, stale);
      const next = request(key());
      const second = await eventually(async () => {
        const result = await store.acquire(next);
        return result.acquired ? result : undefined;
      }, ttl * 4);
      if (store.traits.fencing !== 'none') assert.ok(second.fencingToken > first.fencingToken, 'the next holder has a larger token');
      assert.equal((await store.renew([{ key: stale.key, owner: stale.owner, ttl }]))[0]?.renewed, false, 'stale renewal refused');
      assert.equal(await store.release(stale.key, stale.owner), false, 'stale release refused');
      assert.equal((await store.acquire(request(key()))).acquired, false, 'the new holder still holds it');
    });

    test('fails cleanly once closed', async (store, key) => {
      await store.close();
      await assert.rejects(store.acquire(request(key())), LockStoreError);
    });

    describe('waiting', () => {
      test('hands the key to a waiter as soon as the holder releases', async (store, key) => {
        if (!store.traits.waits) return;
        const holder = request(key());
        await grant(store, holder);
        const waiting = store.acquire(request(key(), { wait: ttl * 10, ttl: ttl * 10 }));
        await pause(20);
        const released = performance.now();
        await store.release(holder.key, holder.owner);
        const result = await waiting;
        assert.equal(result.acquired, true);
        assert.ok(performance.now() - released < 1_000, 'woken promptly, long before the wait runs out');
      });

      test('serves waiters in the order they started waiting', async (store, key) => {
        if (!store.traits.waits || !store.traits.fair) return;
        const holder = request(key(), { ttl: ttl * 10 });
        await grant(store, holder);
        const order: number[] = [];
        const waiters = [0, 1, 2].map((i) => request(key(), { wait: ttl * 10, ttl: ttl * 10, owner: `waiter-${i}-${randomUUID()}` }));
        const pending: Promise<void>[] = [];
        for (const [i, waiter] of waiters.entries()) {
          pending.push(
            store.acquire(waiter).then(async (result) => {
              assert.equal(result.acquired, true);
              order.push(i);
              await pause(5);
              await store.release(waiter.key, waiter.owner);
            }),
          );
          await pause(20);
        }
        await store.release(holder.key, holder.owner);
        await Promise.all(pending);
        assert.deepEqual(order, [0, 1, 2]);
      });

      test('gives up after `wait`, leaves the queue, and passes the key on to the next waiter', async (store, key) => {
        if (!store.traits.waits) return;
        const holder = request(key(), { ttl: ttl * 10 });
        await grant(store, holder);
        const started = performance.now();
        const impatient = await store.acquire(request(key(), { wait: 50 }));
        assert.equal(impatient.acquired, false);
        assert.ok(performance.now() - started >= 45, 'waited about `wait`');
        const patient = store.acquire(request(key(), { wait: ttl * 10 }));
        await pause(20);
        await store.release(holder.key, holder.owner);
        assert.equal((await patient).acquired, true, 'the key skipped the waiter that gave up');
      });

      test('stops waiting when the signal aborts', async (store, key) => {
        if (!store.traits.waits) return;
        const holder = request(key(), { ttl: ttl * 10 });
        await grant(store, holder);
        const controller = new AbortController();
        const waiting = store.acquire(request(key(), { wait: ttl * 10, signal: controller.signal }));
        await pause(20);
        const aborted = performance.now();
        controller.abort();
        const result = await waiting;
        assert.ok(performance.now() - aborted < 1_000, 'answered promptly after the abort, long before the wait runs out');
        if (result.acquired) assert.fail('an aborted waiter must not be granted while the holder holds the key');
        await store.release(holder.key, holder.owner);
        await grant(store, request(key()));
      });

      test('hands the key to a waiter when the holder lets its lease run out', async (store, key) => {
        if (!store.traits.waits) return;
        await grant(store, request(key(), { ttl: Math.round(ttl / 3) }));
        const started = performance.now();
        const result = await store.acquire(request(key(), { wait: ttl * 10 }));
        assert.equal(result.acquired, true);
        assert.ok(performance.now() - started < ttl * 3, 'served soon after the lease ended');
      });
    });
  });
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Re-checks `probe` until it yields a value, failing after `within` milliseconds. */
async function eventually<T>(probe: () => Promise<T | undefined | false>, within: number): Promise<T> {
  const until = performance.now() + within;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (performance.now() > until) assert.fail(`condition not met within ${within}ms`);
    await pause(10);
  }
}
