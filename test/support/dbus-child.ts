import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('./dbus-lock-child.js', import.meta.url));

/** Children still running, killed when the test process exits however it exits. */
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** What a child reports; `at` is the host's monotonic clock in ms (see {@link hostNow}). */
export interface ChildEvent {
  op: 'ready' | 'acquired' | 'busy' | 'error' | 'lost' | 'releasing' | 'released' | 'enter' | 'exit' | 'looped' | 'burst' | 'bursted';
  at: number;
  key?: string;
  token?: number;
  reason?: string;
  message?: string;
  ok?: boolean;
  pid?: number;
}

export type ChildCommand =
  | { op: 'acquire'; key: string; wait?: number; ttl?: number; holdMs?: number }
  | { op: 'release'; key: string }
  | { op: 'loop'; key: string; rounds: number; holdMs?: number; wait?: number }
  /**
   * Every request at once, `count` callers per key, each holding for `holdMs`;
   * `key` names the burst in its `burst` (start) and `bursted` (all done) events.
   * The first burst runs on a store made for it, with no connection open yet;
   * later ones reuse that store, its connections open.
   */
  | { op: 'burst'; key: string; requests: { key: string; count: number }[]; wait?: number; ttl?: number; holdMs?: number };

/** The host's monotonic clock in ms, as the children read it: comparable across processes. */
export function hostNow(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/**
 * A separate OS process holding and waiting for locks on a DbusLockStore
 * (test/support/dbus-lock-child.ts), for behaviour only processes show: a
 * killed holder, a killed waiter, several processes competing.
 *
 * @example
 * const child = await LockChild.spawn(bus.address);
 * child.send({ op: 'acquire', key: 'k', wait: 10_000 });
 * await child.next((e) => e.op === 'acquired');
 */
export class LockChild {
  readonly events: ChildEvent[] = [];
  private readonly listeners = new Set<() => void>();
  private output = '';

  private constructor(private readonly process: ChildProcess) {
    createInterface({ input: process.stdout! }).on('line', (line) => {
      this.events.push(JSON.parse(line) as ChildEvent);
      for (const listener of this.listeners) listener();
    });
    process.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.output = (this.output + chunk).slice(-4_000)));
    process.once('exit', () => {
      running.delete(process);
      for (const listener of this.listeners) listener();
    });
  }

  /** Starts a child on the bus at `address`; resolves once it has connected. */
  static async spawn(address: string): Promise<LockChild> {
    const child = new LockChild(spawn(process.execPath, [script, address], { stdio: ['pipe', 'pipe', 'pipe'] }));
    running.add(child.process);
    await child.next((event) => event.op === 'ready', 15_000);
    return child;
  }

  get pid(): number {
    return this.process.pid ?? -1;
  }

  send(command: ChildCommand): void {
    this.process.stdin!.write(`${JSON.stringify(command)}\n`);
  }

  /** The first event (counting those already seen) that matches, within `within` ms. */
  next(match: (event: ChildEvent) => boolean, within = 10_000): Promise<ChildEvent> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const event = this.events.find(match);
        if (event) {
          done();
          resolve(event);
        } else if (this.process.exitCode !== null || this.process.signalCode !== null) {
          done();
          reject(new Error(`child ${this.pid} exited without the expected event; events: ${JSON.stringify(this.events)}\n${this.output}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`child ${this.pid}: expected event not seen within ${within}ms; events: ${JSON.stringify(this.events)}\n${this.output}`));
      }, within);
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }

  /** Kills the child at once (SIGKILL), as a crash would, and waits until it is gone. */
  async kill(): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return;
    const exited = new Promise((resolve) => this.process.once('exit', resolve));
    this.process.kill('SIGKILL');
    await exited;
  }

  /** Ends the child normally (its store closes), killing it if it has not gone within 5s. */
  async stop(): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return;
    const exited = new Promise((resolve) => this.process.once('exit', resolve));
    this.process.stdin!.end();
    const timer = setTimeout(() => this.process.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}
