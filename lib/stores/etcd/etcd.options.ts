import { Etcd3, type IOptions } from 'etcd3';
import type { Clock } from '../../clock.js';
import { hostBreaker } from './etcd.host-breaker.js';
import { CountedRetry } from './etcd.retry.js';
import { toMilliseconds, type Duration } from '../../duration.js';
import { InvalidLockOptionError, refuseUnknownOptions } from '../../errors.js';

/**
 * Options of {@link EtcdLockStore}: where etcd is (`client`, or `hosts` and
 * how to reach them), and how the store uses it.
 *
 * @example
 * new EtcdLockStore({ client: etcd })                                      // an Etcd3 the app already has
 * new EtcdLockStore({ hosts: ['https://etcd-1:2379', 'https://etcd-2:2379'], auth: { username: 'locks', password },
 *                     credentials: { rootCertificate: readFileSync('ca.pem') }, sessionTtl: '10s' })
 */
export interface EtcdLockStoreOptions {
  /**
   * An `Etcd3` client the application already has (not a namespace of one:
   * use `keyPrefix`). The store uses it as it is and never closes it; it
   * opens two streams on it (keepalive and watch) and ends them in `close()`.
   */
  client?: Etcd3;
  /** Client URLs (`http://host:2379`, `https://…` for TLS) for a client the store creates and closes in `close()`. */
  hosts?: string | string[];
  /** TLS material for the client the store creates, passed to etcd3 as `credentials`. Default: none (system roots for https). */
  credentials?: IOptions['credentials'];
  /** User name and password for the client the store creates, passed to etcd3 as `auth`. Never shown in errors. Default: none. */
  auth?: IOptions['auth'];
  /**
   * How long to wait for etcd to connect, and to answer any one request,
   * before the operation fails with `LockStoreError`. Default 5000 ms.
   */
  dialTimeout?: Duration;
  /**
   * Any other etcd3 options for the client the store creates (`grpcOptions`,
   * `faultHandling`, `defaultCallOptions`), applied last. Default: none, except
   * a per-member circuit breaker that opens for 1 s instead of etcd3's 5 s
   * (see etcd.host-breaker.ts), and etcd3's retry policy with a count of
   * re-sends (etcd.retry.ts). With any `etcdOptions`, the store cannot tell
   * whether a request went out twice, and releases with a compare-and-delete
   * transaction instead of a plain delete.
   */
  etcdOptions?: Omit<IOptions, 'hosts'>;
  /** Start of every key the store writes, to keep them apart from the application's own. Default `'lock/'`. */
  keyPrefix?: string;
  /**
   * Length of the session lease that carries every lock this store holds,
   * rounded up to whole seconds (etcd's unit), at least 1 s; etcd may raise
   * it to its own minimum (about 1.5 × the election timeout). It is how long
   * a crashed or frozen process keeps its locks from others. Default `'10s'`.
   */
  sessionTtl?: Duration;
  /** The clock leases are counted on. Default: the system's monotonic clock. */
  clock?: Clock;
}

export const DEFAULT_KEY_PREFIX = 'lock/';
export const DEFAULT_DIAL_TIMEOUT = 5_000;
export const DEFAULT_SESSION_TTL = 10_000;

const KNOWN = new Set([
  'client',
  'hosts',
  'credentials',
  'auth',
  'dialTimeout',
  'etcdOptions',
  'keyPrefix',
  'sessionTtl',
  'clock',
]);

/** The options with defaults applied and durations parsed. */
export interface Settings {
  readonly keyPrefix: string;
  readonly dialTimeout: number;
  /** Whole seconds, as sent to etcd. */
  readonly sessionTtl: number;
}

/**
 * Stands for a value an options error must not keep. Errors reach logs, and
 * some loggers print every property of an error (`value` included), so an
 * unknown option (often a credential in the wrong place: `{ password }`) and
 * anything that may carry `auth` or key material is never kept.
 */
const NOT_SHOWN = '(not shown)';

