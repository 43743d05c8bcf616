// Run as a child process by the etcd cluster test: an application takes one
// lock through LockService on an EtcdLockStore and reports, one JSON line at
// a time, what it believes: `acquired` with its fencing token, `held` every
// few milliseconds with the wall-clock time and the lock's deadline (both
// epoch milliseconds), and `lost` with the reason once the lock's signal
// aborts. The test freezes this process (SIGSTOP) past the session TTL and
// compares these lines with when another process got the lock.
// Arguments: comma-separated etcd client URLs, the lock key, the session TTL.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { LockModule, LockService, type LockLostError } from 'nestjs-distributed-lock';
import { EtcdLockStore } from 'nestjs-distributed-lock/etcd';

const [hosts, key, sessionTtl] = process.argv.slice(2);
if (!hosts || !key || !sessionTtl) throw new Error('usage: etcd-holder-child <hosts> <key> <sessionTtl>');

@Module({ imports: [LockModule.forRoot({ store: new EtcdLockStore({ hosts: hosts.split(','), sessionTtl }), ttl: '30s' })] })
class AppModule {}

const say = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);
/** A reading of this process's monotonic clock as wall-clock epoch milliseconds, comparable across processes. */
const epoch = (monotonic: number) => performance.timeOrigin + monotonic;

const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
const lock = await app.get(LockService).acquire(key);
say({ event: 'acquired', token: lock.fencingToken });
const ticker = setInterval(() => {
  // The time is read before asking: the lock was held at `at`.
  const at = Date.now();
  if (lock.held) say({ event: 'held', at, deadline: epoch(lock.deadline) });
}, 5);
lock.signal.addEventListener('abort', () => {
  clearInterval(ticker);
  say({ event: 'lost', reason: (lock.signal.reason as LockLostError).reason, at: Date.now() });
  void app.close().then(() => say({ event: 'closed' }));
});
