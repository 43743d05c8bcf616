import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const soak = fileURLToPath(new URL('../../checker/soak.js', import.meta.url));

function run(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--expose-gc', soak, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    child.on('exit', (code) => resolve({ code, output }));
  });
}

/**
 * Acquire/release cycles per store: etcd, a consensus store, does about 500
 * a second here (each acquire and each release is a round trip to a write
 * etcd syncs to disk), so it runs fewer to stay well within a minute.
 */
const cycles: Record<string, number> = { 'memory-per-process': 20_000, redis: 20_000, dbus: 20_000, etcd: 3_000 };

describe('the leak soak (short mode)', () => {
  for (const [store, count] of Object.entries(cycles)) {
    it(`${store}: heap and handles return to where they started after cycles and abandoned waits`, { timeout: 300_000 }, async () => {
      const { code, output } = await run(['--store', store, '--cycles', String(count), '--waits', '1000']);
      assert.equal(code, 0, output);
      assert.match(output, /500 waits timed out, 500 aborted; .* handles unchanged/);
    });
  }
});
