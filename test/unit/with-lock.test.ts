import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { Injectable, SetMetadata, type INestApplication } from '@nestjs/common';
import { Cron, CronExpression, Interval, ScheduleModule, Timeout } from '@nestjs/schedule';
import {
  InvalidLockKeyError,
  InvalidLockOptionError,
  LockModuleMissingError,
  LockService,
  LockShutdownError,
  LockUnavailableError,
  MemoryLockStore,
  WithLock,
} from 'nestjs-distributed-lock';
import { ManualClock } from 'nestjs-distributed-lock/testing';
import { createTestApp } from '../support/app.js';
import { waitFor } from '../support/wait-for.js';

let app: INestApplication | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

const TAG = 'test:tag';

@Injectable()
class Orders {
  readonly calls: string[] = [];
  prefix = 'orders';

  @SetMetadata(TAG, 'below')
  @WithLock(function (this: Orders, id: string) {
    return `${this.prefix}:${id}`;
  })
  @SetMetadata(TAG + ':inner', 'above')
  async pay(id: string, amount: number): Promise<string> {
    this.calls.push(`pay ${id} ${amount}`);
    return `paid ${id}`;
  }

  @WithLock('orders:report', { onBusy: 'skip' })
  async report(): Promise<string> {
    return 'report';
  }

  @WithLock((id: unknown) => id as string)
  async badKey(_id: unknown): Promise<void> {}

  @WithLock((): string => {
    throw new Error('no tenant');
  })
  async throwingKey(): Promise<void> {}

  @WithLock('orders:current')
  async current(locks: LockService): Promise<number | undefined> {
    await Promise.resolve();
    return locks.current()?.fencingToken;
  }

  @WithLock('orders:atleast', { lockAtLeastFor: '10s' })
  async settle(): Promise<void> {}
}

