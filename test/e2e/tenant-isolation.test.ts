import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Redis } from 'ioredis';
import { LockService } from 'nestjs-distributed-lock';
import { RedisLockStore } from 'nestjs-distributed-lock/redis';
import { AppModule } from '../../sample-app/src/app.module.js';
import { RedisServer } from '../support/redis-server.js';

/** Order ids an attacker could send: separators, wildcards, traversal, NUL, other tenants' names, very long. */
const HOSTILE = [
  'a:b',
  '*',
  '../..',
  '../tenant-b:orders:1',
  'tenant-b:orders:1',
  '}{lock:{tenant-b:orders:1}',
  '\u0000nul',
  'x%3Ay',
  'ключ🔒',
  'y'.repeat(1000),
];

/** The lock name inside `lock:{…}:fence`, with the store's escapes (`%7D` for `}`, `%25` for `%`) undone. */
function decodeName(key: string): string {
  return key
    .slice('lock:{'.length, -'}:fence'.length)
    .replace(/%7D/g, '}')
    .replace(/%25/g, '%');
}

describe('a lock key taken from a request (the sample app\'s order id)', () => {
  let redis: RedisServer;
  let admin: Redis;
  let store: RedisLockStore;
  let tenantA: INestApplication;
  let tenantB: INestApplication;
  let urlA: string;

  before(async () => {
    redis = await RedisServer.start();
    admin = new Redis(redis.port, '127.0.0.1');
    store = new RedisLockStore({ url: redis.url });
    const start = async (tenant: string) => {
      const app = await NestFactory.create(AppModule.forRoot({ instance: tenant, store, keyPrefix: tenant }), { logger: false });
      await app.listen(0, '127.0.0.1');
      return app;
    };
    tenantA = await start('tenant-a');
    tenantB = await start('tenant-b');
    urlA = `http://127.0.0.1:${(tenantA.getHttpServer().address() as { port: number }).port}`;
  });
  after(async () => {
    await tenantA.close();
    await tenantB.close();
    await store.close();
    admin.disconnect();
    await redis.stop();
  });

  it('stays inside its tenant\'s prefix for every hostile id, and never blocks another tenant', async () => {
    const other = await tenantB.get(LockService).acquire('orders:1', { ttl: '30s' });
    try {
      for (const id of HOSTILE) {
        const response = await fetch(`${urlA}/orders/${encodeURIComponent(id)}/pay`, { method: 'POST' });
        assert.equal(response.status, 201, `order id ${JSON.stringify(id.slice(0, 40))}: ${await response.text()}`);
      }
      const names = new Set((await admin.keys('lock:*:fence')).map((key) => decodeName(key)));
      for (const id of HOSTILE) assert.ok(names.has(`tenant-a:orders:${id}`), `the lock of order ${JSON.stringify(id.slice(0, 40))} is tenant A's`);
      const ownOfB = new Set(['tenant-b:orders:1', 'tenant-b:reports:tick', 'tenant-b:inventory:stock']);
      for (const name of names) {
        assert.ok(name.startsWith('tenant-a:') || ownOfB.has(name), `store key ${JSON.stringify(name.slice(0, 60))} belongs to its tenant`);
      }
      assert.equal(other.held, true, 'tenant B\'s lock was never touched');
    } finally {
      await other.release();
    }
  });

  it('answers 400 for an id that is not valid UTF-8 and takes no lock', async () => {
    const before = (await admin.keys('lock:*')).length;
    const response = await fetch(`${urlA}/orders/%ED%A0%80/pay`, { method: 'POST' });
    assert.equal(response.status, 400);
    assert.equal((await admin.keys('lock:*')).length, before);
  });
});
