import { DBusError } from 'dbus-next';
import { LockStoreError, describeValue } from '../../errors.js';
import { BusTimeoutError, HandshakeTimeoutError } from './bus-connection.js';
import { ConnectionsFullError } from './connection-pool.js';

/**
 * A bus failure as a `LockStoreError` that says what failed, for which key
 * and bus name, on which bus, and what to do about it. The original error is
 * kept as `cause`.
 *
 * @example
 * // The D-Bus lock store could not connect to take lock ":orders:42" (bus name nestjs_distributed_lock._orders_42_…)
 * // on unix:path=/run/app/bus.sock: connect ENOENT /run/app/bus.sock; is the bus daemon running, and is `address` right?
 */
export function describeBusFailure(what: string, key: string, name: string, address: string, error: unknown): LockStoreError {
  const detail = error instanceof Error ? error.message : String(error);
  const hint = advice(error, name);
  return new LockStoreError(
    `The D-Bus lock store could not ${what} lock ${describeValue(key)} (bus name ${name}) on ${address}: ${detail}${hint ? `; ${hint}` : ''}`,
    { cause: error },
  );
}

function advice(error: unknown, name: string): string | undefined {
  if (error instanceof BusTimeoutError) {
    return 'the bus daemon is not answering (stopped, frozen or overloaded); check it, or raise the store\'s `timeout`';
  }
  if (error instanceof HandshakeTimeoutError) {
    return (
      'the daemon may be frozen, or its policy may not let this user connect or receive the answer ' +
      '(a private bus needs <allow receive_sender="*"/>, and <allow user="..."/> for users other than its own)'
    );
  }
  if (error instanceof ConnectionsFullError) return undefined; // its message says what to do
  if (error instanceof DBusError) {
    if (error.type === 'org.freedesktop.DBus.Error.AccessDenied') {
      return (
        `the bus policy does not let this user own ${name}; on the system bus install a policy that allows ` +
        'own_prefix of the store\'s namePrefix for this user (see examples/dbus/nestjs-distributed-lock.conf)'
      );
    }
    if (error.type === 'org.freedesktop.DBus.Error.LimitsExceeded') {
      return 'the bus refused more names for this connection; raise maxConnections or the bus\'s max_names_per_connection';
    }
    return `the bus answered ${error.type}`;
  }
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'ENOENT' || code === 'ECONNREFUSED') return 'is the bus daemon running, and is `address` right?';
  if (code === 'EACCES') return 'this user may not open the bus socket; check its permissions';
  return 'the bus daemon stopped or dropped this client; the store connects again on the next call';
}
