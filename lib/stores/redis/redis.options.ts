import type { ConnectionOptions } from 'node:tls';
import { Redis, type Cluster, type RedisOptions } from 'ioredis';
import type { Clock } from '../../clock.js';
import { MAX_DURATION_MS } from '../../duration.js';
import { InvalidLockOptionError, refuseUnknownOptions } from '../../errors.js';

/**
 * Options of {@link RedisLockStore}: where Redis is (`client` or `url`, or
 * `redisOptions` alone for Sentinel), and how the store uses it.
 *
 * @example
 * new RedisLockStore({ client: app.get(Redis) })                    // a client the app already has
 * new RedisLockStore({ url: 'rediss://locks.internal:6380/0', username: 'locks', password: process.env.REDIS_PASSWORD })
 * new RedisLockStore({ redisOptions: { sentinels: [{ host: 's1', port: 26379 }], name: 'mymaster' } })
 */
export interface RedisLockStoreOptions {
  /**
   * An ioredis `Redis` (standalone or Sentinel) or `Cluster` the application
   * already has. The store uses it as it is and never closes it; it opens one
   * more connection like it (`client.duplicate()`) to be woken when a lock
   * is handed over, and closes that one in `close()`.
   */
  client?: Redis | Cluster;
  /**
   * `redis://[[user]:password@]host[:port][/db]` or `rediss://…` for TLS. The
   * store creates its own client (connecting on first use) and closes it in
   * `close()`.
   */
  url?: string;
  /** ACL user name for the client the store creates. Default: from `url`, else none. */
  username?: string;
  /** Password for the client the store creates. Default: from `url`, else none. Never shown in errors. */
  password?: string;
  /** TLS options (`true` for the system's defaults) for the client the store creates. Default: on for `rediss://`, else off. */
  tls?: ConnectionOptions | true;
  /**
   * Any other ioredis options for the client the store creates, applied last
   * (for Sentinel: `{ sentinels, name }` without a `url`). Default: none.
   */
  redisOptions?: RedisOptions;
  /**
   * Start of every key and channel the store uses, to keep them apart from
   * the application's own. May not contain '{' or '}' (the store puts each
   * lock's name in a hash tag). Default `'lock:'`.
   */
  keyPrefix?: string;
  /**
   * How long to wait for Redis to connect, or to answer a command, before the
   * operation fails with `LockStoreError`. Default 5000 ms.
   */
  connectTimeout?: number;
  /**
   * After each grant, wait until this many replicas confirm they have the
   * lock (Redis `WAIT`), so a fail-over to one of them cannot forget it. If
   * fewer confirm within `timeout` ms, the lock is released again and the
   * acquire fails with `LockStoreError`. Costs one more round trip per grant
   * plus the replication delay. Not available with a Cluster client. Default:
   * off.
   */
  waitForReplicas?: { readonly replicas: number; readonly timeout: number };
  /** The clock leases are counted on. Default: the system's monotonic clock. */
  clock?: Clock;
}

export const DEFAULT_KEY_PREFIX = 'lock:';
export const DEFAULT_CONNECT_TIMEOUT = 5_000;

const KNOWN = new Set([
  'client',
  'url',
  'username',
  'password',
  'tls',
  'redisOptions',
  'keyPrefix',
  'connectTimeout',
  'waitForReplicas',
  'clock',
]);

/** The client the store talks through, whether it owns it, and how errors name it. */
export interface Connection {
  readonly client: Redis | Cluster;
  readonly owned: boolean;
  /** Where Redis is, for error messages: never with a password. */
  readonly target: string;
}

