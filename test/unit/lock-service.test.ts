import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import type { INestApplication } from '@nestjs/common';
import {
  LockLostError,
  LockService,
  LockShutdownError,
  LockStoreError,
  LockUnavailableError,
  MemoryLockStore,
  type Lock,
  type LockModuleOptions,
} from 'nestjs-distributed-lock';
import { ManualClock } from 'nestjs-distributed-lock/testing';
import { createTestApp } from '../support/app.js';
import { ProbeStore } from '../support/probe-store.js';

let app: INestApplication | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

async function setUp(options: LockModuleOptions = {}) {
  const clock = new ManualClock();
  const store = new ProbeStore(new MemoryLockStore({ clock }));
  app = await createTestApp({ lock: { store, ttl: '30s', ...options } });
  return { clock, store, locks: app.get(LockService) };
}

describe('LockService', () => {
  it('grants a free lock with a growing fencing token and releases it once', async () => {
    const { locks } = await setUp();
    const first = await locks.acquire('orders:1');
    assert.equal(first.key, 'orders:1');
    assert.equal(first.held, true);
    assert.equal(await first.release(), true);
    assert.equal(first.held, false);
    assert.equal(await first.release(), false, 'a second release resolves false');
    const second = await locks.acquire('orders:1');
    assert.ok(second.fencingToken > first.fencingToken);
    await second.release();
  });

  it('rejects a busy lock with LockUnavailableError naming the key and the holder\'s remaining lease', async () => {
    const { locks } = await setUp();
    const held = await locks.acquire('orders:2');
    await assert.rejects(locks.acquire('orders:2'), (error: unknown) => {
      assert.ok(error instanceof LockUnavailableError);
      assert.equal(error.key, 'orders:2');
      assert.equal(error.retryAfter, 30_000);
      assert.match(error.message, /"orders:2".*wait/);
      return true;
    });
    assert.equal(await locks.tryAcquire('orders:2'), null);
    await held.release();
  });

  it('waits for a busy lock and takes it when the holder releases', async () => {
    const { locks } = await setUp();
    const held = await locks.acquire('orders:3');
    const settled: Lock[] = [];
    const waiting = locks.acquire('orders:3', { wait: '5s' }).then((lock) => settled.push(lock));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(settled.length, 0, 'still waiting while held');
    await held.release();
    await waiting;
    assert.equal(settled[0]?.held, true);
    await settled[0]?.release();
  });

  it('gives up waiting after `wait` on its own clock', async () => {
    const { locks, clock } = await setUp();
    const held = await locks.acquire('orders:4');
    const waiting = assert.rejects(locks.acquire('orders:4', { wait: '2s' }), LockUnavailableError);
    await clock.advance(2_000);
    await waiting;
    await held.release();
  });

  it('stops waiting when the caller\'s signal aborts, rejecting with its reason', async () => {
    const { locks } = await setUp();
    const held = await locks.acquire('orders:5');
    const controller = new AbortController();
    const waiting = locks.acquire('orders:5', { wait: '10s', signal: controller.signal });
    controller.abort(new Error('client went away'));
    await assert.rejects(waiting, /client went away/);
    await held.release();
    const next = await locks.acquire('orders:5');
    await next.release();
  });

  it('runs withLock callbacks under the lock, exposes it as current(), and releases on success and on throw', async () => {
    const { locks } = await setUp();
    assert.equal(locks.current(), undefined);
    const token = await locks.withLock('jobs:a', async (lock) => {
      await Promise.resolve();
      assert.equal(locks.current(), lock);
      return lock.fencingToken;
    });
    assert.equal(typeof token, 'number');
    assert.equal(locks.current(), undefined);
    await assert.rejects(locks.withLock('jobs:a', () => Promise.reject(new Error('boom'))), /boom/);
    const again = await locks.acquire('jobs:a');
    await again.release();
  });

  it('aborts the signal with reason "released" on release, and supports await using', async () => {
    const { locks } = await setUp();
    let signal: AbortSignal | undefined;
    {
      await using lock = await locks.acquire('jobs:b');
      signal = lock.signal;
      assert.equal(signal.aborted, false);
    }
    assert.equal(signal?.aborted, true);
    assert.ok(signal?.reason instanceof LockLostError);
    assert.equal((signal?.reason as LockLostError).reason, 'released');
    await (await locks.acquire('jobs:b')).release();
  });

  it('renews held locks every ttl/3 so they outlive their ttl', async () => {
    const { locks, clock, store } = await setUp();
    const lock = await locks.acquire('jobs:c', { ttl: '3s' });
    await clock.advance(10_000);
    assert.equal(lock.held, true);
    assert.ok(store.renewBatches.length >= 3, `renewed ${store.renewBatches.length} times`);
    await lock.release();
  });

  it('renews many held locks with one store call per tick', async () => {
    const { locks, clock, store } = await setUp();
    const held = await Promise.all(Array.from({ length: 100 }, (_, i) => locks.acquire(`bulk:${i}`)));
    await clock.advance(4_000);
    held.push(...(await Promise.all(Array.from({ length: 100 }, (_, i) => locks.acquire(`bulk:late:${i}`)))));
    await clock.advance(6_000);
    assert.deepEqual(store.renewBatches, [200], 'locks taken 4s apart share the tick at ttl/3');
    await clock.advance(10_000);
    assert.deepEqual(store.renewBatches, [200, 200]);
    assert.ok(held.every((lock) => lock.held));
    await Promise.all(held.map((lock) => lock.release()));
  });

  it('keeps one renewal in flight at a time and reports the lock lost at its deadline when renewals hang', async () => {
    const { locks, clock, store } = await setUp();
    const open = store.holdRenewals();
    const lock = await locks.acquire('jobs:d', { ttl: '3s' });
    const lost: LockLostError[] = [];
    locks.onLost((_lock, error) => lost.push(error));
    await clock.advance(2_999);
    assert.equal(store.renewBatches.length, 1, 'no second renewal while the first is pending');
    assert.equal(lock.held, true);
    await clock.advance(1);
    assert.equal(lock.held, false);
    assert.equal(lock.signal.aborted, true);
    assert.equal((lock.signal.reason as LockLostError).reason, 'expired');
    assert.equal(lost.length, 1);
    open();
    assert.equal(await lock.release(), false, 'release after loss resolves false');
    await assert.rejects(lock.extend(), LockLostError);
  });

  it('retries failed renewals until the deadline, then reports the lock lost', async () => {
    const { locks, clock, store } = await setUp();
    store.breakRenewals();
    const lock = await locks.acquire('jobs:e', { ttl: '3s' });
    await clock.advance(2_500);
    assert.ok(store.renewBatches.length > 1, 'retried');
    assert.equal(lock.held, true);
    await clock.advance(500);
    assert.equal(lock.held, false);
    assert.equal((lock.signal.reason as LockLostError).reason, 'expired');
  });

  it('reports the lock lost when a renewal answers that someone else owns it', async () => {
    const { locks, clock, store } = await setUp();
    const lock = await locks.acquire('jobs:f', { ttl: '3s' });
    await store.revoke('jobs:f');
    const thief = await locks.acquire('jobs:f');
    await clock.advance(1_000);
    assert.equal(lock.held, false);
    assert.equal((lock.signal.reason as LockLostError).reason, 'not-owner');
    assert.equal(thief.held, true);
    assert.equal(await lock.release(), false, 'the stale holder cannot release the new holder');
    assert.equal(thief.held, true);
    await thief.release();
  });

  it('counts the deadline from when the acquire was sent, not from when the reply arrived', async () => {
    const { locks, clock, store } = await setUp();
    const open = store.holdAcquireReplies();
    const pending = locks.acquire('jobs:g', { ttl: '10s' });
    await clock.advance(6_000);
    store.breakRenewals();
    open();
    const lock = await pending;
    assert.equal(lock.held, true);
    await clock.advance(4_000);
    assert.equal(lock.held, false, 'lost 10s after sending, although the reply came 6s late');
  });

  it('extends a lease on demand and keeps renewing with the new ttl', async () => {
    const { locks, clock, store } = await setUp();
    const lock = await locks.acquire('jobs:h', { ttl: '3s' });
    await lock.extend('1m');
    store.breakRenewals();
    await clock.advance(59_000);
    assert.equal(lock.held, true);
    await clock.advance(1_000);
    assert.equal(lock.held, false);
  });

  it('refuses to extend a released lock', async () => {
    const { locks } = await setUp();
    const lock = await locks.acquire('jobs:i');
    await lock.release();
    await assert.rejects(lock.extend(), (error: unknown) => error instanceof LockLostError && error.reason === 'released');
  });

  it('reports every held lock lost when its store closes under it', async () => {
    const { locks, store } = await setUp();
    const lock = await locks.acquire('jobs:j');
    await store.close();
    assert.equal((lock.signal.reason as LockLostError).reason, 'session-lost');
    await assert.rejects(locks.acquire('jobs:k'), LockStoreError);
  });

  it('leaves no timer behind once every lock is released and the renewal timer has run out', async () => {
    const { locks, clock } = await setUp();
    const a = await locks.acquire('t:a');
    const b = await locks.acquire('t:b');
    const waiting = locks.acquire('t:a', { wait: '5s' });
    await a.release();
    const c = await waiting;
    await b.release();
    await c.release();
    await clock.advance(10_000);
    assert.equal(clock.pending, 0);
  });

  it('keeps prefixed keys apart even when a key contains the separator', async () => {
    const clock = new ManualClock();
    const store = new MemoryLockStore({ clock });
    const one = await createTestApp({ lock: { store, keyPrefix: 'a' } });
    const two = await createTestApp({ lock: { store, keyPrefix: 'a:b' } });
    try {
      const x = await one.get(LockService).acquire('b:c');
      const y = await two.get(LockService).acquire('c');
      assert.ok(x.held && y.held, 'a + b:c and a:b + c are different locks');
      await x.release();
      await y.release();
    } finally {
      await one.close();
      await two.close();
    }
  });
});

