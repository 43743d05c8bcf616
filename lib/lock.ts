import { LockLostError, LockStoreError, describeValue, type LockLostReason } from './errors.js';
import type { Clock } from './clock.js';
import { toMilliseconds } from './duration.js';
import type { LockStore, Validity } from './store/lock-store.js';

/**
 * A held lock. Returned by `LockService.acquire` and passed to
 * `LockService.withLock` callbacks; `LockService.current()` returns the one of
 * the enclosing `@WithLock` or `withLock` call.
 *
 * @example
 * await using lock = await locks.acquire(`orders:${id}`, { ttl: '10s' });
 * await ledger.write(entry, { fence: lock.fencingToken, signal: lock.signal });
 */
export interface Lock extends AsyncDisposable {
  /** The key as the application named it. */
  readonly key: string;
  /**
   * A safe integer that grows with every acquisition of the key (how far it
   * is guaranteed to grow is the store's `traits.fencing`). Send it with
   * every write so the resource can refuse writes from a stale holder.
   */
  readonly fencingToken: number;
  /**
   * Aborts with a {@link LockLostError} when the lock is lost (its `reason`
   * says why) and when it is released (`reason: 'released'`). Pass it to
   * `fetch`, database drivers and your own loops.
   */
  readonly signal: AbortSignal;
  /**
   * True while the lock is held: false once released, lost, or past its
   * deadline on this process's monotonic clock without a confirmed renewal.
   */
  readonly held: boolean;
  /**
   * When the lock counts as lost unless a renewal is confirmed first, on the
   * store's clock (for the system clock, `performance.now()` of this
   * process). Renewals move it forward; `deadline - performance.now()` is
   * the time this holder can still count on.
   */
  readonly deadline: number;
  /**
   * Renews the lease now, for `ttl` (default: the lock's ttl) counted from
   * this call; later automatic renewals use the new ttl. Rejects with
   * {@link LockLostError} when the lock is no longer held.
   */
  extend(ttl?: number | string): Promise<void>;
  /**
   * Releases the lock (compare-and-set: only if this holder still owns it).
   * Resolves true when this call released it, false when it was already
   * released or lost. Never rejects for those cases; rejects with
   * {@link LockStoreError} when the store could not be reached (the lease
   * then ends on its own within its ttl).
   */
  release(): Promise<boolean>;
}

/** What a lock handle needs from the service that made it. */
export interface LockOwner {
  readonly store: LockStore;
  readonly clock: Clock;
  /** (Re)schedules the lock's next renewal; called when it is taken and when `extend` moves its renewal time. */
  schedule(lock: LockHandle): void;
  /** Stops renewing the lock; called once, when it stops being held. */
  forget(lock: LockHandle): void;
  /** Reports a loss (event and warning); not called for releases. */
  lost(lock: LockHandle, error: LockLostError): void;
}

type State = 'held' | 'released' | 'lost' | 'detached';

/** The implementation of {@link Lock}; the renewal scheduler reads its timing fields. */
export class LockHandle implements Lock {
  private state: State = 'held';
  private controller?: AbortController;
  /**
   * Why the lock stopped being held. For a release it is made only when
   * someone asks (the signal or a refused extend): building an Error captures
   * a stack trace, which would cost more than the whole acquire and release.
   */
  private reason?: LockLostError;
  /** End of the lease on the holder's clock. */
  deadline = 0;
  /** When the next renewal is due. */
  renewAt = 0;
  /** How early a renewal may be sent to share a round trip with others. */
  renewSlack = 0;
  /** When the lease began, on the holder's clock (`lockAtLeastFor` counts from here). */
  readonly acquiredAt: number;
  /** `validFrom` of the newest confirmation, so a late reply to an older request cannot override a newer one. */
  private confirmedFrom = -Infinity;
  /**
   * The lock of the call chain this one's section runs inside, so a second
   * call for a key the chain holds is caught instead of waiting for itself.
   */
  outer?: LockHandle;
  /** What runs under the lock (`@WithLock on OrdersController.pay`), for the shutdown log. */
  section?: string;

