import { spawn } from 'node:child_process';

export interface NodeRun {
  readonly code: number | null;
  /** stdout and stderr, interleaved as they came. */
  readonly output: string;
}

/**
 * Runs `script` in a new node process and resolves its exit code and output
 * once it exits. Rejects, after killing it, if it has not exited by itself
 * within `within` ms: the scripts run here never call process.exit, so only
 * an event loop that empties lets them end.
 */
export function runUntilExit(script: string, args: string[], within: number, env: NodeJS.ProcessEnv = {}): Promise<NodeRun> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let output = '';
    proc.stdout.on('data', (chunk) => (output += chunk));
    proc.stderr.on('data', (chunk) => (output += chunk));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${script} did not exit by itself within ${within}ms; output:\n${output}`));
    }, within);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}
