// The `nestjs-distributed-lock/etcd` entry: the only place that loads etcd3.
export { EtcdLockStore } from './etcd.store.js';
export type { EtcdLockStoreOptions } from './etcd.options.js';
