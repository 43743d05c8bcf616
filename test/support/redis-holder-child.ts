// Run as a child process by the Redis fault tests: an application takes a
// lock and holds it (renewing) until the test kills or stops it. It reports on
// stdout: "held <token>" once it holds the lock, "lost <reason>" when the lock
// is lost, then "released <true|false>" after trying to release it.
// Arguments: the Redis URL, the key, the ttl in ms.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { LockLostError, LockModule, LockService } from 'nestjs-distributed-lock';
import { RedisLockStore } from 'nestjs-distributed-lock/redis';

const [url, key, ttl] = process.argv.slice(2);
if (!url || !key || !ttl) throw new Error('usage: redis-holder-child <url> <key> <ttl>');

@Module({ imports: [LockModule.forRoot({ store: new RedisLockStore({ url }), closeStore: true })] })
class AppModule {}

const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
const lock = await app.get(LockService).acquire(key, { ttl: Number(ttl) });
console.log(`held ${lock.fencingToken}`);
lock.signal.addEventListener('abort', async () => {
  const reason = lock.signal.reason as LockLostError;
  console.log(`lost ${reason.reason}`);
  console.log(`released ${await lock.release()}`);
  await app.close();
});
