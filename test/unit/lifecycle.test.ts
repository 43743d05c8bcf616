import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Injectable } from '@nestjs/common';
import { Observable, Subject, lastValueFrom } from 'rxjs';
import {
  LockLostError,
  LockReentryError,
  LockService,
  LockShutdownError,
  MemoryLockStore,
  WithLock,
  type LockModuleOptions,
} from 'nestjs-distributed-lock';
import { createTestApp } from '../support/app.js';
import { captureLogs } from '../support/log-capture.js';
import { ProbeStore } from '../support/probe-store.js';
import { waitFor } from '../support/wait-for.js';

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Span {
  app: string;
  start: number;
  end?: number;
}

/** A section of `ms` on one key, in an application named `app`; every span is recorded on the shared list. */
function sectionClass(app: string, spans: Span[], ms: number) {
  @Injectable()
  class Charges {
    @WithLock('charge:42', { wait: '10s' })
    async charge(): Promise<void> {
      const span: Span = { app, start: performance.now() };
      spans.push(span);
      await pause(ms);
      span.end = performance.now();
    }
  }
  return Charges;
}

async function twoApps(store: MemoryLockStore, ms: number, a: LockModuleOptions = {}) {
  const spans: Span[] = [];
  const A = sectionClass('a', spans, ms);
  const B = sectionClass('b', spans, ms);
  const appA = await createTestApp({ lock: { store, ...a }, providers: [A] });
  const appB = await createTestApp({ lock: { store }, providers: [B] });
  return { spans, appA, appB, a: appA.get(A), b: appB.get(B) };
}

describe('shutdown', () => {
  it("lets a holder's section finish before anyone else gets its lock, when its application closes mid-section", async () => {
    const store = new MemoryLockStore();
    const { spans, appA, appB, a, b } = await twoApps(store, 500);
    const first = a.charge();
    await waitFor(() => spans.length === 1);
    const second = b.charge(); // queued behind a
    await pause(150);
    await appA.close();
    const closedAt = performance.now();
    await Promise.all([first, second]);
    const [spanA, spanB] = spans;
    assert.ok(spanA?.end !== undefined && spanB, 'both sections ran');
    assert.ok(spanB.start >= spanA.end, `b entered ${(spanA.end - spanB.start).toFixed(1)}ms before a left`);
    assert.ok(closedAt >= spanA.end, 'close() resolved only after the running section ended');
    await appB.close();
  });

  it('answers a caller still waiting at shutdown at once with LockShutdownError, and never grants it the lock later', async () => {
    const store = new MemoryLockStore();
    const holderApp = await createTestApp({ lock: { store } });
    const waiterApp = await createTestApp({ lock: { store } });
    const holder = holderApp.get(LockService);
    const held = await holder.acquire('k');
    const waiting = waiterApp.get(LockService).acquire('k', { wait: '10s' });
    const outcome = waiting.then(
      () => 'granted',
      (error: unknown) => error,
    );
    await pause(50);
    const started = performance.now();
    await waiterApp.close();
    const closeMs = performance.now() - started;
    const error = await outcome;
    assert.ok(error instanceof LockShutdownError, `rejected with LockShutdownError, not ${String(error)}`);
    assert.match(error.message, /"k" was not granted: the application is shutting down/);
    assert.ok(closeMs < 1_000, `close() took ${closeMs.toFixed(0)}ms; it must not wait out the 10s wait`);
    await held.release();
    const again = await holder.tryAcquire('k');
    assert.ok(again?.held, 'the released key went to nobody in the closed application');
    await again.release();
    await holderApp.close();
  });

  it('gives back at once a grant that arrives after the shutdown began', async () => {
    const store = new ProbeStore(new MemoryLockStore());
    const app = await createTestApp({ lock: { store } });
    const open = store.holdAcquireReplies();
    const taking = app.get(LockService).acquire('raced');
    const outcome = taking.then(
      () => 'granted',
      (error: unknown) => error,
    );
    await pause(20);
    const closing = app.close();
    setTimeout(open, 50); // the grant's answer arrives once shutdown has begun
    await closing;
    await outcome;
    assert.ok((await outcome) instanceof LockShutdownError);
    const probe = await store.inner.acquire({ key: ':raced', owner: 'probe', ttl: 1_000, wait: 0, onLost() {} });
    assert.equal(probe.acquired, true, 'the grant was released, not kept by the closed application');
  });

  it('keeps a lock whose section outlives shutdownTimeout until its lease ends, so nobody overlaps it, and names it in an error', async () => {
    const store = new MemoryLockStore();
    const { logger, lines } = captureLogs();
    const { spans, appA, appB, a, b } = await twoApps(store, 700, { shutdownTimeout: 100, ttl: 1_500 });
    appA.useLogger(logger);
    const first = a.charge();
    await waitFor(() => spans.length === 1);
    const second = b.charge();
    await pause(100);
    await appA.close();
    const closedAt = performance.now();
    assert.ok(closedAt - (spans[0]?.start ?? 0) < 600, 'close() stopped waiting at shutdownTimeout');
    await Promise.all([first, second]);
    const [spanA, spanB] = spans;
    assert.ok(spanA?.end !== undefined && spanB);
    assert.ok(spanB.start >= spanA.end, 'b entered only after a left');
    assert.ok(spanB.start - closedAt > 300, `b entered ${(spanB.start - closedAt).toFixed(0)}ms after close: the lease ran out, it was not released`);
    const logged = lines.find((line) => /charge:42/.test(line) && /shutdownTimeout/.test(line));
    assert.ok(logged, `an error names the lock: ${lines.join('\n')}`);
    assert.match(logged, /@WithLock on Charges\.charge/);
    await appB.close();
  });

  it("aborts a kept lock's signal with reason 'shutdown' once the application has closed", async () => {
    const app = await createTestApp({ lock: { shutdownTimeout: 0, ttl: 1_000 } });
    const lock = await app.get(LockService).acquire('kept');
    await app.close();
    assert.equal(lock.held, false);
    const reason: unknown = lock.signal.reason;
    assert.ok(reason instanceof LockLostError && reason.reason === 'shutdown', String(reason));
    assert.equal(await lock.release(), false, 'nothing is released: the lease runs out by itself');
  });
});

