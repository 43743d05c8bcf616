import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runUntilExit } from '../support/run-node.js';

const main = fileURLToPath(new URL('../../checker/main.js', import.meta.url));

/** Runs the checker; it is killed 10 s before the test's own timeout, so a hung run fails with its output. */
const check = (args: string[], testTimeout: number) => runUntilExit(main, args, testTimeout - 10_000);

describe('the mutual-exclusion checker', () => {
  it('finds overlaps, stale writes and lost updates when the lock does not exclude across processes', { timeout: 120_000 }, async () => {
    const { code, output } = await check(['--store', 'memory-per-process', '--seconds', '6', '--seed', '7'], 120_000);
    assert.equal(code, 1, output);
    assert.match(output, /FAIL overlapping sections, earlier holder not yet told: [1-9]/);
    assert.match(output, /replay with --seed 7/);
  });

  it('reports no violation for Redis under kills, freezes, pauses and restarts', { timeout: 180_000 }, async () => {
    const { code, output } = await check(['--store', 'redis', '--seconds', '30'], 180_000);
    assert.equal(code, 0, output);
    assert.match(output, /checker: no violations \(store redis, seed \d+\)/);
    assert.match(output, /faults: .*kill-holder/);
    assert.match(output, /faults: .*term-holder/);
  });

  it('reports no violation for a single etcd member under kills, freezes, pauses and restarts', { timeout: 180_000 }, async () => {
    const { code, output } = await check(['--store', 'etcd', '--seconds', '30'], 180_000);
    assert.equal(code, 0, output);
    assert.match(output, /checker: no violations \(store etcd, seed \d+\)/);
    assert.match(output, /faults: .*term-holder/);
  });

  it('reports no violation for a 3-member etcd cluster whose leader and followers are killed', { timeout: 240_000 }, async () => {
    const { code, output } = await check(['--store', 'etcd-cluster', '--seconds', '30'], 240_000);
    assert.equal(code, 0, output);
    assert.match(output, /checker: no violations \(store etcd-cluster, seed \d+\)/);
    assert.match(output, /faults: .*term-holder/);
  });

  it('reports no violation for D-Bus under kills, freezes and bus daemon pauses', { timeout: 180_000 }, async () => {
    const { code, output } = await check(['--store', 'dbus', '--seconds', '30'], 180_000);
    assert.equal(code, 0, output);
    assert.match(output, /checker: no violations \(store dbus, seed \d+\)/);
    assert.match(output, /faults: .*term-holder/);
  });
});
