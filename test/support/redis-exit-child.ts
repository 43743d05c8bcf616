// Run as a child process by the Redis module test: an application on a
// RedisLockStore takes, waits for and releases locks, then closes. The test
// checks the process exits by itself, so the store left no connection, timer
// or listener behind. Argument: the Redis URL.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { LockModule, LockService } from 'nestjs-distributed-lock';
import { RedisLockStore } from 'nestjs-distributed-lock/redis';

const url = process.argv[2];
if (!url) throw new Error('usage: redis-exit-child <url>');

@Module({ imports: [LockModule.forRoot({ store: new RedisLockStore({ url }), ttl: '2s' })] })
class AppModule {}

const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
const locks = app.get(LockService);
const held = await locks.acquire('exit:a');
const waiter = locks.acquire('exit:a', { wait: '5s' });
setTimeout(() => void held.release(), 50);
await (await waiter).release();
await locks.withLock('exit:b', async () => {});
const busy = await locks.acquire('exit:c');
await locks.tryAcquire('exit:c', { wait: '100ms' });
await busy.release();
const aborted = new AbortController();
const blocked = await locks.acquire('exit:d');
const abortedWait = locks.acquire('exit:d', { wait: '10s', signal: aborted.signal }).catch(() => 'aborted');
setTimeout(() => aborted.abort(), 20);
await abortedWait;
await blocked.release();
await app.close();
console.log('done');
