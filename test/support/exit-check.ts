import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { runUntilExit, type NodeRun } from './run-node.js';

const child = fileURLToPath(new URL('./exit-child.js', import.meta.url));

/** Runs exit-child with `args`; rejects if it has not exited by itself within 15s. */
export function runExitChild(args: string[]): Promise<NodeRun> {
  return runUntilExit(child, args, 15_000);
}

/**
 * Runs exit-child with `--close` and `args`, and checks what every
 * configuration must do: a waiter at shutdown is refused at once, and the
 * process exits by itself within a second of its last word.
 */
export async function assertExitsAfterClose(args: string[]): Promise<void> {
  const { code, output, lingered } = await runExitChild([...args, '--close']);
  assert.equal(code, 0, output);
  assert.match(output, /late waiter: LockShutdownError/);
  assert.match(output, /done/);
  assert.ok(lingered < 1_000, `exited ${lingered.toFixed(0)}ms after closing; output:\n${output}`);
}
