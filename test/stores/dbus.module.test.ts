import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Injectable, type INestApplication } from '@nestjs/common';
import { WithLock } from 'nestjs-distributed-lock';
import { DbusLockStore } from 'nestjs-distributed-lock/dbus';
import { createTestApp } from '../support/app.js';
import { DbusDaemon } from '../support/dbus-daemon.js';

/** Shared by both applications in this process, as a database would be by two instances. */
const ledger = { active: 0, maxActive: 0, entries: [] as string[] };

@Injectable()
class Ledger {
  @WithLock('ledger:post', { wait: '20s', ttl: '5s' })
  async post(entry: string): Promise<void> {
    ledger.active++;
    ledger.maxActive = Math.max(ledger.maxActive, ledger.active);
    await new Promise((resolve) => setTimeout(resolve, 2));
    ledger.entries.push(entry);
    ledger.active--;
  }
}

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
