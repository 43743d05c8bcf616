import { systemClock, type Clock } from '../../clock.js';
import { InvalidLockOptionError, refuseUnknownOptions } from '../../errors.js';
import { MAX_DURATION_MS } from '../../duration.js';
import { DEFAULT_NAME_PREFIX, validateNamePrefix } from './bus-name.js';

/**
 * Options of {@link DbusLockStore}: which bus, which names, and how leases
 * are timed.
 *
 * @example
 * new DbusLockStore()                                                    // the session bus
 * new DbusLockStore({ address: 'unix:path=/run/dbus/system_bus_socket', namePrefix: 'com.example.Locks' })
 */
export interface DbusLockStoreOptions {
  /**
   * The bus to use, as a D-Bus address (`unix:path=/run/app/bus.sock`).
   * Default: `DBUS_SESSION_BUS_ADDRESS`, the session bus. `unix:path=` and
   * `tcp:` addresses are supported (dbus-next 0.10 has no `unix:abstract=`
   * without the optional `usocket` package).
   */
  address?: string;
  /**
   * Start of every bus name the store owns; each lock is one name below it
   * (see {@link lockBusName}). On the system bus, the policy must let the
   * application's user own names with this prefix. Default
   * `'nestjs_distributed_lock'`.
   */
  namePrefix?: string;
  /**
   * Whether the store ends a lease nobody renewed within its ttl, by
   * releasing the name, as Redis would expire the key. Default `true`.
   *
   * The bus frees a name when its owner's connection closes, so a crashed
   * holder never needs the ttl. It matters when the holder is alive but no
   * longer renews: a lock kept by `lockAtLeastFor`, a lock the core gave up
   * on after the event loop stalled longer than the ttl, a direct
   * `store.acquire` nobody renews, a lock the core abandoned at shutdown
   * (`close()` keeps its name until the lease ends, not longer). With
   * `false` the name stays owned until `release`, `close()` or the end of
   * the process, and those locks block the key on the whole bus until then;
   * renewals still answer from the store's own state.
   */
  enforceTtl?: boolean;
  /**
   * Most bus connections the store opens. Each connection owns or queues for
   * a name at most once, so N callers of this process waiting for one key
   * use N connections, and the bus queues every one of them in FIFO order
   * with the callers of other processes. Past this many, the extra callers
   * for that key wait in this process in FIFO order and join the bus queue
   * as connections free up. Connections open when first needed and stay
   * open until `close()`. Default 8.
   */
  maxConnections?: number;
  /**
   * Milliseconds to wait for the bus to accept a connection or answer a
   * call before the operation fails with `LockStoreError`. Default 5000.
   */
  timeout?: number;
  /** The clock leases are counted on. Default: the system's monotonic clock. */
  clock?: Clock;
}

export const DEFAULT_MAX_CONNECTIONS = 8;
export const DEFAULT_TIMEOUT = 5_000;

/** Options after validation, with defaults applied. */
export interface DbusSettings {
  readonly address: string;
  readonly namePrefix: string;
  readonly enforceTtl: boolean;
  readonly maxConnections: number;
  readonly timeout: number;
  readonly clock: Clock;
}

const KNOWN = new Set(['address', 'namePrefix', 'enforceTtl', 'maxConnections', 'timeout', 'clock']);

/** Validates the options when the store is created, so a mistake stops the app before its first lock. */
export function resolveDbusSettings(options: DbusLockStoreOptions): DbusSettings {
  refuseUnknownOptions(options, KNOWN, (name) => `DbusLockStore option "${name}"`);
  return {
    address: resolveAddress(options.address),
    namePrefix: validateNamePrefix(options.namePrefix ?? DEFAULT_NAME_PREFIX),
    enforceTtl: check('enforceTtl', options.enforceTtl ?? true, (v) => typeof v === 'boolean', 'use true or false'),
    maxConnections: check(
      'maxConnections',
      options.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
      (v) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 1_000,
      'use a whole number from 1 to 1000',
    ),
    timeout: check(
      'timeout',
      options.timeout ?? DEFAULT_TIMEOUT,
      (v) => typeof v === 'number' && v > 0 && v <= MAX_DURATION_MS,
      `use a number of milliseconds above 0 and at most ${MAX_DURATION_MS} (Node fires longer timers at once), such as 5000`,
    ),
    clock: options.clock ?? systemClock,
  };
}

function resolveAddress(address: unknown): string {
  const option = 'DbusLockStore option address';
  if (address === undefined) {
    const session = process.env.DBUS_SESSION_BUS_ADDRESS;
    if (session) return session;
    throw new InvalidLockOptionError(
      option,
      address,
      'DBUS_SESSION_BUS_ADDRESS is not set, so there is no session bus to default to; pass the bus explicitly, ' +
        "such as { address: 'unix:path=/run/dbus/system_bus_socket' } for the system bus or the socket of a private bus",
    );
  }
  if (typeof address !== 'string' || !/^(unix|tcp):[^;]*=/.test(address)) {
    throw new InvalidLockOptionError(option, address, "use a D-Bus address such as 'unix:path=/run/app/bus.sock'");
  }
  return address;
}

function check<T>(name: string, value: T, ok: (value: T) => boolean, expected: string): T {
  if (!ok(value)) throw new InvalidLockOptionError(`DbusLockStore option ${name}`, value, expected);
  return value;
}
