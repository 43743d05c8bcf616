// Run as a child process by the etcd module test: an application on an
// EtcdLockStore takes, waits for and releases locks, then closes. The test
// checks the process exits by itself, so the store left no stream, timer or
// listener behind. Argument: comma-separated etcd client URLs.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { LockModule, LockService } from 'nestjs-distributed-lock';
import { EtcdLockStore } from 'nestjs-distributed-lock/etcd';

const hosts = process.argv[2];
if (!hosts) throw new Error('usage: etcd-exit-child <hosts>');

// No closeStore: a store that made its own client is closed with the application.
@Module({ imports: [LockModule.forRoot({ store: new EtcdLockStore({ hosts: hosts.split(',') }), ttl: '2s' })] })
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
