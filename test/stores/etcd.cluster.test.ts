import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { INestApplication } from '@nestjs/common';
import { LockService, type Lock } from 'nestjs-distributed-lock';
import { EtcdLockStore } from 'nestjs-distributed-lock/etcd';
import { createTestApp } from '../support/app.js';
import { EtcdCluster } from '../support/etcd-cluster.js';
import { spawnReporting } from '../support/run-node.js';
import { waitFor } from '../support/wait-for.js';

const holderChild = fileURLToPath(new URL('../support/etcd-holder-child.js', import.meta.url));

// etcd's default raft timing (100 ms heartbeat, 1 s election timeout): the
// smallest lease is then 2 s, and a loaded machine does not flap leaders.
const SESSION_TTL = '2s';

let cluster: EtcdCluster;
before(async () => {
  cluster = await EtcdCluster.start({ members: 3 });
});
after(async () => {
  await cluster?.stop();
});

/**
 * Several applications (each its own EtcdLockStore, like separate processes)
 * taking one lock in turn, with a shared record of who believes it holds it.
 */
class Contention {
  readonly violations: string[] = [];
  sections = 0;
  errors = 0;
  private readonly active = new Set<Lock>();
  private lastToken = 0;
  private running = true;
  private workers: Promise<void>[] = [];

  constructor(
    private readonly apps: readonly INestApplication[],
    private readonly key: string,
  ) {}

  start(): void {
    this.workers = this.apps.map((app) => this.work(app.get(LockService)));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.workers);
  }

  private async work(locks: LockService): Promise<void> {
    while (this.running) {
      let lock: Lock;
      try {
        lock = await locks.acquire(this.key, { wait: '10s', ttl: '10s' });
      } catch {
        // No leader for a moment, or the wait ran out: back off a little and try again.
        this.errors++;
        await new Promise((resolve) => setTimeout(resolve, 20));
        continue;
      }
      this.enter(lock);
      await new Promise((resolve) => setTimeout(resolve, 1)); // the work under the lock
      this.active.delete(lock);
      await lock.release().catch(() => this.errors++);
    }
  }

  private enter(lock: Lock): void {
    for (const other of this.active) {
      if (other.held) this.violations.push(`token ${lock.fencingToken} granted while token ${other.fencingToken} was still held`);
    }
    if (lock.fencingToken <= this.lastToken) this.violations.push(`token ${lock.fencingToken} after ${this.lastToken}`);
    this.lastToken = lock.fencingToken;
    this.active.add(lock);
    this.sections++;
  }
}

async function apps(count: number): Promise<INestApplication[]> {
  return Promise.all(
    Array.from({ length: count }, () =>
      createTestApp({ lock: { store: new EtcdLockStore({ hosts: cluster.hosts, sessionTtl: SESSION_TTL, dialTimeout: '2s' }) } }),
    ),
  );
}

describe('EtcdLockStore on a 3-node cluster', () => {
  it('never has two holders while the leader is killed during contention, and resumes after the election', async () => {
    const running = await apps(4);
    const contention = new Contention(running, `leader-kill-${randomUUID()}`);
    const leader = await cluster.leader();
    try {
      contention.start();
      await waitFor(() => contention.sections >= 20, 20_000, '20 critical sections before the kill');
      await leader.kill();
      const atKill = contention.sections;
      await waitFor(() => contention.sections >= atKill + 20, 30_000, '20 critical sections after the kill');
    } finally {
      await contention.stop();
      await Promise.all(running.map((app) => app.close()));
    }
    assert.deepEqual(contention.violations, []);
    await cluster.restart(leader);
  });

  it('keeps granting in order while one member is stopped, and after it comes back', async () => {
    const running = await apps(3);
    const contention = new Contention(running, `member-stop-${randomUUID()}`);
    const leader = await cluster.leader();
    const stopped = cluster.members.find((member) => member !== leader);
    if (!stopped) throw new Error('no follower');
    try {
      contention.start();
      await stopped.stop();
      await waitFor(() => contention.sections >= 20, 20_000, '20 critical sections with a member stopped');
      await cluster.restart(stopped);
      const atRestart = contention.sections;
      await waitFor(() => contention.sections >= atRestart + 20, 20_000, '20 critical sections after the member is back');
    } finally {
      await contention.stop();
      await Promise.all(running.map((app) => app.close()));
    }
    assert.deepEqual(contention.violations, []);
  });

  it('counts a frozen holder\'s lock lost before anyone else gets it, reports the loss on waking, and the next token is higher', async () => {
    const key = `frozen-holder-${randomUUID()}`;
    const { proc: child, events: lines, output } = spawnReporting(holderChild, [cluster.hosts.join(','), key, SESSION_TTL]);
    const [app] = await apps(1);
    try {
      await waitFor(() => lines.some((line) => line.event === 'held'), 15_000, () => `the child holds the lock (output: ${output()})`);
      const childToken = Number(lines.find((line) => line.event === 'acquired')?.token);
      const waiting = app?.get(LockService).acquire(key, { wait: '20s' });
      child.kill('SIGSTOP');
      const frozenAt = Date.now();
      const lock = await waiting;
      const acquiredAt = Date.now();
      child.kill('SIGCONT');
      await waitFor(() => lines.some((line) => line.event === 'lost'), 10_000, () => `the child reported the loss (output: ${output()})`);
      const held = lines.filter((line) => line.event === 'held');
      const lastDeadline = Math.max(...held.map((line) => Number(line.deadline)));
      const lost = lines.find((line) => line.event === 'lost');
      assert.ok(held.length > 0, 'the child reported holding the lock');
      assert.ok(held.every((line) => Number(line.at) < acquiredAt), 'the child never believed it held the lock once the next holder had it');
      assert.ok(lastDeadline <= acquiredAt, `the child's deadline (${lastDeadline}) came before the next grant (${acquiredAt})`);
      assert.ok(acquiredAt - frozenAt >= 1_000, 'the next holder waited for the frozen session to expire');
      assert.match(String(lost?.reason), /^(expired|session-lost)$/);
      assert.ok(lock && lock.fencingToken > childToken, `the next token ${lock?.fencingToken} is higher than ${childToken}`);
      await lock?.release();
    } finally {
      child.kill('SIGKILL');
      await app?.close();
    }
  });
});
