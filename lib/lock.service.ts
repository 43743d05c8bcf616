import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import {
  Inject,
  Injectable,
  Logger,
  Optional,
  type BeforeApplicationShutdown,
  type OnApplicationShutdown,
  type OnModuleDestroy,
} from '@nestjs/common';
import { follow } from './abort-relay.js';
import { clientSignal } from './client-scope.js';
import { systemClock, type Clock } from './clock.js';
import { toMilliseconds, type Duration } from './duration.js';
import {
  LockModuleMissingError,
  LockReentryError,
  LockShutdownError,
  LockUnavailableError,
  describeValue,
  type LockLostError,
} from './errors.js';
import { keySpace, validateKey } from './key.js';
import { LockHandle, storeFailure, type Lock, type LockOwner } from './lock.js';
import type { LockSettings } from './lock.options.js';
import { LOCK_SETTINGS } from './lock.tokens.js';
import { RenewalScheduler } from './renewal-scheduler.js';
import type { LockStore } from './store/lock-store.js';

/** Per-call options of `acquire`, `tryAcquire` and `withLock`. */
export interface AcquireOptions {
  /** Lease length; default the module's `ttl` (30s). */
  ttl?: Duration;
  /** How long to wait for a busy lock; default the module's `wait` (0: one try). */
  wait?: Duration;
  /** Aborts the wait; the call then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Listener of lock losses: see {@link LockService.onLost}. */
export type LockLostListener = (lock: Lock, error: LockLostError) => void;

/**
 * The lock of the enclosing `@WithLock` / `withLock` / `@LockRoute` call,
 * shared by every service in the process; the locks further out in the call
 * chain are reached through {@link LockHandle.outer}.
 */
const currentLock = new AsyncLocalStorage<LockHandle>();

/** Services alive in this process, for `@WithLock` methods on instances the explorer did not see. */
export const activeServices = new Set<LockService>();

/** How many running services use each store, so a shared store is closed only by the last one. */
const storeUsers = new WeakMap<LockStore, number>();

/**
 * Takes, holds and releases locks in the store configured by `LockModule`.
 *
 * @example
 * constructor(private readonly locks: LockService) {}
 *
 * async settle(id: string) {
 *   return this.locks.withLock(`invoice:${id}`, async (lock) => {
 *     await this.ledger.post(id, { fence: lock.fencingToken });
 *   }, { wait: '5s' });
 * }
 */
@Injectable()
export class LockService implements LockOwner, OnModuleDestroy, BeforeApplicationShutdown, OnApplicationShutdown {
  readonly store: LockStore;
  readonly clock: Clock;
  private readonly scheduler: RenewalScheduler;
  private readonly listeners = new Set<LockLostListener>();
  private readonly logger = new Logger('LockService');
  private readonly keySpace: string;
  /**
   * Owner ids are this service's random prefix and a sequence number: unique
   * per acquisition and never reused, across processes and restarts, at a
   * fraction of the time and memory of a UUID per acquisition.
   */
  private readonly ownerPrefix = `${randomUUID()}:`;
  private ownerSeq = 0;
  /** True once the module began shutting down; later locks are refused. @internal */
  stopped = false;
  /** Every wait in progress and its key, so shutdown can end them at once. */
  private readonly waits = new Map<AbortController, string>();
  /** Called when the last held lock ends, while shutdown waits for that. */
  private onDrained?: () => void;

  readonly settings: LockSettings;

  constructor(@Optional() @Inject(LOCK_SETTINGS) settings?: LockSettings) {
    if (!settings) {
      throw new LockModuleMissingError(
        'LockService was created without LockModule; import LockModule.forRoot() (or forRootAsync()) in your root module instead of listing LockService in providers',
      );
    }
    this.settings = settings;
    this.store = settings.store;
    this.keySpace = keySpace(settings.keyPrefix);
    this.clock = settings.store.clock ?? systemClock;
    this.scheduler = new RenewalScheduler(this.store, this.clock, this.logger);
    activeServices.add(this);
    storeUsers.set(this.store, (storeUsers.get(this.store) ?? 0) + 1);
  }

  /**
   * Takes the lock, waiting up to `wait` for a busy one. Rejects with
   * {@link LockUnavailableError} when it is still held by someone else then.
   *
   * @example
   * await using lock = await locks.acquire('reports:daily', { ttl: '2m', wait: '10s' });
   */
  async acquire(key: string, options: AcquireOptions = {}): Promise<Lock> {
    const result = await this.take(validateKey(key, 'LockService.acquire'), options, 'LockService.acquire');
    if (result instanceof LockUnavailableError) throw result;
    return result;
  }

