import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port.js';

/** Servers still running, killed when the test process exits however it exits. */
const running = new Set<RedisServer>();
process.on('exit', () => {
  for (const server of running) server.killNow();
});

export interface RedisServerOptions {
  /** Extra `redis-server` arguments, such as `['--appendonly', 'yes']` or `['--cluster-enabled', 'yes']`. */
  args?: string[];
  /** Port to listen on; default a free one. */
  port?: number;
  /** A config file's text, written into the server's folder and passed first (Sentinel rewrites its own, so it needs a file). */
  config?: string;
}

/**
 * A real `redis-server` for one test file: a free loopback port, its own
 * temporary folder, no persistence unless the test asks for it. Ready when
 * `start` resolves; `stop` ends it and removes the folder (call it from an
 * `after` hook; a test process that dies kills its servers on exit too).
 *
 * @example
 * let redis: RedisServer;
 * before(async () => (redis = await RedisServer.start()));
 * after(() => redis.stop());
 */
export class RedisServer {
  private process?: ChildProcess;
  private output = '';

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly args: string[],
    private readonly config?: string,
  ) {}

  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    const dir = mkdtempSync(join(tmpdir(), 'redis-test-'));
    // A free port can be taken by someone else before redis binds it: try a few.
    for (let attempt = 1; ; attempt++) {
      const server = new RedisServer(options.port ?? (await freePort()), dir, options.args ?? [], options.config);
      try {
        await server.launch();
        return server;
      } catch (error) {
        await server.stop(false);
        if (options.port !== undefined || attempt === 3) {
          rmSync(dir, { recursive: true, force: true });
          throw error;
        }
      }
    }
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** The last 4,000 characters the server printed, for failure messages. */
  get log(): string {
    return this.output;
  }

  /** Freezes the server (SIGSTOP): connections stay open, nothing answers. */
  pause(): void {
    this.process?.kill('SIGSTOP');
  }

  /** Thaws a paused server (SIGCONT). */
  resume(): void {
    this.process?.kill('SIGCONT');
  }

  /** Stops the server and starts it again on the same port and folder (data survives only with persistence on). */
  async restart(): Promise<void> {
    await this.stop(false);
    await this.launch();
  }

  /** Stops the server (SIGTERM, then SIGKILL after 5s) and, unless `keepDir`, removes its folder. */
  async stop(removeDir = true): Promise<void> {
    const child = this.process;
    this.process = undefined;
    running.delete(this);
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGCONT'); // a paused server handles SIGTERM only once it runs again
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    if (removeDir) rmSync(this.dir, { recursive: true, force: true });
  }

  /** @internal Synchronous last resort at process exit. */
  killNow(): void {
    this.process?.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async launch(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir];
    const config: string[] = [];
    if (this.config !== undefined) {
      const file = join(this.dir, 'redis.conf');
      writeFileSync(file, this.config);
      config.push(file);
    }
    const child = spawn('redis-server', [...config, ...args, ...this.args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.process = child;
    running.add(this);
    this.output = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (this.output = (this.output + chunk).slice(-4_000)));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.output = (this.output + chunk).slice(-4_000)));
    const failed = new Promise<never>((_, reject) => {
      child.once('error', reject);
      child.once('exit', (code, signal) =>
        reject(new Error(`redis-server on port ${this.port} exited (${signal ?? code}) before answering PING:\n${this.output}`)),
      );
    });
    failed.catch(() => {}); // only raced below; a later exit is the test's business
    await Promise.race([failed, this.pingUntilReady(10_000)]);
  }

  private async pingUntilReady(within: number): Promise<void> {
    const until = performance.now() + within;
    while (!(await ping(this.port))) {
      if (!this.process) throw new Error(`redis-server on port ${this.port} was stopped while starting`);
      if (performance.now() > until) {
        throw new Error(`redis-server on port ${this.port} did not answer PING within ${within}ms:\n${this.output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}


/** True when a server on `port` answers PING with PONG (not LOADING or an error). */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}
