import type { Clock } from '../clock.js';

/**
 * The contract every lock store implements: the in-memory default, Redis,
 * etcd, D-Bus, and a store you write yourself. Run the contract suite from
 * `nestjs-distributed-lock/testing` against a store to check it keeps these
 * rules.
 *
 * The core (`LockService` and the `Lock` handle) owns what is the same for
 * every backend: key validation, owner identities, deadlines on the holder's
 * clock, batched renewal, loss signalling, and waiting for stores that cannot
 * wait better themselves. A store owns what only it can do well: an atomic
 * "take it if free", compare-and-set release and renewal, and, where the
 * backend allows, being woken when the lock is released instead of polling.
 *
 * ### Rules every store keeps
 *
 * 1. **Atomic acquire.** Checking that a key is free and taking it is one
 *    atomic step in the backend (one Lua script, one transaction, one
 *    `RequestName`). A read followed by a write lets two callers in.
 * 2. **Compare-and-set release and renewal.** Both act only if `owner` still
 *    holds the key. A holder whose lease ran out must never delete or extend
 *    the lock of whoever took it next.
 * 3. **Safe validity.** Every grant or renewal reports `validFrom`, a reading
 *    of {@link LockStore.clock} taken *before* the request that created the
 *    lease was sent, and `validFor`, the lease length the backend applied.
 *    The holder treats the lock as lost at `validFrom + validFor`, which is
 *    then no later than the moment the backend can hand it to someone else,
 *    however long the request and the reply were delayed.
 * 4. **Fencing tokens.** Every grant of a key carries a safe integer. The
 *    store states in {@link LockStoreTraits.fencing} how far tokens are
 *    guaranteed to increase; a resource that rejects writes with a lower
 *    token than it has seen is then safe from a holder that stalled.
 * 5. **No leaked state.** A waiter that gives up (its `wait` ran out or its
 *    signal aborted) leaves the backend's queue; a released key leaves
 *    nothing behind but what fencing needs; `close()` leaves no timer,
 *    socket or listener that keeps the process alive.
 */
export interface LockStore {
  /** What this store guarantees; shown in logs and checked by the contract suite. */
  readonly traits: LockStoreTraits;

  /**
   * The clock `validFrom` readings come from. The core counts deadlines and
   * renewal times on the same clock, so the two always agree. Defaults to the
   * system's monotonic clock; tests pass a `ManualClock`.
   */
  readonly clock?: Clock;

  /**
   * True when the store opened its own connection (made from a url or
   * connection options) rather than using a client the application passed
   * in. Nobody else can close that connection, so `LockModule` closes such a
   * store by default, once the last application using it shuts down;
   * otherwise an application that stopped could not exit.
   */
  readonly ownsConnection?: boolean;

  /**
   * Takes `key` for `owner` if it is free, in one atomic step.
   *
   * When {@link LockStoreTraits.waits} is true and `request.wait` is above 0,
   * the store waits itself, by whatever its backend offers that is better
   * than polling (pub/sub, a watch, the bus daemon's queue), in FIFO order if
   * it is `fair`, and resolves as soon as it holds the key or `wait` has
   * passed. When `waits` is false the core calls with `wait: 0` and re-tries
   * with a bounded, jittered delay.
   *
   * If `request.signal` aborts while waiting, the store leaves the queue and
   * resolves `{ acquired: false }`; if the grant raced the abort it may
   * resolve the grant, and the core releases it.
   *
   * Rejects only when the backend failed (unreachable, timed out, closed),
   * with a {@link LockStoreError} that keeps the cause.
   */
  acquire(request: AcquireRequest): Promise<AcquireResult>;

  /**
   * Extends the leases of locks this process holds, in as few round trips as
   * the backend allows: the core gathers every lock due for renewal into one
   * call. Answers one result per request, in order: a new validity, or
   * `{ renewed: false }` when `owner` no longer holds the key (the core then
   * reports the lock lost). Rejects when the backend could not be asked; the
   * core re-tries until the lock's deadline and then reports it lost.
   *
   * A store that keeps a session alive for all its locks (an etcd lease)
   * answers from the session's state without a round trip.
   */
  renew(requests: readonly RenewRequest[]): Promise<readonly RenewResult[]>;