/** Checks the options, so a mistake stops the application at start-up with a message that says what to pass. */
export function settingsFrom(options: EtcdLockStoreOptions): Settings {
  const where = (name: string) => `EtcdLockStore option "${name}"`;
  if (typeof options !== 'object' || options === null) {
    throw new InvalidLockOptionError('EtcdLockStore options', hostsShown(options), "pass an object such as { hosts: ['http://127.0.0.1:2379'] }");
  }
  refuseUnknownOptions(options, KNOWN, where, NOT_SHOWN);
  const { client, hosts } = options;
  if (client !== undefined) {
    if (!isClient(client)) {
      throw new InvalidLockOptionError(where('client'), NOT_SHOWN, 'pass an etcd3 client (new Etcd3({ hosts })) or { hosts } instead');
    }
    for (const name of ['hosts', 'credentials', 'auth', 'etcdOptions'] as const) {
      if (options[name] !== undefined) {
        throw new InvalidLockOptionError(
          where(name),
          NOT_SHOWN,
          'pass either a client or the options to create one, not both; configure the client you pass yourself',
        );
      }
    }
  } else if (!validHosts(hosts)) {
    throw new InvalidLockOptionError(
      where('hosts'),
      hostsShown(hosts),
      "pass { client } (an Etcd3) or { hosts: ['http://127.0.0.1:2379'] } (client URLs starting with http:// or https://)",
    );
  }
  if (options.keyPrefix !== undefined && (typeof options.keyPrefix !== 'string' || options.keyPrefix.length === 0)) {
    throw new InvalidLockOptionError(where('keyPrefix'), options.keyPrefix, 'pass a non-empty string such as "locks/"');
  }
  const ttl = options.sessionTtl === undefined ? DEFAULT_SESSION_TTL : toMilliseconds(options.sessionTtl, where('sessionTtl'));
  return {
    keyPrefix: options.keyPrefix ?? DEFAULT_KEY_PREFIX,
    dialTimeout: options.dialTimeout === undefined ? DEFAULT_DIAL_TIMEOUT : toMilliseconds(options.dialTimeout, where('dialTimeout')),
    sessionTtl: Math.max(1, Math.ceil(ttl / 1_000)),
  };
}

/** The client the store talks through, and whether it owns (and closes) it. */
export interface Connection {
  readonly client: Etcd3;
  readonly owned: boolean;
  /** The client's retry policy, when it is the store's own: it tells which requests were sent only once (etcd.retry.ts). */
  readonly retry?: CountedRetry;
}

export function connect(options: EtcdLockStoreOptions, settings: Settings): Connection {
  if (options.client) return { client: options.client, owned: false };
  // Options of the application's may make a request go out twice unseen: its
  // own retry or host policy, an interceptor, a gRPC service config. Without
  // them, the store's policy is the only one that re-sends, and counts; a
  // service config published in DNS for an etcd host name is not looked up.
  const retry = options.etcdOptions === undefined ? new CountedRetry() : undefined;
  const client = new Etcd3({
    hosts: options.hosts as string | string[],
    dialTimeout: settings.dialTimeout,
    ...(options.credentials !== undefined && { credentials: options.credentials }),
    ...(options.auth !== undefined && { auth: options.auth }),
    ...(retry ? { grpcOptions: { 'grpc.service_config_disable_resolution': 1 } } : options.etcdOptions),
    faultHandling: { host: () => hostBreaker(), ...(retry && { global: retry.policy }), ...options.etcdOptions?.faultHandling },
  });
  return { client, owned: true, ...(retry && { retry }) };
}

function validHosts(hosts: unknown): hosts is string | string[] {
  const list = typeof hosts === 'string' ? [hosts] : hosts;
  return Array.isArray(list) && list.length > 0 && list.every((host) => typeof host === 'string' && /^https?:\/\/[^/]+/.test(host));
}

function isClient(value: unknown): value is Etcd3 {
  const client = value as Partial<Etcd3> | null;
  return (
    typeof client === 'object' &&
    client !== null &&
    typeof client.kv?.txn === 'function' &&
    typeof client.leaseClient?.leaseKeepAlive === 'function' &&
    typeof client.watchClient?.watch === 'function'
  );
}

/** For messages: where etcd is, without any credentials a URL might carry. */
export function describeTarget(options: EtcdLockStoreOptions): string {
  if (options.client) return 'the etcd client passed in';
  const hosts = typeof options.hosts === 'string' ? [options.hosts] : (options.hosts ?? []);
  return hosts.map(withoutUserinfo).join(', ');
}

/** A URL without the user name and password it may carry (`etcd://user:secret@host` → `etcd://host`), scheme or not. */
function withoutUserinfo(host: string): string {
  return host.replace(/^([a-z][a-z\d+.-]*:\/\/)?[^/@]*@/i, '$1');
}

/** `hosts` (a URL or a list of them) as an options error may keep it. */
function hostsShown(hosts: unknown): unknown {
  if (Array.isArray(hosts)) return hosts.map(hostsShown);
  return typeof hosts === 'string' ? withoutUserinfo(hosts) : hosts;
}
