import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runUntilExit } from '../support/run-node.js';

const soak = fileURLToPath(new URL('../../checker/soak.js', import.meta.url));

/** Runs the soak with gc exposed (it collects before each heap reading); killed 10 s before the test's timeout. */
const run = (args: string[]) => runUntilExit(soak, args, 290_000, { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --expose-gc` });

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
