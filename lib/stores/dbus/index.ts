// The `nestjs-distributed-lock/dbus` entry: the only place that loads dbus-next.
export { DbusLockStore } from './dbus.store.js';
export type { DbusLockStoreOptions } from './dbus.options.js';
export { lockBusName, DEFAULT_NAME_PREFIX } from './bus-name.js';
