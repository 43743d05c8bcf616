import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../../checker/main.js', import.meta.url));

function check(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [main, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    child.on('exit', (code) => resolve({ code, output }));
  });
}

describe('the mutual-exclusion checker', () => {
  it('finds overlaps, stale writes and lost updates when the lock does not exclude across processes', { timeout: 120_000 }, async () => {
    const { code, output } = await check(['--store', 'memory-per-process', '--seconds', '6', '--seed', '7']);
    assert.equal(code, 1, output);
    assert.match(output, /FAIL overlapping sections, earlier holder not yet told: [1-9]/);
    assert.match(output, /replay with --seed 7/);
  });

  it('reports no violation for Redis under kills, freezes, pauses and restarts', { timeout: 180_000 }, async () => {
    const { code, output } = await check(['--store', 'redis', '--seconds', '30']);
    assert.equal(code, 0, output);
    assert.match(output, /checker: no violations \(store redis, seed \d+\)/);
    assert.match(output, /faults: .*kill-holder/);
  });

  it('reports no violation for a single etcd member under kills, freezes, pauses and restarts', { timeout: 180_000 }, async () => {
    const { code, output } = await check(['--store', 'etcd', '--seconds', '30']);
    assert.equal(code, 0, output);
    assert.match(output, /checker: no violations \(store etcd, seed \d+\)/);
  });

  it('reports no violation for a 3-member etcd cluster whose leader and followers are killed', { timeout: 240_000 }, async () => {
    const { code, output } = await check(['--store', 'etcd-cluster', '--seconds', '30']);
    assert.equal(code, 0, output);
    assert.match(output, /checker: no violations \(store etcd-cluster, seed \d+\)/);
  });

  it('reports no violation for D-Bus under kills, freezes and bus daemon pauses', { timeout: 180_000 }, async () => {
    const { code, output } = await check(['--store', 'dbus', '--seconds', '30']);
    assert.equal(code, 0, output);
    assert.match(output, /checker: no violations \(store dbus, seed \d+\)/);
  });
});
