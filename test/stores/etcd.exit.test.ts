import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Etcd3 } from 'etcd3';
import { EtcdLockStore } from 'nestjs-distributed-lock/etcd';
import { ManualClock } from 'nestjs-distributed-lock/testing';
import { EtcdCluster } from '../support/etcd-cluster.js';
import { spawnReporting } from '../support/run-node.js';
import { grant, request } from '../support/store-requests.js';
import { waitFor } from '../support/wait-for.js';

/** A keepalive stream as etcd3 hands it out: it answers every keepalive at once. */
class FakeKeepAliveStream extends EventEmitter {
  closed = false;

  write(request: { ID: string }): void {
    queueMicrotask(() => this.emit('data', { ID: request.ID, TTL: '3' }));
  }

  end(): void {
    this.closed = true;
  }

  cancel(): void {
    this.closed = true;
  }
}

/**
 * Just enough of an etcd3 client for a store that takes a lock, gives it
 * back and keeps its session: every request succeeds, and keepalive streams
 * open only while etcd is up.
 */
function fakeEtcd() {
  const streams: FakeKeepAliveStream[] = [];
  let up = true;
  const client = {
    kv: { txn: async () => ({ succeeded: true, header: { revision: '5' }, responses: [] }) },
    leaseClient: {
      leaseGrant: async () => ({ ID: '7', TTL: '3' }),
      leaseRevoke: async () => ({}),
      leaseKeepAlive: async () => {
        if (!up) throw new Error('14 UNAVAILABLE: No connection established');
        const stream = new FakeKeepAliveStream();
        streams.push(stream);
        return stream;
      },
    },
    watchClient: { watch: async () => new EventEmitter() },
  };
  return {
    client: client as unknown as Etcd3,
    /** Streams handed out that nobody ended or cancelled: each is a gRPC call that keeps its connection, and the process, alive. */
    open: () => streams.filter((stream) => !stream.closed).length,
    /** etcd goes away: open streams fail, new ones cannot be opened. */
    down() {
      up = false;
      for (const stream of streams) if (!stream.closed) stream.emit('error', new Error('14 UNAVAILABLE: Connection dropped'));
    },
    up() {
      up = true;
    },
  };
}

describe('EtcdLockStore keepalive stream', () => {
  it('keeps one keepalive stream open when a beat reopens it while a retry is pending, and none after close', async () => {
    const clock = new ManualClock();
    const etcd = fakeEtcd();
    const store = new EtcdLockStore({ client: etcd.client, clock, sessionTtl: '3s' }); // a keepalive every second
    const result = await store.acquire({ key: 'k', owner: 'o', ttl: 30_000, wait: 0, onLost: () => {} });
    assert.equal(result.acquired, true);
    await store.release('k', 'o');
    assert.equal(etcd.open(), 1);

    // The stream fails at 100 ms and reopening it fails, retried after 25,
    // 50, ... 800 ms (next at 1875 ms); the beat at 1 s tries too. etcd is
    // back at 1150 ms: whichever reopens the stream, no other try may open a
    // second one.
    await clock.advance(100);
    etcd.down();
    await clock.advance(1_050);
    etcd.up();
    await clock.advance(1_000);
    assert.equal(etcd.open(), 1, 'a second keepalive stream was opened over the first, which nothing will end');

    await store.close();
    assert.equal(etcd.open(), 0, 'close left a keepalive stream open');
    assert.equal(clock.pending, 0, 'close left a timer behind');
  });
});

const child = fileURLToPath(new URL('../support/etcd.exit-child.js', import.meta.url));

describe('EtcdLockStore on a real member, for an application that must exit', () => {
  let etcd: EtcdCluster;
  before(async () => (etcd = await EtcdCluster.start()));
  after(() => etcd?.stop());

  it('ends a wait whose signal aborts while its key is being queued at once, not after the whole wait', async () => {
    const holder = new EtcdLockStore({ hosts: etcd.hosts });
    const other = new EtcdLockStore({ hosts: etcd.hosts });
    try {
      await grant(holder, request('abort', { owner: 'holder' }));
      const controller = new AbortController();
      const started = performance.now();
      const waiting = other.acquire(request('abort', { wait: 10_000, signal: controller.signal }));
      controller.abort(); // the session's lease and the queue transaction are on their way
      assert.deepEqual(await waiting, { acquired: false });
      // The wait's timer keeps the process alive: it must not run on.
      assert.ok(performance.now() - started < 2_000, `the aborted wait ended after ${Math.round(performance.now() - started)}ms`);
      // Its key left the queue: once the holder releases, a single try gets the lock.
      await holder.release('abort', 'holder');
      await grant(holder, request('abort'));
    } finally {
      await Promise.all([holder.close(), other.close()]);
    }
  });

  it('exits by itself after closing, having held and waited for locks through two restarts', { timeout: 90_000 }, async () => {
    const [member] = etcd.members;
    assert.ok(member);
    const { proc, events, output } = spawnReporting(child, [etcd.hosts.join(','), '15s']);
    // 'close' comes after the last line of output, unlike 'exit'.
    const exited = new Promise<number | null>((resolve) => proc.once('close', (code) => resolve(code)));
    /** Waits, bounded, for the child to report `event` after its first `since` lines; fails with everything it said. */
    const told = (event: string, since = 0, within = 20_000) =>
      waitFor(
        () => {
          if (proc.exitCode !== null) throw new Error(`the application exited before reporting "${event}"; it said:\n${output()}`);
          return events.slice(since).some((line) => line.event === event);
        },
        within,
        () => `the application reporting "${event}" (it said:\n${output()})`,
      );
    try {
      await told('ready');
      for (let restart = 0; restart < 2; restart++) {
        // Down past a keepalive beat (every 15s / 3), so the beat tries to
        // reopen the stream while a retry is pending, and back well within
        // the session's lease, so the session lives through it.
        const down = events.length;
        await member.kill();
        await told('failing', down);
        await sleep(5_200);
        const back = events.length;
        await etcd.restart(member);
        await told('recovered', back);
      }
      // Any retry left over runs (one a second) on the revived member.
      await sleep(2_000);
      proc.stdin.end(); // the application stops working and closes
      const code = await Promise.race([exited, sleep(15_000, 'running', { ref: false })]);
      assert.equal(code, 0, `the application did not close and exit by itself within 15 s; it said:\n${output()}`);
      assert.ok(events.some((line) => line.event === 'closed'), output());
    } finally {
      proc.kill('SIGKILL');
    }
  });
});