describe('LockModule lifecycle', () => {
  it('waits at shutdown for a held lock to be released by its holder, and leaves a store it was given open', async () => {
    const store = new MemoryLockStore();
    const first = await createTestApp({ lock: { store } });
    const held = await first.get(LockService).acquire('shutdown:a');
    let releasedAt = Infinity;
    setTimeout(() => void held.release().then(() => (releasedAt = performance.now())), 200);
    await first.close();
    assert.ok(performance.now() >= releasedAt, 'close() resolved only after the holder released');
    const second = await createTestApp({ lock: { store } });
    const lock = await second.get(LockService).acquire('shutdown:a');
    assert.equal(lock.held, true, 'released by the first app, and the store still works');
    await second.close();
  });

  it('closes a store it was given when asked to', async () => {
    const store = new MemoryLockStore();
    const one = await createTestApp({ lock: { store, closeStore: true } });
    await one.close();
    await assert.rejects(store.acquire({ key: 'x', owner: 'o', ttl: 1000, wait: 0, onLost() {} }), LockStoreError);
  });

  it('closes a store that owns its connection once the last application using it shuts down', async () => {
    class OwningStore extends MemoryLockStore {
      readonly ownsConnection = true;
    }
    const store = new OwningStore();
    const one = await createTestApp({ lock: { store } });
    const two = await createTestApp({ lock: { store } });
    await one.close();
    const lock = await two.get(LockService).acquire('shared:still-open');
    assert.equal(lock.held, true, 'the other application still uses it');
    await two.close();
    await assert.rejects(store.acquire({ key: 'x', owner: 'o', ttl: 1000, wait: 0, onLost() {} }), LockStoreError);
  });

  it('refuses new locks after shutdown with a clear error', async () => {
    const one = await createTestApp();
    const locks = one.get(LockService);
    await one.close();
    await assert.rejects(locks.acquire('late'), (error) => error instanceof LockShutdownError && /the application is shutting down/.test(error.message));
  });
});

