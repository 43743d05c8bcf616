// The `nestjs-distributed-lock/redis` entry: the only place that loads ioredis.
export { RedisLockStore } from './redis.store.js';
export type { RedisLockStoreOptions } from './redis.options.js';
