import { MemoryLockStore, type LockStore } from 'nestjs-distributed-lock';
import { DbusLockStore } from 'nestjs-distributed-lock/dbus';
import { RedisLockStore } from 'nestjs-distributed-lock/redis';

/** LOCK_STORE names a store this version cannot make. */
export class UnsupportedStoreError extends Error {
  override readonly name = 'UnsupportedStoreError';
}

/**
 * The lock store a LOCK_STORE url names (unset: the embedded memory store).
 * Adding a store is one more case here.
 */
export function storeFromUrl(url: string | undefined): LockStore {
  const scheme = url ? schemeOf(url) : 'memory';
  switch (scheme) {
    case 'memory':
      return new MemoryLockStore();
    case 'redis':
    case 'rediss':
      return new RedisLockStore({ url: url as string });
    case 'dbus': {
      // dbus: alone is the session bus; dbus:unix:path=/run/app/bus.sock a given bus.
      const address = (url as string).slice('dbus:'.length);
      return new DbusLockStore(address ? { address } : {});
    }
    case 'etcd':
      throw new UnsupportedStoreError(
        `LOCK_STORE asks for the ${scheme} lock store, which this version of nestjs-distributed-lock does not have yet; ` +
          'unset LOCK_STORE (or set it to memory:) to use the embedded store',
      );
    default:
      throw new UnsupportedStoreError(`LOCK_STORE has the unknown scheme "${scheme}:"; this version knows memory:, redis:// and dbus:`);
  }
}

// Only the scheme is ever printed: the rest of the url may hold a password.
function schemeOf(url: string): string {
  const match = /^([a-z][a-z0-9+.-]*):/i.exec(url);
  if (!match) throw new UnsupportedStoreError('LOCK_STORE is not a url such as memory: or redis://host:6379');
  return match[1].toLowerCase();
}