describe('LockModule configuration', () => {
  it('works with no options at all: LockModule.forRoot()', async () => {
    const { Test } = await import('@nestjs/testing');
    const { LockModule } = await import('nestjs-distributed-lock');
    const moduleRef = await Test.createTestingModule({ imports: [LockModule.forRoot()] }).compile();
    const locks = moduleRef.get(LockService);
    assert.equal(locks.settings.ttl, 30_000);
    assert.equal(locks.store.traits.name, 'memory');
    await (await locks.acquire('defaults')).release();
    await moduleRef.close();
  });

  it('tells which module to import when LockService is provided without LockModule', async () => {
    const { Test } = await import('@nestjs/testing');
    const moduleRef = Test.createTestingModule({ providers: [LockService] });
    await assert.rejects(moduleRef.compile(), /LockService was created without LockModule; import LockModule\.forRoot\(\)/);
  });

  it('configures itself asynchronously from a factory with injected dependencies', async () => {
    const { Module } = await import('@nestjs/common');
    const { Test } = await import('@nestjs/testing');
    const { LockModule } = await import('nestjs-distributed-lock');
    const CONFIG = Symbol('config');
    @Module({ providers: [{ provide: CONFIG, useValue: { ttl: '45s', keyPrefix: 'async' } }], exports: [CONFIG] })
    class ConfigModule {}
    const moduleRef = await Test.createTestingModule({
      imports: [
        LockModule.forRootAsync({
          imports: [ConfigModule],
          inject: [CONFIG],
          useFactory: (config: { ttl: string; keyPrefix: string }) => config,
        }),
      ],
    }).compile();
    const locks = moduleRef.get(LockService);
    assert.equal(locks.settings.ttl, 45_000);
    assert.equal(locks.settings.keyPrefix, 'async');
    await moduleRef.close();
  });

  const badOptions: [string, LockModuleOptions, RegExp][] = [
    ['an unknown option', { tll: '5s' } as LockModuleOptions, /LockModule option "tll"/],
    ['a zero ttl', { ttl: 0 }, /LockModule option "ttl": 0; use a finite duration greater than 0/],
    ['an unparsable wait', { wait: 'soon' }, /LockModule option "wait": "soon"/],
    ['a store that is not a LockStore', { store: {} as MemoryLockStore }, /LockModule option "store".*pass a LockStore instance/],
    ['a non-string keyPrefix', { keyPrefix: 7 as unknown as string }, /LockModule option "keyPrefix": 7; pass a string/],
  ];
  for (const [what, options, message] of badOptions) {
    it(`stops the application at bootstrap on ${what}`, async () => {
      await assert.rejects(createTestApp({ lock: options }), message);
    });
  }
});

