import { fileURLToPath } from 'node:url';
import { runUntilExit, type NodeRun } from './run-node.js';

const demo = fileURLToPath(new URL('../../sample-app/demo.js', import.meta.url));

/**
 * Runs the compiled demo (`npm run demo`) with extra environment, such as
 * LOCK_STORE. Rejects if it does not exit by itself within 30s.
 */
export function runDemo(env: NodeJS.ProcessEnv = {}): Promise<NodeRun> {
  return runUntilExit(demo, [], 30_000, env);
}
