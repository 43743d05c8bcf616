import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';

export interface NodeRun {
  readonly code: number | null;
  /** stdout and stderr, interleaved as they came. */
  readonly output: string;
  /** Milliseconds from the last output to the exit: how long the process lingered after its last word. */
  readonly lingered: number;
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
    let lastOutputAt = performance.now();
    const keep = (chunk: unknown) => {
      output += String(chunk);
      lastOutputAt = performance.now();
    };
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${script} did not exit by itself within ${within}ms; output:\n${output}`));
    }, within);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output, lingered: performance.now() - lastOutputAt });
    });
  });
}

/** A node child that reports what it does as JSON lines on stdout. */
export interface ReportingChild {
  readonly proc: ChildProcessByStdio<Writable, Readable, Readable>;
  /** The JSON lines so far, parsed, in order. */
  readonly events: Record<string, unknown>[];
  /** Everything it printed so far, stdout and stderr, for failure messages. */
  output(): string;
}

/** Starts `script` in a new node process and collects its JSON lines (read by line: a chunk can end mid-line). */
export function spawnReporting(script: string, args: string[]): ReportingChild {
  const proc = spawn(process.execPath, [script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const events: Record<string, unknown>[] = [];
  let output = '';
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  createInterface({ input: proc.stdout }).on('line', (line) => {
    output += `${line}\n`;
    if (line.startsWith('{')) events.push(JSON.parse(line) as Record<string, unknown>);
  });
  return { proc, events, output: () => output };
}
