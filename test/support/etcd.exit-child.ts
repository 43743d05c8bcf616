// Run as a child process by the etcd exit test: an application that keeps
// taking, holding and waiting for a few locks through @WithLock-style
// withLock calls on an EtcdLockStore it lets the module close, while the
// test kills and restarts the etcd member under it. It reports one JSON line
// per change: `ready`, `failing` (a call failed after one succeeded),
// `recovered` (a lock was held again after failures), and `closed` once the
// test ends its stdin and the application has closed. The test then checks
// the process exits by itself; if it does not, the line `alive` says what
// still holds it.
// Arguments: comma-separated etcd client URLs, the session TTL.
import 'reflect-metadata';
import { setTimeout as sleep } from 'node:timers/promises';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { LockModule, LockService } from 'nestjs-distributed-lock';
import { EtcdLockStore } from 'nestjs-distributed-lock/etcd';

const [hosts, sessionTtl] = process.argv.slice(2);
if (!hosts || !sessionTtl) throw new Error('usage: etcd.exit-child <hosts> <sessionTtl>');

@Module({ imports: [LockModule.forRoot({ store: new EtcdLockStore({ hosts: hosts.split(','), sessionTtl, dialTimeout: '1s' }) })] })
class AppModule {}

const say = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);

const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
const locks = app.get(LockService);
let stopping = false;
let failing = false;
process.stdin.on('end', () => (stopping = true)).resume();

/** Two of these contend for three keys, so there is always a holder and often a waiter. */
async function work(seed: number): Promise<void> {
  for (let round = seed; !stopping; round++) {
    try {
      await locks.withLock(`exit:${round % 3}`, () => sleep(round % 5), { ttl: '1s', wait: '2s' });
      if (failing) say({ event: 'recovered' });
      failing = false;
    } catch {
      if (!failing) say({ event: 'failing' });
      failing = true;
      await sleep(20);
    }
  }
}

say({ event: 'ready' });
await Promise.all([work(0), work(1)]);
await app.close();
say({ event: 'closed' });
// Printed only if something still holds the process 3 s after the close.
setTimeout(() => say({ event: 'alive', resources: process.getActiveResourcesInfo() }), 3_000).unref();