describe('LockService bad input', () => {
  const cases: [string, (locks: LockService) => Promise<unknown>, RegExp][] = [
    ['an empty key', (l) => l.acquire(''), /LockService\.acquire: the key is empty/],
    ['a non-string key', (l) => l.acquire(42 as unknown as string), /LockService\.acquire: the key is 42; use a non-empty string/],
    ['an over-long key', (l) => l.tryAcquire('x'.repeat(1025)), /LockService\.tryAcquire: the key "x+…" \(1025 characters\) is longer than 1024 characters/],
    ['an unpaired surrogate', (l) => l.acquire('a\uDC00'), /unpaired UTF-16 surrogate/],
    ['a zero ttl', (l) => l.acquire('k', { ttl: 0 }), /ttl of lock "k": 0; use a finite duration greater than 0/],
    ['a negative ttl', (l) => l.acquire('k', { ttl: -5 }), /ttl of lock "k": -5/],
    ['a NaN wait', (l) => l.acquire('k', { wait: Number.NaN }), /wait of lock "k": NaN/],
    ['an infinite ttl', (l) => l.acquire('k', { ttl: Infinity }), /ttl of lock "k": Infinity/],
    ['an unparsable duration', (l) => l.withLock('k', () => 1, { wait: 'forever' }), /wait of lock "k": "forever"/],
    ['a duration past the timer limit', (l) => l.acquire('k', { ttl: '600h' }), /ttl of lock "k": "600h"; use at most 2147483647ms/],
  ];
  for (const [what, call, message] of cases) {
    it(`rejects ${what} with a typed error naming it`, async () => {
      const { locks } = await setUp();
      await assert.rejects(call(locks), (error: unknown) => {
        assert.ok(error instanceof Error && ['InvalidLockKeyError', 'InvalidLockOptionError'].includes(error.name), String(error));
        assert.match(error.message, message);
        return true;
      });
    });
  }

  it('accepts every documented duration form', async () => {
    const { locks } = await setUp();
    for (const ttl of [1500, '500ms', '5s', '1.5s', '2m', '1h']) await (await locks.acquire(`d:${ttl}`, { ttl })).release();
  });
});

describe('LockService with a store that cannot wait by itself', () => {
  async function pollingSetUp() {
    const clock = new ManualClock();
    const store = new ProbeStore(new MemoryLockStore({ clock }), { waits: false });
    app = await createTestApp({ lock: { store } });
    return { clock, store, locks: app.get(LockService) };
  }

  it('re-tries with a bounded back-off and takes the lock once it is free', async () => {
    const { locks, clock, store } = await pollingSetUp();
    const held = await locks.acquire('poll:a');
    const waiting = locks.acquire('poll:a', { wait: '10s' });
    await clock.advance(3_000);
    const triesWhileHeld = store.acquireCalls - 1;
    assert.ok(triesWhileHeld >= 5 && triesWhileHeld <= 3_000 / 125 + 5, `${triesWhileHeld} tries in 3s: backs off to 250ms`);
    await held.release();
    await clock.advance(250);
    const lock = await waiting;
    assert.equal(lock.held, true);
    await lock.release();
  });

  it('gives up when wait runs out and stops at once when its signal aborts', async () => {
    const { locks, clock } = await pollingSetUp();
    const held = await locks.acquire('poll:b');
    const timedOut = assert.rejects(locks.acquire('poll:b', { wait: '1s' }), LockUnavailableError);
    await clock.advance(1_000);
    await timedOut;
    const controller = new AbortController();
    const aborted = assert.rejects(locks.acquire('poll:b', { wait: '1m', signal: controller.signal }), /stop/);
    await clock.advance(100);
    controller.abort(new Error('stop'));
    await aborted;
    await held.release();
    await clock.advance(30_000);
    assert.equal(clock.pending, 0, 'no poll timer left behind');
  });
});

describe('Lock.extend and renewal timing', () => {
  it('keeps a lock whose extend shortened its ttl renewed on the new, shorter period', async () => {
    const { locks, clock } = await setUp();
    const lock = await locks.acquire('extend:short', { ttl: '3s' });
    await lock.extend(500);
    await clock.advance(5_000);
    assert.equal(lock.held, true, 'renewed every ~167ms after the extend, not first at the old 1s mark');
    await lock.release();
  });
});
