// Run as a child process by the exit tests: an application takes, waits for,
// aborts and releases locks in every way an application does, then simply
// stops doing work. The tests check the process exits by itself, so nothing
// the library or the store left behind (a timer, a socket, a stream, a
// listener, a pending promise) keeps it alive.
//
// Arguments: [store url, as LOCK_STORE takes it; default memory:] [--close]
// (close the application first). The store is made the way the sample app
// makes it, so the module closes it or not by its usual rule.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { LockModule, LockService } from 'nestjs-distributed-lock';
import { storeFromUrl } from '../../sample-app/src/store-from-url.js';

const url = process.argv.slice(2).find((arg) => !arg.startsWith('--'));

// A short shutdownTimeout: the lock kept below outlives it, and is then left to run out.
@Module({ imports: [LockModule.forRoot({ store: storeFromUrl(url), ttl: '2s', shutdownTimeout: '300ms' })] })
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
// Still held when the application closes: shutdown waits shutdownTimeout for
// its release, then leaves its lease to run out in the store.
await locks.acquire('exit:kept');
if (process.argv.includes('--close')) await app.close();
console.log('done');
