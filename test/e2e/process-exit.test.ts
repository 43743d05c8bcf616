import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const child = fileURLToPath(new URL('../support/exit-child.js', import.meta.url));

function runChild(args: string[]): Promise<{ code: number | null; output: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const proc = spawn(process.execPath, [child, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    proc.stdout.on('data', (chunk) => (output += chunk));
    proc.stderr.on('data', (chunk) => (output += chunk));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`the process did not exit by itself within 15s; output:\n${output}`));
    }, 15_000);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output, ms: performance.now() - started });
    });
  });
}

describe('a process that took and released locks', () => {
  it('exits by itself without closing the application', async () => {
    const { code, output } = await runChild([]);
    assert.equal(code, 0, output);
    assert.match(output, /done/);
  });

  it('exits by itself after closing the application', async () => {
    const { code, output } = await runChild(['--close']);
    assert.equal(code, 0, output);
    assert.match(output, /done/);
  });
});