  /**
   * Like {@link acquire}, but resolves `null` instead of rejecting when the
   * lock is busy.
   *
   * @example
   * const lock = await locks.tryAcquire('cache:rebuild');
   * if (!lock) return; // someone else is rebuilding
   */
  async tryAcquire(key: string, options: AcquireOptions = {}): Promise<Lock | null> {
    const result = await this.take(validateKey(key, 'LockService.tryAcquire'), options, 'LockService.tryAcquire');
    return result instanceof LockUnavailableError ? null : result;
  }

  /**
   * Runs `fn` while holding the lock and releases it afterwards, whether `fn`
   * resolves or throws. Inside `fn`, {@link current} returns the lock.
   *
   * @example
   * const total = await locks.withLock(`cart:${id}`, () => this.carts.checkout(id), { wait: '2s' });
   */
  async withLock<T>(key: string, fn: (lock: Lock) => T | Promise<T>, options: AcquireOptions = {}): Promise<T> {
    const result = await this.take(validateKey(key, 'LockService.withLock'), options, 'LockService.withLock');
    if (result instanceof LockUnavailableError) throw result;
    const lock = result;
    try {
      return await this.runWith(lock, () => fn(lock));
    } finally {
      await this.releaseQuietly(lock);
    }
  }

  /**
   * The lock of the enclosing `@WithLock` method or `withLock` callback, so
   * code deep inside can read its fencing token and signal.
   *
   * @example
   * const fence = this.locks.current()?.fencingToken;
   */
  current(): Lock | undefined {
    return currentLock.getStore();
  }

