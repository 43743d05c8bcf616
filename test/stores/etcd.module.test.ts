import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { INestApplication } from '@nestjs/common';
import { EtcdLockStore } from 'nestjs-distributed-lock/etcd';
import { createTestApp } from '../support/app.js';
import { ledgerProvider } from '../support/ledger.js';
import { EtcdCluster } from '../support/etcd-cluster.js';
import { assertExitsAfterClose } from '../support/exit-check.js';

const { Ledger, ledger } = ledgerProvider('10s');

describe('LockModule on an EtcdLockStore', () => {
  let etcd: EtcdCluster;
  let apps: INestApplication[] = [];
  before(async () => {
    etcd = await EtcdCluster.start();
  });
  after(async () => {
    await Promise.all(apps.map((app) => app.close()));
    await etcd?.stop();
  });

  it('serialises a @WithLock method across two applications with their own stores, in fencing-token order', async () => {
    apps = await Promise.all([0, 1].map(() => createTestApp({ lock: { store: new EtcdLockStore({ hosts: etcd.hosts }) }, providers: [Ledger] })));
    const calls = apps.flatMap((app, a) => Array.from({ length: 10 }, (_, i) => app.get(Ledger).post(`${a}:${i}`)));
    await Promise.all(calls);
    assert.equal(ledger.entries.length, 20);
    assert.equal(ledger.maxActive, 1, 'never two posts at once');
    assert.deepEqual(ledger.fences, [...ledger.fences].sort((x, y) => x - y), 'each post ran with a higher token than the one before');
  });

  it('lets a process that used the store and closed the application exit by itself', async () => {
    await assertExitsAfterClose([etcd.storeUrl]);
  });

  it('lets a process exit after closing an application whose store was made on its own client (closeStore: false)', async () => {
    await assertExitsAfterClose([etcd.storeUrl, '--client']);
  });

  it('lets a process exit after closing two applications that share one store', async () => {
    await assertExitsAfterClose([etcd.storeUrl, '--shared']);
  });
});
