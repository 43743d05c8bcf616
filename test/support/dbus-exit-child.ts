// Run as a child process by the D-Bus store tests: an application on a
// DbusLockStore it does NOT close (closeStore stays false, as for any store
// passed in) takes, waits for and releases locks, then closes the
// application. The test checks the process exits by itself: idle bus
// connections must not keep it alive. Argument: the bus address.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { LockModule, LockService } from 'nestjs-distributed-lock';
import { DbusLockStore } from 'nestjs-distributed-lock/dbus';

const address = process.argv[2];
if (!address) throw new Error('usage: dbus-exit-child <bus address>');

@Module({ imports: [LockModule.forRoot({ store: new DbusLockStore({ address }), ttl: '2s' })] })
class AppModule {}

const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
const locks = app.get(LockService);
const held = await locks.acquire('exit:a');
const waiter = locks.acquire('exit:a', { wait: '5s' });
setTimeout(() => void held.release(), 50);
await (await waiter).release();
await locks.withLock('exit:b', async () => {});
const aborted = new AbortController();
const blocked = await locks.acquire('exit:c');
const abortedWait = locks.acquire('exit:c', { wait: '10s', signal: aborted.signal }).catch(() => 'aborted');
setTimeout(() => aborted.abort(), 20);
await abortedWait;
await blocked.release();
await locks.acquire('exit:kept');
await app.close();
console.log('done');
