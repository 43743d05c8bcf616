import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Injectable, type INestApplication } from '@nestjs/common';
import { WithLock } from 'nestjs-distributed-lock';
import { RedisLockStore } from 'nestjs-distributed-lock/redis';
import { createTestApp } from '../support/app.js';
import { RedisServer } from '../support/redis-server.js';

const exitChild = fileURLToPath(new URL('../support/redis-exit-child.js', import.meta.url));

/** Shared by both applications in this process, as a database would be by two instances. */
const ledger = { active: 0, maxActive: 0, entries: [] as string[] };

@Injectable()
class Ledger {
  @WithLock('ledger:post', { wait: '10s', ttl: '5s' })
  async post(entry: string): Promise<void> {
    ledger.active++;
    ledger.maxActive = Math.max(ledger.maxActive, ledger.active);
    await new Promise((resolve) => setTimeout(resolve, 2));
    ledger.entries.push(entry);
    ledger.active--;
  }
}

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
    const child = spawn(process.execPath, [exitChild, redis.url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`the process did not exit by itself within 15s; output:\n${output}`));
      }, 15_000);
      child.once('exit', (exitCode) => {
        clearTimeout(timer);
        resolve(exitCode);
      });
    });
    assert.equal(code, 0, output);
    assert.match(output, /done/);
  });
});
