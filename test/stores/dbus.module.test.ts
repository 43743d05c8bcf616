import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { INestApplication } from '@nestjs/common';
import { DbusLockStore } from 'nestjs-distributed-lock/dbus';
import { createTestApp } from '../support/app.js';
import { ledgerProvider } from '../support/ledger.js';
import { DbusDaemon } from '../support/dbus-daemon.js';

const { Ledger, ledger } = ledgerProvider('20s');

describe('LockModule on a DbusLockStore', () => {
  let bus: DbusDaemon;
  let apps: INestApplication[] = [];
  before(async () => {
    bus = await DbusDaemon.start();
  });
  after(async () => {
    await Promise.all(apps.map((app) => app.close()));
    await bus.stop();
  });

  it('serialises a @WithLock method across two applications, each with its own store', async () => {
    apps = await Promise.all(
      [0, 1].map(() => createTestApp({ lock: { store: new DbusLockStore({ address: bus.address }), closeStore: true }, providers: [Ledger] })),
    );
    const calls = apps.flatMap((app, a) => Array.from({ length: 12 }, (_, i) => app.get(Ledger).post(`${a}:${i}`)));
    await Promise.all(calls);
    assert.equal(ledger.entries.length, 24);
    assert.equal(ledger.maxActive, 1, 'never two posts at once');
  });
});
