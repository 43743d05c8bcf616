// Run as a child process by process-exit.test: takes and releases locks in
// every way an application does, then simply stops doing work. The test
// checks the process exits by itself, so nothing the library left behind
// (a timer, a listener, a pending promise) keeps it alive.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { LockModule, LockService } from 'nestjs-distributed-lock';

@Module({ imports: [LockModule.forRoot({ ttl: '2s' })] })
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
aborted.abort();
await abortedWait;
await blocked.release();
if (process.argv.includes('--close')) await app.close();
console.log('done');