describe('re-entry', () => {
  @Injectable()
  class Orders {
    constructor(readonly locks: LockService) {}

    @WithLock((id: string) => `order:${id}`, { wait: '5s' })
    async pay(id: string): Promise<string> {
      return this.ship(id);
    }

    @WithLock((id: string) => `order:${id}`, { wait: '5s' })
    async ship(id: string): Promise<string> {
      return `shipped ${id}`;
    }

    @WithLock((id: string) => `invoice:${id}`, { wait: '5s' })
    async invoice(id: string): Promise<string> {
      return this.ship(id);
    }
  }

  it('refuses at once a @WithLock method calling another on the key it holds', async () => {
    const app = await createTestApp({ providers: [Orders] });
    const started = performance.now();
    await assert.rejects(app.get(Orders).pay('1'), (error) => {
      assert.ok(error instanceof LockReentryError);
      assert.match(error.message, /@WithLock on Orders\.ship: lock "order:1" is already held by this call chain/);
      return true;
    });
    assert.ok(performance.now() - started < 1_000, 'failed at once, not after its wait');
    await app.close();
  });

  it('refuses withLock inside withLock on the same key, even with another key in between', async () => {
    const app = await createTestApp();
    const locks = app.get(LockService);
    await assert.rejects(
      locks.withLock('a', () => locks.withLock('b', () => locks.withLock('a', () => 'inner'))),
      LockReentryError,
    );
    assert.equal(await locks.withLock('a', () => locks.withLock('b', () => 'nested')), 'nested');
    await app.close();
  });

  it('allows different keys, and the same key once the outer section has released it', async () => {
    const app = await createTestApp({ providers: [Orders] });
    const orders = app.get(Orders);
    assert.equal(await orders.invoice('7'), 'shipped 7');
    const locks = app.get(LockService);
    let later: Promise<string> | undefined;
    await locks.withLock('after', () => {
      // Started inside the section, runs after it ended: the chain no longer holds the key.
      later = pause(30).then(() => locks.withLock('after', () => 'later'));
    });
    assert.equal(await later, 'later');
    await app.close();
  });

  it('is not re-entry when another application locks the same key in its own store', async () => {
    const one = await createTestApp();
    const two = await createTestApp();
    const result = await one.get(LockService).withLock('same', () => two.get(LockService).withLock('same', () => 'both'));
    assert.equal(result, 'both');
    await Promise.all([one.close(), two.close()]);
  });
});

