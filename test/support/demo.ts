import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const demo = fileURLToPath(new URL('../../sample-app/demo.js', import.meta.url));
const EXIT_WITHIN_MS = 30_000;

export interface DemoRun {
  readonly code: number | null;
  readonly output: string;
}

/**
 * Runs the compiled demo (`npm run demo`) with extra environment, such as
 * LOCK_STORE. Rejects if it does not exit by itself within 30s: the demo never
 * calls process.exit, so only an event loop that empties lets it end.
 */
export function runDemo(env: NodeJS.ProcessEnv = {}): Promise<DemoRun> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [demo], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let output = '';
    proc.stdout.on('data', (chunk) => (output += chunk));
    proc.stderr.on('data', (chunk) => (output += chunk));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`the demo did not exit by itself within ${EXIT_WITHIN_MS}ms; output:\n${output}`));
    }, EXIT_WITHIN_MS);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}