  /**
   * Calls `listener` whenever a lock taken through this service is lost
   * (not when it is released). Returns a function that removes the listener.
   *
   * @example
   * locks.onLost((lock, error) => metrics.increment('lock.lost', { reason: error.reason }));
   */
  onLost(listener: LockLostListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Takes `key` (already validated) or says why not. Waits in the store when
   * it can wait by itself; otherwise re-tries with a bounded, jittered delay.
   * `where` names the caller in errors and in the shutdown log.
   * @internal
   */
  async take(key: string, options: AcquireOptions, where: string): Promise<LockHandle | LockUnavailableError> {
    if (this.stopped) throw new LockShutdownError(key);
    const ttl = options.ttl === undefined ? this.settings.ttl : toMilliseconds(options.ttl, `ttl of lock ${describeValue(key)}`);
    const wait =
      options.wait === undefined ? this.settings.wait : toMilliseconds(options.wait, `wait of lock ${describeValue(key)}`, true);
    const storeKey = this.keySpace + key;
    this.refuseReentry(key, storeKey, where);
    options.signal?.throwIfAborted();
    if (wait === 0) return this.attempts(key, storeKey, ttl, 0, options.signal, where);
    // A wait listens to a signal of its own, which the caller's signal, the
    // HTTP client going away and shutdown all abort: a caller still waiting
    // when the application stops is answered at once, not at the end of its
    // wait, and an abandoned request gives up its place in the queue.
    const controller = new AbortController();
    const sources = new Set([options.signal, clientSignal()].filter((source) => source !== undefined));
    const relays = [...sources].map((source) => follow(source, controller));
    this.waits.set(controller, key);
    try {
      return await this.attempts(key, storeKey, ttl, wait, controller.signal, where);
    } finally {
      this.waits.delete(controller);
      for (const remove of relays) remove();
    }
  }

  private async attempts(
    key: string,
    storeKey: string,
    ttl: number,
    wait: number,
    signal: AbortSignal | undefined,
    where: string,
  ): Promise<LockHandle | LockUnavailableError> {
    const waitUntil = wait === 0 ? 0 : this.clock.now() + wait;
    for (let attempt = 0; ; attempt++) {
      const owner = this.ownerPrefix + (++this.ownerSeq).toString(36);
      let handle: LockHandle | undefined;
      const remaining = wait === 0 ? 0 : Math.max(0, waitUntil - this.clock.now());
      let result;
      try {
        result = await this.store.acquire({
          key: storeKey,
          owner,
          ttl,
          wait: this.store.traits.waits ? remaining : 0,
          signal,
          onLost: (reason) => handle?.lose(reason),
        });
      } catch (error) {
        throw storeFailure(this.store, `acquire lock ${describeValue(key)}`, error);
      }
      if (result.acquired) {
        handle = new LockHandle(this, key, storeKey, owner, result.fencingToken, ttl, result);
        handle.section = where;
        // A grant that raced the shutdown or an abort is given back at once:
        // nobody is left to use it, or to release it.
        if (this.stopped || signal?.aborted) {
          await this.releaseQuietly(handle);
          if (this.stopped) throw new LockShutdownError(key);
          signal?.throwIfAborted();
        }
        this.schedule(handle);
        return handle;
      }
      signal?.throwIfAborted();
      const left = wait === 0 ? 0 : waitUntil - this.clock.now();
      if (this.store.traits.waits || left <= 0) return new LockUnavailableError(key, wait, result.retryAfter);
      await this.pause(Math.min(left, backoff(attempt)), signal);
    }
  }

  /** Refuses a key the current call chain holds already: waiting for it would wait for itself. */
  private refuseReentry(key: string, storeKey: string, where: string): void {
    for (let lock = currentLock.getStore(); lock; lock = lock.outer) {
      if (lock.active && lock.storeKey === storeKey && lock.store === this.store) throw new LockReentryError(key, where);
    }
  }

  /**
   * Runs `fn` with `lock` as the current lock.
   * @internal
   */
  runWith<T>(lock: LockHandle, fn: () => T): T {
    lock.outer ??= currentLock.getStore();
    return currentLock.run(lock, fn);
  }

  /**
   * Releases after a critical section. A store failure here is logged, not
   * thrown: the caller's own result matters more, and the lease ends by
   * itself within its ttl.
   * @internal
   */
  async releaseQuietly(lock: Lock): Promise<void> {
    try {
      await lock.release();
    } catch (error) {
      this.logger.warn(
        `Releasing lock ${describeValue(lock.key)} failed (${error instanceof Error ? error.message : String(error)}); ` +
          'it ends by itself when its lease runs out',
      );
    }
  }

  /** @internal */
  schedule(lock: LockHandle): void {
    this.scheduler.add(lock);
  }

  /** @internal */
  forget(lock: LockHandle): void {
    this.scheduler.delete(lock);
    if (this.onDrained && this.scheduler.size === 0) this.onDrained();
  }

  /** @internal */
  lost(lock: LockHandle, error: LockLostError): void {
    this.logger.warn(
      `${error.message}. Work still running under it must stop; writes must carry fencing token ${lock.fencingToken} so the resource rejects them`,
    );
    for (const listener of this.listeners) {
      try {
        listener(lock, error);
      } catch (listenerError) {
        this.logger.error(`An onLost listener threw for lock ${describeValue(lock.key)}`, listenerError as Error);
      }
    }
  }

  /**
   * First step of shutdown: no lock is granted from now on, and every wait
   * in progress ends at once with {@link LockShutdownError}, so a request
   * queued for a lock does not hold the HTTP server's close for its whole
   * `wait`. Locks still held stay held: the code holding them still runs.
   */
  onModuleDestroy(): void {
    this.stopped = true;
    activeServices.delete(this);
    for (const [wait, key] of this.waits) wait.abort(new LockShutdownError(key));
  }

  /**
   * Waits, up to `shutdownTimeout`, for the code holding locks to release
   * them as it finishes; renewal goes on meanwhile. A lock still held then
   * is named in an error and stays held and renewed until the application
   * has closed (see {@link onApplicationShutdown}).
   */
  async beforeApplicationShutdown(): Promise<void> {
    if (this.scheduler.size > 0) {
      await new Promise<void>((resolve) => {
        const bound = setTimeout(done, this.settings.shutdownTimeout);
        function done() {
          clearTimeout(bound);
          resolve();
        }
        this.onDrained = done;
      });
      this.onDrained = undefined;
    }
    for (const lock of this.scheduler.held()) {
      this.logger.error(
        `Lock ${describeValue(lock.key)} taken by ${lock.section ?? 'LockService'} is still held ${this.settings.shutdownTimeout}ms into shutdown (shutdownTimeout). ` +
          `It is not released and not handed on while its code may still run: it stays renewed until the application has closed, then its lease runs out in the ${this.store.traits.name} store within ${lock.ttl}ms`,
      );
    }
  }

  /**
   * Last step, after the HTTP server has closed: a lock still held is no
   * longer renewed and is left to run out in the store (its signal aborts
   * with reason `shutdown`), then the store is closed, or suspended when it
   * stays open (see `closeStore`), once no other application in the process
   * uses it.
   */
  async onApplicationShutdown(): Promise<void> {
    for (const lock of this.scheduler.held()) lock.abandon();
    this.scheduler.stop();
    const users = (storeUsers.get(this.store) ?? 1) - 1;
    storeUsers.set(this.store, users);
    if (users > 0) return;
    if (this.settings.closeStore) await this.store.close();
    else await this.store.suspend?.();
  }

  private pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        timer.cancel();
        reject(signal?.reason);
      };
      const timer = this.clock.setTimer(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms, true);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** 10ms, doubling to 250ms, with full jitter between half and all of it, so pollers do not march in step. */
function backoff(attempt: number): number {
  const ceiling = Math.min(250, 10 * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}