describe('@WithLock on a method that returns an Observable', () => {
  @Injectable()
  class Exports {
    source = new Subject<number>();
    constructor(readonly locks: LockService) {}

    @WithLock('export', { wait: '5s' })
    stream(): Observable<number> {
      return new Observable<number>((subscriber) => {
        subscriber.next(this.locks.current()?.fencingToken ?? -1);
        return this.source.subscribe(subscriber);
      });
    }
  }

  const busy = async (locks: LockService) => {
    const probe = await locks.tryAcquire('export');
    await probe?.release();
    return probe === null;
  };

  it('keeps the lock while subscribed and releases it on complete, on error and on unsubscribe', async () => {
    const app = await createTestApp({ providers: [Exports] });
    const exports = app.get(Exports);
    const locks = app.get(LockService);
    for (const end of ['complete', 'error', 'unsubscribe'] as const) {
      const stream = (await exports.stream()) as unknown as Observable<number>;
      assert.equal(await busy(locks), true, `held once returned, before anyone subscribed (${end})`);
      const seen: number[] = [];
      const sub = stream.subscribe({ next: (value) => seen.push(value), error: () => {} });
      assert.ok((seen[0] ?? -1) > 0, 'the stream sees the lock through current()');
      assert.equal(await busy(locks), true, `held while subscribed (${end})`);
      if (end === 'complete') exports.source.complete();
      else if (end === 'error') exports.source.error(new Error('boom'));
      else sub.unsubscribe();
      await waitFor(async () => !(await busy(locks)), 1_000, `released on ${end}`);
      exports.source = new Subject<number>();
    }
    await app.close();
  });

  it('refuses a second subscription, which the lock does not cover', async () => {
    const app = await createTestApp({ providers: [Exports] });
    const stream = (await app.get(Exports).stream()) as unknown as Observable<number>;
    const first = stream.subscribe({ next: () => {} });
    await assert.rejects(lastValueFrom(stream), /subscribed twice/);
    first.unsubscribe();
    await app.close();
  });
});

describe('renewal failures', () => {
  it('warns once when renewals start failing and once when the lock is lost, not once per attempt', async () => {
    const store = new ProbeStore(new MemoryLockStore());
    const { logger, lines } = captureLogs();
    const app = await createTestApp({ lock: { store, ttl: 900 } });
    app.useLogger(logger);
    const lock = await app.get(LockService).acquire('flaky');
    store.breakRenewals();
    await waitFor(() => !lock.held, 3_000, 'the lock lost');
    await pause(100);
    store.breakRenewals(false);
    const renewing = lines.filter((line) => /Renewing .* failed/.test(line));
    const lost = lines.filter((line) => /Lock "flaky" was lost/.test(line));
    assert.equal(renewing.length, 1, lines.join('\n'));
    assert.equal(lost.length, 1, lines.join('\n'));
    await app.close();
  });
});

describe('one AbortSignal shared by many waits', () => {
  it('aborts every wait, with no MaxListenersExceededWarning however many share it', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on('warning', onWarning);
    const app = await createTestApp();
    try {
      const locks = app.get(LockService);
      const held = await locks.acquire('shared-signal');
      const abort = new AbortController();
      const waits = Array.from({ length: 50 }, () =>
        locks.acquire('shared-signal', { wait: '10s', signal: abort.signal }).then(
          () => 'granted',
          (error: unknown) => error,
        ),
      );
      await pause(20);
      abort.abort(new Error('stop waiting'));
      const outcomes = await Promise.all(waits);
      assert.ok(outcomes.every((outcome) => outcome instanceof Error && outcome.message === 'stop waiting'));
      await held.release();
      await pause(10); // warnings are emitted on the next tick
      assert.deepEqual(warnings.filter((name) => name === 'MaxListenersExceededWarning'), []);
    } finally {
      process.off('warning', onWarning);
      await app.close();
    }
  });
});
