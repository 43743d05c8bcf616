/**
 * Every error the library throws. Each one names the key or option involved
 * and says what to do, so a log line is enough to fix the problem.
 *
 * @example
 * try { await locks.acquire('orders:42') }
 * catch (e) { if (e instanceof LockUnavailableError) retryLater(e.retryAfter) }
 */
export abstract class LockError extends Error {
  /** A stable, machine-readable code (`LOCK_UNAVAILABLE`, `LOCK_LOST`, ...). */
  abstract readonly code: string;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * The lock is held by someone else and was still held when `wait` ran out.
 * An HTTP caller receives it as 409 Conflict, with `Retry-After` when the
 * store could estimate how long the current holder keeps it.
 */
export class LockUnavailableError extends LockError {
  readonly code = 'LOCK_UNAVAILABLE';

  constructor(
    /** The key as the application named it (without the module's prefix). */
    readonly key: string,
    /** How long this caller waited, in milliseconds (0 for a single try). */
    readonly waited: number,
    /** Milliseconds until the holder's lease ends, when the store knows it. */
    readonly retryAfter?: number,
  ) {
    super(
      `Lock ${describeValue(key)} is held by another owner` +
        (waited > 0 ? ` and was not released within ${waited}ms` : '') +
        `; pass a longer \`wait\` to queue for it, or use onBusy: 'skip' to skip the call`,
    );
  }
}

/** Why a lock stopped being held. */
export type LockLostReason =
  /** The lease ran out on the holder's own clock before a renewal was confirmed. */
  | 'expired'
  /** The store answered that this owner no longer holds the key. */
  | 'not-owner'
  /** The store's session (an etcd lease, a bus connection) that carried the lock ended. */
  | 'session-lost'
  /**
   * The application shut down while the lock was still held (its section
   * outran `shutdownTimeout`): nobody renews it any more, and its lease runs
   * out in the store instead of being released or handed on.
   */
  | 'shutdown'
  /** The holder released it; the signal aborts with this reason too. */
  | 'released';

/**
 * The lock is no longer held. `lock.signal` aborts with this error; work that
 * writes to shared state must stop, and any write it still makes must carry the
 * fencing token so the resource can reject it.
 */
export class LockLostError extends LockError {
  readonly code = 'LOCK_LOST';

  constructor(
    readonly key: string,
    readonly reason: LockLostReason,
    options?: { cause?: unknown },
  ) {
    super(LockLostError.describe(key, reason), options);
  }

  private static describe(key: string, reason: LockLostReason): string {
    switch (reason) {
      case 'released':
        return `Lock ${describeValue(key)} was released; it can no longer be extended or used`;
      case 'expired':
        return `Lock ${describeValue(key)} was lost: its lease ran out before a renewal was confirmed by the store; stop writing and fence every write with the lock's fencingToken`;
      case 'not-owner':
        return `Lock ${describeValue(key)} was lost: the store reports another owner holds it now; stop writing and fence every write with the lock's fencingToken`;
      case 'session-lost':
        return `Lock ${describeValue(key)} was lost: the store session that carried it ended; stop writing and fence every write with the lock's fencingToken`;
      case 'shutdown':
        return `Lock ${describeValue(key)} is no longer renewed: the application shut down while it was held, so its lease runs out in the store; stop writing and fence every write with the lock's fencingToken`;
    }
  }
}

/** A lock key is empty, not a string, too long, or not well-formed Unicode. */
export class InvalidLockKeyError extends LockError {
  readonly code = 'INVALID_LOCK_KEY';
}

/** An option (a duration, `onBusy`, `lockAtLeastFor`, `store`, ...) has a value the library cannot use. */
export class InvalidLockOptionError extends LockError {
  readonly code = 'INVALID_LOCK_OPTION';

  constructor(
    /** The option's path, such as `ttl` or `@WithLock(OrdersController.pay).wait`. */
    readonly option: string,
    readonly value: unknown,
    expected: string,
  ) {
    super(`Invalid ${option}: ${describeValue(value)}; ${expected}`);
  }
}

/**
 * Refuses any option whose name is not in `known`: a misspelt option (`tll`
 * for `ttl`) would otherwise be ignored and leave its default in force
 * without a word. `where` names an option for the message; `shown`, when
 * given, stands in for the value (for options that may carry secrets).
 */
export function refuseUnknownOptions(options: object, known: ReadonlySet<string>, where: (name: string) => string, shown?: string): void {
  for (const name of Object.keys(options)) {
    if (!known.has(name)) {
      const value = shown ?? (options as Record<string, unknown>)[name];
      throw new InvalidLockOptionError(where(name), value, `remove it; the options are ${[...known].join(', ')}`);
    }
  }
}

/**
 * The store could not answer (unreachable, timed out, closed, refused the
 * credentials). The original failure is kept as `cause`.
 */
export class LockStoreError extends LockError {
  readonly code = 'LOCK_STORE_ERROR';
}

/**
 * The application is shutting down: `LockModule` grants no more locks, and
 * a caller still waiting for one is answered at once with this error instead
 * of waiting out its `wait`. An HTTP caller receives 503 Service
 * Unavailable, which load balancers retry on another instance.
 */
export class LockShutdownError extends LockError {
  readonly code = 'LOCK_SHUTDOWN';

  constructor(
    /** The key as the application named it. */
    readonly key: string,
  ) {
    super(
      `Lock ${describeValue(key)} was not granted: the application is shutting down, and LockModule grants no locks from the start of its shutdown; retry on another instance`,
    );
  }
}

/**
 * A lock call asked for a key that the same call chain already holds (a
 * `@WithLock` method calling another one on the same key, or `withLock`
 * inside `withLock`). Locks are not re-entrant: waiting would wait for
 * itself, so the call fails at once instead.
 */
export class LockReentryError extends LockError {
  readonly code = 'LOCK_REENTRY';

  constructor(
    /** The key as the application named it. */
    readonly key: string,
    where: string,
  ) {
    super(
      `${where}: lock ${describeValue(key)} is already held by this call chain, and locks are not re-entrant; ` +
        'take it once in the outermost call and call the inner code without its own lock (LockService.current() tells the inner code it runs under the lock)',
    );
  }
}

/**
 * A `@WithLock` method ran, or `LockService` was injected, in an application
 * that does not import `LockModule`.
 */
export class LockModuleMissingError extends LockError {
  readonly code = 'LOCK_MODULE_MISSING';
}

/** Renders a user-supplied value (a key, an option) for an error message or a log line: short, quoted, on one line. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') {
    const shown = value.length > 80 ? `${value.slice(0, 80)}…` : value;
    // JSON escapes the C0 controls (CR, LF: no forged log lines); the rest a
    // terminal or log viewer may break a line on are escaped here too.
    const quoted = JSON.stringify(shown).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
    return `${quoted}${value.length > 80 ? ` (${value.length} characters)` : ''}`;
  }
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (typeof value === 'function') return `a function${value.name ? ` (${value.name})` : ''}`;
  if (Array.isArray(value)) return `an array of ${value.length}`;
  return `an object (${Object.prototype.toString.call(value).slice(8, -1)})`;
}
