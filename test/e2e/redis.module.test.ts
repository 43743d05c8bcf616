import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { INestApplication } from '@nestjs/common';
import { RedisLockStore } from 'nestjs-distributed-lock/redis';
import { createTestApp } from '../support/app.js';
import { ledgerProvider } from '../support/ledger.js';
import { RedisServer } from '../support/redis-server.js';
import { assertExitsAfterClose } from '../support/exit-check.js';

const { Ledger, ledger } = ledgerProvider('10s');

describe('LockModule on a RedisLockStore', () => {
  let redis: RedisServer;
  let apps: INestApplication[] = [];
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await Promise.all(apps.map((app) => app.close()));
    await redis.stop();
  });

  it('serialises a @WithLock method across two applications with their own connections', async () => {
    apps = await Promise.all(
      [0, 1].map(() =>
        createTestApp({ lock: { store: new RedisLockStore({ url: redis.url }) }, providers: [Ledger] }),
      ),
    );
    const calls = apps.flatMap((app, a) => Array.from({ length: 10 }, (_, i) => app.get(Ledger).post(`${a}:${i}`)));
    await Promise.all(calls);
    assert.equal(ledger.entries.length, 20);
    assert.equal(ledger.maxActive, 1, 'never two posts at once');
  });

  it('lets a process that used the store and closed the application exit by itself', async () => {
    await assertExitsAfterClose([redis.url]);
  });

  it('lets a process exit after closing an application whose store was made on its own client (closeStore: false)', async () => {
    await assertExitsAfterClose([redis.url, '--client']);
  });

  it('lets a process exit after closing two applications that share one store', async () => {
    await assertExitsAfterClose([redis.url, '--shared']);
  });
});