describe('@WithLock', () => {
  it('keeps the method name, length and every metadata key, whichever side other decorators are on', () => {
    const method = Orders.prototype.pay;
    assert.equal(method.name, 'pay');
    assert.equal(method.length, 2);
    assert.equal(Reflect.getMetadata(TAG, method), 'below');
    assert.equal(Reflect.getMetadata(TAG + ':inner', method), 'above');
    assert.deepEqual(Reflect.getMetadata('design:paramtypes', Orders.prototype, 'pay'), [String, Number]);
  });

  it('computes the key from the method arguments with the instance as this', async () => {
    app = await createTestApp({ providers: [Orders] });
    const orders = app.get(Orders);
    const locks = app.get(LockService);
    const held = await locks.acquire('orders:7');
    await assert.rejects(orders.pay('7', 10), (error: unknown) => error instanceof LockUnavailableError && error.key === 'orders:7');
    assert.equal(await orders.pay('8', 10), 'paid 8', 'another id is not blocked');
    await held.release();
    assert.equal(await orders.pay('7', 10), 'paid 7');
    assert.deepEqual(orders.calls, ['pay 8 10', 'pay 7 10']);
  });

  it('skips a busy call with onBusy: skip, resolving undefined', async () => {
    app = await createTestApp({ providers: [Orders] });
    const held = await app.get(LockService).acquire('orders:report');
    assert.equal(await app.get(Orders).report(), undefined);
    await held.release();
    assert.equal(await app.get(Orders).report(), 'report');
  });

  it('exposes the lock to code inside the method through LockService.current()', async () => {
    app = await createTestApp({ providers: [Orders] });
    const token = await app.get(Orders).current(app.get(LockService));
    assert.equal(typeof token, 'number');
  });

  it('names the method and the arguments when the key function returns a non-string or throws', async () => {
    app = await createTestApp({ providers: [Orders] });
    await assert.rejects(app.get(Orders).badKey(42), (error: unknown) => {
      assert.ok(error instanceof InvalidLockKeyError);
      assert.match(error.message, /@WithLock on Orders\.badKey: the key function returned 42 for arguments \[42\]; return a non-empty string/);
      return true;
    });
    await assert.rejects(app.get(Orders).badKey(''), /returned "" for arguments/);
    await assert.rejects(app.get(Orders).throwingKey(), /Orders\.throwingKey: the key function threw for arguments \[\]: no tenant/);
  });

  it('holds the lock for lockAtLeastFor after a quick method returns, then lets it run out in the store', async () => {
    const clock = new ManualClock();
    app = await createTestApp({ providers: [Orders], lock: { store: new MemoryLockStore({ clock }) } });
    const locks = app.get(LockService);
    await app.get(Orders).settle();
    await clock.advance(9_999);
    assert.equal(await locks.tryAcquire('orders:atleast'), null, 'still held 9.999s after it was taken');
    await clock.advance(1);
    const next = await locks.tryAcquire('orders:atleast');
    assert.ok(next, 'free 10s after it was taken');
    await next.release();
    await clock.advance(30_000);
    assert.equal(clock.pending, 0, 'no timer left behind once the renewal timer ran out');
  });

  it('rejects a call with LockModuleMissingError when no LockModule is running', async () => {
    await assert.rejects(new Orders().report(), (error: unknown) => {
      assert.ok(error instanceof LockModuleMissingError);
      assert.match(error.message, /@WithLock on Orders\.report ran, but no LockModule is running; import LockModule\.forRoot\(\)/);
      return true;
    });
  });

  it('locks each application\'s instances through that application\'s own module', async () => {
    const store = new MemoryLockStore();
    const one = await createTestApp({ providers: [Orders], lock: { store, keyPrefix: 'one' } });
    const two = await createTestApp({ providers: [Orders], lock: { store, keyPrefix: 'two' } });
    try {
      const held = await one.get(LockService).acquire('orders:1');
      await assert.rejects(one.get(Orders).pay('1', 1), LockUnavailableError);
      assert.equal(await two.get(Orders).pay('1', 1), 'paid 1', 'the other app uses its own prefix');
      await held.release();
    } finally {
      await one.close();
      await two.close();
    }
  });

  describe('rejects bad options when the class is defined', () => {
    type Decorate = () => (target: object, property: string, descriptor: TypedPropertyDescriptor<() => void>) => void;
    const define = (decorate: Decorate) => () => {
      class Target {
        method(): void {}
      }
      const descriptor = Object.getOwnPropertyDescriptor(Target.prototype, 'method') as TypedPropertyDescriptor<() => void>;
      decorate()(Target.prototype, 'method', descriptor);
    };
    const cases: [string, Decorate, RegExp, Function][] = [
      ['an empty key', () => WithLock(''), /Target\.method: the key is empty/, InvalidLockKeyError],
      ['a non-string key', () => WithLock(42 as unknown as string), /the key is 42; pass a string or a function/, InvalidLockKeyError],
      ['an over-long key', () => WithLock('k'.repeat(1025)), /longer than 1024 characters/, InvalidLockKeyError],
      ['a key with an unpaired surrogate', () => WithLock('a\uD800b'), /unpaired UTF-16 surrogate/, InvalidLockKeyError],
      ['an unknown onBusy', () => WithLock('k', { onBusy: 'wait' as 'skip' }), /onBusy: "wait"; use 'throw' or 'skip'/, InvalidLockOptionError],
      ['a zero ttl', () => WithLock('k', { ttl: 0 }), /ttl: 0; use a finite duration greater than 0/, InvalidLockOptionError],
      ['a negative wait', () => WithLock('k', { wait: -1 }), /wait: -1; use a finite duration of 0 or more/, InvalidLockOptionError],
      ['a NaN ttl', () => WithLock('k', { ttl: Number.NaN }), /ttl: NaN/, InvalidLockOptionError],
      ['an infinite wait', () => WithLock('k', { wait: Infinity }), /wait: Infinity/, InvalidLockOptionError],
      ['an unparsable duration', () => WithLock('k', { ttl: '5 minutes' }), /ttl: "5 minutes"; write milliseconds as a number/, InvalidLockOptionError],
      ['a duration without a unit', () => WithLock('k', { ttl: '500' }), /ttl: "500"/, InvalidLockOptionError],
      ['an unknown option', () => WithLock('k', { tll: '5s' } as object), /option "tll"/, InvalidLockOptionError],
      [
        'lockAtLeastFor above ttl',
        () => WithLock('k', { ttl: '5s', lockAtLeastFor: '10s' }),
        /lockAtLeastFor: 10000; it is longer than the lock's ttl \(5000ms\)/,
        InvalidLockOptionError,
      ],
    ];
    for (const [what, decorate, message, type] of cases) {
      it(`rejects ${what}`, () => {
        assert.throws(define(decorate), (error: unknown) => {
          assert.ok(error instanceof type, `${(error as Error).name} is a ${type.name}`);
          assert.match((error as Error).message, message);
          return true;
        });
      });
    }
  });

  it('rejects lockAtLeastFor above the module ttl at bootstrap', async () => {
    @Injectable()
    class LongJob {
      @WithLock('long', { lockAtLeastFor: '1m' })
      async run(): Promise<void> {}
    }
    await assert.rejects(createTestApp({ providers: [LongJob], lock: { ttl: '30s' } }), /LongJob\.run: lockAtLeastFor: 60000; it is longer than the lock's ttl \(30000ms\)/);
  });
});

describe('@WithLock on @nestjs/schedule jobs', () => {
  @Injectable()
  class Jobs {
    readonly runs = { above: 0, below: 0, timeout: 0, cron: 0 };

    @Interval(20)
    @WithLock('jobs:above')
    async above(): Promise<void> {
      this.runs.above++;
    }

    @WithLock('jobs:below')
    @Interval(20)
    async below(): Promise<void> {
      this.runs.below++;
    }

    @Timeout(10)
    @WithLock('jobs:timeout')
    async once(): Promise<void> {
      this.runs.timeout++;
    }

    @Cron(CronExpression.EVERY_SECOND)
    @WithLock('jobs:cron', { lockAtLeastFor: '200ms' })
    async cron(): Promise<void> {
      this.runs.cron++;
    }
  }

  it('runs locked @Interval, @Timeout and @Cron jobs with the decorators in either order', async () => {
    app = await createTestApp({ providers: [Jobs], imports: [ScheduleModule.forRoot()] });
    const jobs = app.get(Jobs);
    await waitFor(() => jobs.runs.above >= 2 && jobs.runs.below >= 2 && jobs.runs.timeout === 1, 3_000, 'interval and timeout ticks');
    await waitFor(() => jobs.runs.cron >= 1, 2_500, 'a cron tick');
  });

  it('skips busy ticks without an error (onBusy defaults to skip on scheduled methods)', async () => {
    app = await createTestApp({ providers: [Jobs], imports: [ScheduleModule.forRoot()] });
    const jobs = app.get(Jobs);
    const locks = app.get(LockService);
    const above = await locks.acquire('jobs:above');
    const below = await locks.acquire('jobs:below');
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const before = { ...jobs.runs };
      await new Promise((resolve) => setTimeout(resolve, 150));
      assert.equal(jobs.runs.above, before.above, 'no run while the lock is held');
      assert.equal(jobs.runs.below, before.below);
      await above.release();
      await below.release();
      await waitFor(() => jobs.runs.above > before.above && jobs.runs.below > before.below, 2_000, 'ticks resume');
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe('@WithLock during shutdown', () => {
  @Injectable()
  class Nightly {
    @Interval(1_000_000)
    @WithLock('nightly')
    async run(): Promise<string> {
      return 'ran';
    }

    @WithLock('manual')
    async manual(): Promise<string> {
      return 'ran';
    }
  }

  it('skips a scheduled run that fires after the locks were released, and refuses other calls clearly', async () => {
    const one = await createTestApp({ providers: [Nightly] });
    const nightly = one.get(Nightly);
    await one.get(LockService).onModuleDestroy();
    assert.equal(await nightly.run(), undefined);
    await assert.rejects(nightly.manual(), LockShutdownError);
    await one.close();
  });
});