/** Checks the options, so a mistake stops the application at start-up with a message that says what to pass. */
export function validateOptions(options: RedisLockStoreOptions): void {
  const where = (name: string) => `RedisLockStore option "${name}"`;
  if (typeof options !== 'object' || options === null) {
    throw new InvalidLockOptionError('RedisLockStore options', options, 'pass an object such as { url: "redis://127.0.0.1:6379" }');
  }
  refuseUnknownOptions(options, KNOWN, where);
  if (options.client !== undefined && (options.url !== undefined || options.redisOptions !== undefined)) {
    throw new InvalidLockOptionError(
      where('client'),
      options.client,
      'pass either a client or the options to create one (url, redisOptions), not both; configure the client you pass yourself',
    );
  }
  if (options.client !== undefined && !isClient(options.client)) {
    throw new InvalidLockOptionError(where('client'), options.client, 'pass an ioredis Redis or Cluster instance (new Redis(url), new Cluster(nodes))');
  }
  if (options.client === undefined && options.url === undefined && options.redisOptions === undefined) {
    throw new InvalidLockOptionError(
      'RedisLockStore options',
      options,
      'pass { client } (an ioredis Redis or Cluster) or { url: "redis://host:6379/0" } (or { redisOptions: { sentinels, name } } for Sentinel)',
    );
  }
  if (options.url !== undefined && (typeof options.url !== 'string' || !/^rediss?:\/\//.test(options.url))) {
    throw new InvalidLockOptionError(where('url'), redactUrl(options.url), 'pass a URL such as "redis://127.0.0.1:6379/0" or "rediss://…" for TLS');
  }
  if (options.keyPrefix !== undefined && (typeof options.keyPrefix !== 'string' || /[{}]/.test(options.keyPrefix))) {
    throw new InvalidLockOptionError(
      where('keyPrefix'),
      options.keyPrefix,
      "pass a string without '{' or '}' (each lock's name goes in a hash tag, so that a lock's keys share a Cluster slot), such as \"locks:\"",
    );
  }
  if (options.connectTimeout !== undefined && !isTimeout(options.connectTimeout)) {
    throw new InvalidLockOptionError(where('connectTimeout'), options.connectTimeout, `pass a number of milliseconds above 0 and at most ${MAX_TIMEOUT} (Node fires longer timers at once), such as 5000`);
  }
  const replicas = options.waitForReplicas;
  if (replicas !== undefined) {
    if (typeof replicas !== 'object' || replicas === null || !Number.isInteger(replicas.replicas) || replicas.replicas < 1 || !isTimeout(replicas.timeout)) {
      throw new InvalidLockOptionError(where('waitForReplicas'), replicas, `pass { replicas: 1, timeout: 100 }: at least 1 replica, and a timeout in milliseconds above 0 and at most ${MAX_TIMEOUT}`);
    }
    if (options.client?.isCluster) {
      throw new InvalidLockOptionError(where('waitForReplicas'), replicas, 'remove it: waiting for replicas is not available with a Cluster client yet');
    }
  }
}

/** The store's client: the one passed in, or a new one it owns (connecting on first use). */
export function connect(options: RedisLockStoreOptions, connectTimeout: number): Connection {
  if (options.client) return { client: options.client, owned: false, target: describeClient(options.client) };
  const settings: RedisOptions = {
    lazyConnect: true,
    connectTimeout,
    ...(options.username !== undefined && { username: options.username }),
    ...(options.password !== undefined && { password: options.password }),
    ...(options.tls !== undefined && { tls: options.tls === true ? {} : options.tls }),
    ...options.redisOptions,
  };
  const client = options.url === undefined ? new Redis(settings) : new Redis(options.url, settings);
  return { client, owned: true, target: options.url === undefined ? describeClient(client) : redactUrl(options.url) };
}

/** The URL without user name or password. */
function redactUrl(url: unknown): string {
  if (typeof url !== 'string') return String(url);
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname === '/' ? '' : parsed.pathname}`;
  } catch {
    return 'the Redis URL given (not shown: it did not parse and may hold a password)';
  }
}

function describeClient(client: Redis | Cluster): string {
  if (client.isCluster) return 'the Redis Cluster client';
  const { host, port, db, sentinels, name } = (client as Redis).options;
  if (sentinels?.length) return `Sentinel master "${name ?? ''}"`;
  return `redis://${host}:${port}${db ? `/${db}` : ''}`;
}

function isClient(value: unknown): value is Redis | Cluster {
  const client = value as Partial<Redis> | null;
  return typeof client === 'object' && client !== null && typeof client.evalsha === 'function' && typeof client.duplicate === 'function';
}

/**
 * A request's timer runs for connectTimeout plus the replicas' timeout, and
 * Node fires a timer longer than 2^31-1 ms at once: each gets half.
 */
const MAX_TIMEOUT = Math.floor(MAX_DURATION_MS / 2);

function isTimeout(value: unknown): value is number {
  return typeof value === 'number' && value > 0 && value <= MAX_TIMEOUT;
}
