import { Logger } from '@nestjs/common';
import { InvalidLockOptionError, refuseUnknownOptions } from './errors.js';
import { toMilliseconds, type Duration } from './duration.js';
import type { LockStore } from './store/lock-store.js';
import { MemoryLockStore } from './stores/memory/memory.store.js';

/**
 * Options of `LockModule.forRoot` (and the object `forRootAsync`'s factory
 * returns).
 *
 * @example
 * LockModule.forRoot({ store: new RedisLockStore({ url }), ttl: '30s', keyPrefix: 'billing' })
 */
export interface LockModuleOptions {
  /** The store every lock goes to. Default: a new `MemoryLockStore` (one process only). */
  store?: LockStore;
  /** Lease length of a lock unless a call says otherwise. Default 30s. Renewed every ttl/3 while held. */
  ttl?: Duration;
  /** How long `acquire` and `@WithLock` wait for a busy lock unless a call says otherwise. Default 0 (one try). */
  wait?: Duration;
  /**
   * Namespace for every key of this application, so several applications can
   * share one store. Its ':' and '%' are escaped, so no key can reach into
   * another prefix. Default '' (the keys' own namespace).
   */
  keyPrefix?: string;
  /**
   * Close the store at shutdown, once no other running application in this
   * process uses the same store instance. Default: true for the store the
   * module created itself and for a store that opened its own connection
   * (`new RedisLockStore({ url })`), false for a store built on a client you
   * passed in or a `MemoryLockStore` you made (you may keep using them).
   */
  closeStore?: boolean;
  /**
   * How long shutdown waits for the locks still held to be released by the
   * code that holds them (a cron job, a handler, a `withLock` callback) before
   * it stops waiting. A lock still held then is not released and not handed
   * on: it stays renewed while the application finishes closing, then its
   * lease is left to run out in the store, and an error names it. Default
   * 10s: within the 30 s that Kubernetes and most process managers give a
   * process between SIGTERM and SIGKILL, with room left for the HTTP server
   * to drain.
   */
  shutdownTimeout?: Duration;
}

/** Options after validation, with defaults applied. */
export interface LockSettings {
  readonly store: LockStore;
  readonly ttl: number;
  readonly wait: number;
  readonly keyPrefix: string;
  readonly closeStore: boolean;
  readonly shutdownTimeout: number;
}

export const DEFAULT_TTL_MS = 30_000;
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000;

const KNOWN = new Set(['store', 'ttl', 'wait', 'keyPrefix', 'closeStore', 'shutdownTimeout', 'isGlobal']);

/** Validates module options at bootstrap, so a mistake stops the app before the first lock. */
export function resolveSettings(options: LockModuleOptions | undefined): LockSettings {
  const given = options ?? {};
  if (typeof given !== 'object') {
    throw new InvalidLockOptionError('LockModule options', given, 'pass an object such as { ttl: "30s" }');
  }
  refuseUnknownOptions(given, KNOWN, (name) => `LockModule option "${name}"`);
  if (given.store !== undefined && !isStore(given.store)) {
    throw new InvalidLockOptionError(
      'LockModule option "store"',
      given.store,
      'pass a LockStore instance such as new MemoryLockStore() or new RedisLockStore({ url })',
    );
  }
  if (given.keyPrefix !== undefined && typeof given.keyPrefix !== 'string') {
    throw new InvalidLockOptionError('LockModule option "keyPrefix"', given.keyPrefix, 'pass a string');
  }
  if (given.closeStore !== undefined && typeof given.closeStore !== 'boolean') {
    throw new InvalidLockOptionError('LockModule option "closeStore"', given.closeStore, 'pass true or false');
  }
  const created = given.store === undefined;
  if (created && process.env.NODE_ENV === 'production') {
    new Logger('LockModule').warn(
      'No store was configured, so locks use the in-memory store and exclude only callers in this process; ' +
        'pass a shared store (RedisLockStore, EtcdLockStore, DbusLockStore) to LockModule.forRoot for several instances',
    );
  }
  return {
    store: given.store ?? new MemoryLockStore(),
    ttl: given.ttl === undefined ? DEFAULT_TTL_MS : toMilliseconds(given.ttl, 'LockModule option "ttl"'),
    wait: given.wait === undefined ? 0 : toMilliseconds(given.wait, 'LockModule option "wait"', true),
    keyPrefix: given.keyPrefix ?? '',
    closeStore: given.closeStore ?? (created || given.store?.ownsConnection === true),
    shutdownTimeout:
      given.shutdownTimeout === undefined
        ? DEFAULT_SHUTDOWN_TIMEOUT_MS
        : toMilliseconds(given.shutdownTimeout, 'LockModule option "shutdownTimeout"', true),
  };
}

function isStore(value: unknown): value is LockStore {
  const store = value as Partial<LockStore> | null;
  return (
    typeof store === 'object' &&
    store !== null &&
    typeof store.acquire === 'function' &&
    typeof store.release === 'function' &&
    typeof store.renew === 'function' &&
    typeof store.close === 'function' &&
    typeof store.traits === 'object'
  );
}

