import { fileURLToPath } from 'node:url';
import { runUntilExit, type NodeRun } from './run-node.js';

const child = fileURLToPath(new URL('./exit-child.js', import.meta.url));

/** Runs exit-child with `args`; rejects if it has not exited by itself within 15s. */
export function runExitChild(args: string[]): Promise<NodeRun> {
  return runUntilExit(child, args, 15_000);
}
