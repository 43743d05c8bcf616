import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DbusDaemon } from '../support/dbus-daemon.js';
import { EtcdCluster } from '../support/etcd-cluster.js';
import { RedisServer } from '../support/redis-server.js';
import { spawnReporting, type ReportingChild } from '../support/run-node.js';
import { waitFor } from '../support/wait-for.js';

/**
 * A rolling deploy, with real processes on real servers: instance A is inside
 * a @WithLock section when it is told to stop (app.close(), or SIGTERM with
 * enableShutdownHooks), while instance B waits for the same key. B must enter
 * only once A's section has ended, and A must exit by itself. Times are the
 * host's monotonic clock, comparable across the processes.
 */
const child = fileURLToPath(new URL('../support/shutdown-child.js', import.meta.url));

interface Instance extends ReportingChild {
  event(name: string): Record<string, unknown> | undefined;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function instance(url: string, key: string, sectionMs: number, shutdownTimeout: number, ttl: number): Instance {
  const started = spawnReporting(child, [url, key, String(sectionMs), String(shutdownTimeout), String(ttl)]);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    started.proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { ...started, exited, event: (name) => started.events.find((e) => e.event === name) };
}

const at = (inst: Instance, name: string) => Number(inst.event(name)?.at);

let deploys = 0;

async function deploy(url: string, how: 'close' | 'SIGTERM', sectionMs: number, shutdownTimeout: number, ttl: number) {
  const key = `charge:${++deploys}`;
  const a = instance(url, key, sectionMs, shutdownTimeout, ttl);
  const b = instance(url, key, sectionMs, shutdownTimeout, ttl);
  try {
    await waitFor(() => !!a.event('ready') && !!b.event('ready'), 15_000, () => `both ready:\n${a.output()}\n${b.output()}`);
    a.proc.stdin.write('run\n');
    await waitFor(() => !!a.event('enter'), 5_000, () => `a entered:\n${a.output()}`);
    b.proc.stdin.write('run\n');
    await new Promise((resolve) => setTimeout(resolve, 300));
    if (how === 'close') a.proc.stdin.write('close\n');
    else a.proc.kill('SIGTERM');
    const exit = await Promise.race([a.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`a did not exit:\n${a.output()}`)), ttl + sectionMs + 10_000))]);
    await waitFor(() => !!b.event('leave'), ttl + sectionMs + 10_000, () => `b ran its section:\n${b.output()}`);
    return { a, b, exit };
  } finally {
    // B closes as an instance does, so its lock is released rather than left to its lease.
    b.proc.stdin.write('close\n');
    await Promise.race([b.exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
    a.proc.kill('SIGKILL');
    b.proc.kill('SIGKILL');
  }
}

let redis: RedisServer;
let etcd: EtcdCluster;
let bus: DbusDaemon;
before(async () => {
  [redis, etcd, bus] = await Promise.all([RedisServer.start(), EtcdCluster.start(), DbusDaemon.start()]);
});
after(async () => {
  await Promise.all([redis?.stop(), etcd?.stop(), bus?.stop()]);
});

const stores = [
  { name: 'Redis', url: () => redis.url },
  { name: 'etcd', url: () => etcd.storeUrl },
  { name: 'D-Bus', url: () => `dbus:${bus.address}` },
];

for (const store of stores) {
  describe(`a rolling deploy on ${store.name}`, () => {
    for (const how of ['close', 'SIGTERM'] as const) {
      it(`lets the section finish before the next instance enters when the holder is stopped by ${how} mid-section, and the holder exits`, async () => {
        const { a, b, exit } = await deploy(store.url(), how, 1_000, 5_000, 3_000);
        assert.ok(at(b, 'enter') >= at(a, 'leave'), `b entered ${(at(a, 'leave') - at(b, 'enter')).toFixed(1)}ms before a left:\n${a.output()}\n${b.output()}`);
        if (how === 'close') assert.ok(at(a, 'closed') >= at(a, 'leave'), 'close() resolved after the section ended');
        else assert.equal(exit.signal, 'SIGTERM', 'Nest re-raises SIGTERM once closed');
        assert.equal(a.events.filter((e) => e.event === 'refused').length, 0, a.output());
      });
    }
  });
}

for (const store of stores) {
  describe(`a section that outlives shutdownTimeout on ${store.name}`, () => {
    it('keeps the next instance out until its lease runs out, so nobody overlaps it', async () => {
      // Section 1.2 s; shutdown waits 200 ms, then leaves the lease (up to 3 s) to run out.
      const { a, b } = await deploy(store.url(), 'close', 1_200, 200, 3_000);
      assert.ok(at(b, 'enter') >= at(a, 'leave'), `b entered ${(at(a, 'leave') - at(b, 'enter')).toFixed(1)}ms before a left:\n${a.output()}\n${b.output()}`);
      assert.ok(at(a, 'closed') < at(a, 'leave'), 'close() stopped waiting at shutdownTimeout');
      assert.match(a.output(), /charge:\d+.*shutdownTimeout/, 'an error names the lock');
    });
  });
}