  /**
   * Releases `key` if `owner` holds it (compare-and-set) and resolves true;
   * resolves false when someone else holds it or nobody does. A fair store
   * passes the key to its longest waiter here.
   */
  release(key: string, owner: string): Promise<boolean>;

  /**
   * Stops the store: pending waits resolve `{ acquired: false }`, later calls
   * reject with {@link LockStoreError}, and connections the store opened are
   * closed. Connections or clients the application passed in stay open.
   *
   * A lock still held at close is left to run out, never released or handed
   * on: `LockModule` closes the store at shutdown while a section that
   * outran `shutdownTimeout` may still run. A backend that keeps leases by
   * itself (a Redis key's expiry) needs nothing; one whose leases are tied to
   * something the store would end (an etcd session, a bus connection) keeps
   * the lock until its lease ends (etcd: a lease of its own; D-Bus: the
   * connection that owns the name), without keeping the process alive.
   */
  close(): Promise<void>;

  /**
   * Called instead of `close()` when the last application using the store
   * in this process shuts down and the store is to stay usable (`closeStore:
   * false`: a store on a client the application passed in, or one shared
   * with later applications). Closes what the store opened for itself and
   * can open again on next use (a subscriber connection, a session and its
   * keepalive), so the process can exit while the application's own client
   * stays open. Locks still held are left to run out in the backend, as in
   * `close()`. Optional: a store that opens nothing of its own needs none.
   */
  suspend?(): Promise<void>;
}

export interface LockStoreTraits {
  /** A short name for logs and errors: `memory`, `redis`, `etcd`, `dbus`. */
  readonly name: string;
  /**
   * How far fencing tokens for one key are guaranteed to increase:
   * - `strict`: for the life of the backend's data, across restarts and
   *   fail-overs (etcd revisions);
   * - `until-data-loss`: while the backend keeps its data; a restart without
   *   persistence or a fail-over to a replica that missed writes can repeat
   *   tokens (Redis);
   * - `process`: for the life of the process that holds the store (memory);
   * - `none`: tokens identify a grant but are not ordered; do not fence with
   *   them.
   */
  readonly fencing: 'strict' | 'until-data-loss' | 'process' | 'none';
  /** True when waiters are served in the order they started waiting. */
  readonly fair: boolean;
  /** True when `acquire` honours `wait` itself, by a wake-up better than polling. */
  readonly waits: boolean;
}

export interface AcquireRequest {
  /** The namespaced key (the module's prefix, then the application's key). */
  readonly key: string;
  /** Unique for every acquisition and never reused (a random per-process prefix and a sequence number). */
  readonly owner: string;
  /** Requested lease length in milliseconds. */
  readonly ttl: number;
  /** Milliseconds to wait for the key; 0 for one try. */
  readonly wait: number;
  /** Aborts the wait. */
  readonly signal?: AbortSignal;
  /**
   * Called when the store learns, outside of `renew`, that the lock it
   * granted is gone: its session expired, its connection dropped, the bus
   * took the name away. May be called after release; the core ignores that.
   */
  readonly onLost: (reason: 'not-owner' | 'session-lost') => void;
}

export type AcquireResult =
  | ({ readonly acquired: true; readonly fencingToken: number } & Validity)
  | {
      readonly acquired: false;
      /** Milliseconds until the current holder's lease ends, when known; becomes HTTP `Retry-After`. */
      readonly retryAfter?: number;
    };

export interface RenewRequest {
  readonly key: string;
  readonly owner: string;
  /** The new lease length in milliseconds, counted from when the renewal is sent. */
  readonly ttl: number;
}

export type RenewResult = ({ readonly renewed: true } & Validity) | { readonly renewed: false };

/** A lease as the holder must count it: from `validFrom`, for `validFor` milliseconds. */
export interface Validity {
  /** A reading of the store's clock taken before the request that created the lease was sent. */
  readonly validFrom: number;
  /** The lease length the backend applied, in milliseconds. */
  readonly validFor: number;
}
