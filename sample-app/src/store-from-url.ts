import { MemoryLockStore, type LockStore } from 'nestjs-distributed-lock';
import { DbusLockStore } from 'nestjs-distributed-lock/dbus';
import { EtcdLockStore } from 'nestjs-distributed-lock/etcd';
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
    case 'etcds': {
      // etcd://host:2379[,host2:2379] is the client URL(s) over plain HTTP; etcds:// over TLS.
      const protocol = scheme === 'etcds' ? 'https' : 'http';
      const hosts = (url as string).slice(`${scheme}://`.length).split(',').map((host) => `${protocol}://${host}`);
      return new EtcdLockStore({ hosts });
    }
    default:
      throw new UnsupportedStoreError(`LOCK_STORE has the unknown scheme "${scheme}:"; this version knows memory:, redis://, etcd:// and dbus:`);
  }
}

// Only the scheme is ever printed: the rest of the url may hold a password.
function schemeOf(url: string): string {
  const match = /^([a-z][a-z0-9+.-]*):/i.exec(url);
  if (!match) throw new UnsupportedStoreError('LOCK_STORE is not a url such as memory: or redis://host:6379');
  return match[1].toLowerCase();
}
