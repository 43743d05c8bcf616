import { after, before, describe, it } from 'node:test';
import { runLockStoreContract } from 'nestjs-distributed-lock/testing';
import { RedisLockStore } from 'nestjs-distributed-lock/redis';
import { RedisServer } from '../support/redis-server.js';

let redis: RedisServer;
before(async () => {
  redis = await RedisServer.start();
});
after(() => redis.stop());

runLockStoreContract({ describe, it }, { name: 'RedisLockStore', createStore: () => new RedisLockStore({ url: redis.url }) });
