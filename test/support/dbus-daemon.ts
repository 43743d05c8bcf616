import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Daemons still running, killed when the test process exits however it exits. */
const running = new Set<DbusDaemon>();
process.on('exit', () => {
  for (const daemon of running) daemon.killNow();
});

export interface DbusDaemonOptions {
  /**
   * The `<policy>` elements of the bus configuration. Default: the private
   * bus of the store's README (the daemon's user may own any name, and send
   * and receive anything).
   */
  policy?: string;
  /** `<limit>` values, such as `{ max_names_per_connection: 4 }`. Default: the daemon's own. */
  limits?: Record<string, number>;
  /** A configuration file to include after the policy, as the system bus includes /etc/dbus-1/system.d/*.conf. */
  include?: string;
}

const OPEN_POLICY = `<policy context="default">
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
    <allow own="*"/>
  </policy>`;

/**
 * A private `dbus-daemon` for one test file: its own temporary folder, a
 * unix socket in it, EXTERNAL authentication (the test user connects as
 * itself). Ready when `start` resolves (the daemon printed its address, so it
 * listens); `stop` ends it and removes the folder. Call `stop` from an `after`
 * hook; a test process that dies kills its daemons on exit too.
 *
 * @example
 * let bus: DbusDaemon;
 * before(async () => (bus = await DbusDaemon.start()));
 * after(() => bus.stop());
 */
export class DbusDaemon {
  private process?: ChildProcess;
  private output = '';

  private constructor(
    readonly dir: string,
    readonly address: string,
  ) {}

  static async start(options: DbusDaemonOptions = {}): Promise<DbusDaemon> {
    const dir = mkdtempSync(join(tmpdir(), 'dbus-test-'));
    const socket = join(dir, 'bus.sock');
    const limits = Object.entries(options.limits ?? {})
      .map(([name, value]) => `<limit name="${name}">${value}</limit>`)
      .join('\n  ');
    let include = '';
    if (options.include !== undefined) {
      writeFileSync(join(dir, 'included.conf'), options.include);
      include = `<include>${join(dir, 'included.conf')}</include>`;
    }
    const config = join(dir, 'bus.conf');
    writeFileSync(
      config,
      `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  ${options.policy ?? OPEN_POLICY}
  ${include}
  ${limits}
</busconfig>
`,
    );
    const daemon = new DbusDaemon(dir, `unix:path=${socket}`);
    try {
      await daemon.launch(config);
    } catch (error) {
      await daemon.stop();
      throw error;
    }
    return daemon;
  }

  /** Freezes the daemon (SIGSTOP): connections stay open, nothing is answered. */
  pause(): void {
    this.process?.kill('SIGSTOP');
  }

  /** Thaws a paused daemon (SIGCONT). */
  resume(): void {
    this.process?.kill('SIGCONT');
  }

  /** Kills the daemon at once (SIGKILL), as a crash would; the folder stays until `stop`. */
  async kill(): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  /** Stops the daemon (SIGTERM, then SIGKILL after 5s) and removes its folder. */
  async stop(): Promise<void> {
    const child = this.process;
    this.process = undefined;
    running.delete(this);
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGCONT'); // a paused daemon handles SIGTERM only once it runs again
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** @internal Synchronous last resort at process exit. */
  killNow(): void {
    this.process?.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }

  private launch(config: string): Promise<void> {
    const child = spawn('dbus-daemon', [`--config-file=${config}`, '--nofork', '--print-address'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.process = child;
    running.add(this);
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.output = (this.output + chunk).slice(-4_000)));
    return new Promise((resolve, reject) => {
      let printed = '';
      const timer = setTimeout(() => reject(new Error(`dbus-daemon did not print its address within 10s:\n${this.output}`)), 10_000);
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`dbus-daemon exited (${signal ?? code}) before printing its address:\n${this.output}`));
      });
      child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
        printed += chunk;
        if (!printed.includes('\n')) return;
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
