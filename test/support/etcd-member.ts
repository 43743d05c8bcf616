import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import type { TcpProxy } from './tcp-proxy.js';

/** Members still running, killed when the test process exits however it exits. */
const running = new Set<EtcdMember>();
process.on('exit', () => {
  for (const member of running) member.killNow();
});

/** Raft timing for test members: fast enough for quick elections, slow enough not to flap on a loaded machine. */
export interface RaftTiming {
  readonly heartbeat: number;
  readonly election: number;
}

/**
 * Certificate and key (PEM file paths) a member serves its client port with.
 * Only client traffic is encrypted: the peer port stays plain http, since the
 * store never talks to it.
 */
export interface MemberTls {
  readonly certFile: string;
  readonly keyFile: string;
}

/**
 * One `etcd` process of a test cluster, on its own loopback ports and data
 * folder. Started and stopped by {@link EtcdCluster}; tests use it to stop,
 * kill, freeze and restart members.
 */
export class EtcdMember {
  private process?: ChildProcess;
  private output = '';

  constructor(
    readonly name: string,
    readonly clientPort: number,
    readonly peerPort: number,
    readonly dataDir: string,
    private readonly cluster: { readonly initialCluster: string; readonly token: string; readonly timing: RaftTiming; readonly tls?: MemberTls },
    /** A relay to the peer port, which the member then gives the other members as its address (see `EtcdClusterOptions.peerRelays`). */
    readonly peerRelay?: TcpProxy,
  ) {}

  /** `https://` when the member serves TLS, `http://` otherwise. */
  get clientUrl(): string {
    return `${this.cluster.tls ? 'https' : 'http'}://127.0.0.1:${this.clientPort}`;
  }

  get peerUrl(): string {
    return `http://127.0.0.1:${this.peerPort}`;
  }

  /** Where the other members reach this one. */
  get advertisedPeerUrl(): string {
    return this.peerRelay?.url ?? this.peerUrl;
  }

  get running(): boolean {
    return this.process !== undefined;
  }

  /** The last lines etcd printed, for failure messages. */
  get log(): string {
    return this.output;
  }

  /**
   * Starts the process. `state` is 'new' for a fresh data folder and
   * 'existing' when it restarts on one it has written before (etcd then
   * ignores the initial-cluster flags and reads its membership from disk).
   */
  launch(state: 'new' | 'existing'): void {
    const { initialCluster, token, timing, tls } = this.cluster;
    const args = [
      '--name', this.name,
      '--data-dir', this.dataDir,
      '--listen-client-urls', this.clientUrl,
      '--advertise-client-urls', this.clientUrl,
      '--listen-peer-urls', this.peerUrl,
      '--initial-advertise-peer-urls', this.advertisedPeerUrl,
      '--initial-cluster', initialCluster,
      '--initial-cluster-state', state,
      '--initial-cluster-token', token,
      '--heartbeat-interval', String(timing.heartbeat),
      '--election-timeout', String(timing.election),
      '--logger', 'zap',
      '--log-level', 'warn',
      ...(tls ? ['--cert-file', tls.certFile, '--key-file', tls.keyFile] : []),
    ];
    const child = spawn('etcd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.process = child;
    running.add(this);
    this.output = '';
    const keep = (chunk: string) => (this.output = (this.output + chunk).slice(-4_000));
    child.stdout?.setEncoding('utf8').on('data', keep);
    child.stderr?.setEncoding('utf8').on('data', keep);
    child.once('exit', () => {
      if (this.process === child) {
        this.process = undefined;
        running.delete(this);
      }
    });
  }

  /** Freezes the member (SIGSTOP): its connections stay open and nothing answers. */
  pause(): void {
    this.process?.kill('SIGSTOP');
  }

  /** Thaws a paused member (SIGCONT). */
  resume(): void {
    this.process?.kill('SIGCONT');
  }

  /** Stops the member cleanly (SIGTERM, SIGKILL after 5 s); its data folder stays. */
  stop(): Promise<void> {
    return this.end('SIGTERM');
  }

  /** Kills the member at once (SIGKILL), as a crash would; its data folder stays. */
  kill(): Promise<void> {
    return this.end('SIGKILL');
  }

  /** @internal Synchronous last resort at process exit. */
  killNow(): void {
    this.process?.kill('SIGKILL');
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  private async end(signal: NodeJS.Signals): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGCONT'); // a paused member handles SIGTERM only once it runs again
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