  constructor(
    private readonly owner: LockOwner,
    readonly key: string,
    readonly storeKey: string,
    readonly ownerId: string,
    readonly fencingToken: number,
    public ttl: number,
    validity: Validity,
  ) {
    this.acquiredAt = validity.validFrom;
    this.confirm(validity);
  }

  get held(): boolean {
    return this.state === 'held' && this.owner.clock.now() < this.deadline;
  }

  /** The store the lock lives in: two handles are the same lock when store and `storeKey` match. */
  get store(): LockStore {
    return this.owner.store;
  }

  /** True until released, lost or detached; unlike `held`, not checked against the deadline. */
  get active(): boolean {
    return this.state === 'held';
  }

  get signal(): AbortSignal {
    // Created on first use: most critical sections never read it, and an
    // AbortController per acquisition costs more than the rest of the path.
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.state !== 'held') this.controller.abort(this.endReason());
    }
    return this.controller.signal;
  }

  /** Records a lease the store confirmed. */
  confirm({ validFrom, validFor }: Validity): void {
    if (validFrom < this.confirmedFrom) return;
    this.confirmedFrom = validFrom;
    this.deadline = validFrom + validFor;
    this.renewAt = validFrom + validFor / 3;
    this.renewSlack = validFor / 6;
  }

  /** Marks the lock lost, once; later calls (a late renewal answer, a store's session report) do nothing. */
  lose(reason: Exclude<LockLostReason, 'released'>, cause?: unknown): void {
    if (this.state !== 'held') return;
    const error = new LockLostError(this.key, reason, { cause });
    this.end('lost', error);
    this.owner.lost(this, error);
  }

  async extend(ttl?: number | string): Promise<void> {
    const next = ttl === undefined ? this.ttl : toMilliseconds(ttl, `extend(ttl) of lock ${describeValue(this.key)}`);
    this.assertHeld();
    let results;
    try {
      results = await this.owner.store.renew([{ key: this.storeKey, owner: this.ownerId, ttl: next }]);
    } catch (error) {
      throw storeFailure(this.owner.store, `extend lock ${describeValue(this.key)}`, error);
    }
    const result = results[0];
    if (!result?.renewed) this.lose('not-owner');
    this.assertHeld();
    if (result?.renewed) {
      this.ttl = next;
      this.confirm(result);
      this.owner.schedule(this);
    }
  }

  async release(): Promise<boolean> {
    if (this.state !== 'held') return false;
    this.end('released');
    try {
      return await this.owner.store.release(this.storeKey, this.ownerId);
    } catch (error) {
      throw storeFailure(this.owner.store, `release lock ${describeValue(this.key)}`, error);
    }
  }

  /**
   * Leaves the lease to run out in the store at `until` (a clock reading),
   * without releasing: `lockAtLeastFor` keeps other instances out even if
   * this process stops. Shortens the lease with one renewal when needed.
   */
  async holdUntil(until: number): Promise<void> {
    const remaining = Math.ceil(until - this.owner.clock.now());
    if (remaining <= 0) {
      await this.release();
      return;
    }
    await this.extend(remaining);
    this.end('detached');
  }

  /**
   * Stops renewing without releasing, for a lock still held when the
   * application finishes shutting down: its lease runs out in the store, so
   * nobody else gets the key while the code holding it may still run.
   */
  abandon(): void {
    if (this.state !== 'held') return;
    this.end('detached', new LockLostError(this.key, 'shutdown'));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }

  private end(state: State, reason?: LockLostError): void {
    this.state = state;
    this.reason = reason;
    this.controller?.abort(this.endReason());
    this.owner.forget(this);
  }

  private endReason(): LockLostError {
    return (this.reason ??= new LockLostError(this.key, 'released'));
  }

  private assertHeld(): void {
    if (this.state === 'held' && this.owner.clock.now() < this.deadline) return;
    if (this.state === 'held') this.lose('expired');
    throw this.endReason();
  }
}

/** Wraps a store failure so the message names the store and the operation; keeps a LockError as it is. */
export function storeFailure(store: LockStore, what: string, error: unknown): Error {
  if (error instanceof LockStoreError || error instanceof LockLostError) return error;
  const detail = error instanceof Error ? error.message : String(error);
  return new LockStoreError(`The ${store.traits.name} lock store failed to ${what}: ${detail}`, { cause: error });
}
