import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { EtcdMember, type MemberTls, type RaftTiming } from './etcd-member.js';
import { freePort } from './free-port.js';
import { TcpProxy } from './tcp-proxy.js';

const run = promisify(execFile);

/** Data folders of clusters not stopped yet, removed when the test process exits however it exits (after the members are killed). */
const roots = new Set<string>();
process.on('exit', () => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

export interface EtcdClusterOptions {
  /** Number of members; 1 for a single node. Default 1. */
  members?: number;
  /**
   * Raft heartbeat and election timeout in ms. Default 100/1000 (etcd's own
   * defaults), which keeps a loaded test machine from flapping leaders; the
   * lease minimum is then 2 s.
   */
  timing?: RaftTiming;
  /**
   * Serve clients over TLS: every member's client URL is then `https://`,
   * and etcdctl trusts `caFile`. Make the certificate for IP 127.0.0.1.
   * Default: plain http.
   */
  tls?: ClusterTls;
  /**
   * Put a TCP relay in front of every member's peer port, and have the
   * members reach each other through it (`EtcdMember.peerRelay`), so a test
   * can hold back what one member answers another. Default: direct.
   */
  peerRelays?: boolean;
}

/** PEM file paths: the members' certificate and key, and the CA that signed the certificate. */
export interface ClusterTls extends MemberTls {
  readonly caFile: string;
}

/**
 * A real etcd cluster for one test file: each member an `etcd` process on
 * free loopback ports with its own temporary data folder. Ready when `start`
 * resolves (every member healthy, a leader elected); `stop` ends every member
 * and removes the folders (call it from an `after` hook; a test process that
 * dies kills its members on exit too).
 *
 * @example
 * let etcd: EtcdCluster;
 * before(async () => (etcd = await EtcdCluster.start({ members: 3 })));
 * after(() => etcd.stop());
 * new EtcdLockStore({ hosts: etcd.hosts })
 */
export class EtcdCluster {
  private constructor(
    readonly members: readonly EtcdMember[],
    private readonly root: string,
    private readonly tls?: ClusterTls,
  ) {}

  /** `--user` of every etcdctl call once auth is on (see `enableAuth`). */
  private signIn?: string;

  static async start(options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    const size = options.members ?? 1;
    const timing = options.timing ?? { heartbeat: 100, election: 1_000 };
    // A free port can be taken by someone else before etcd binds it: try a few times.
    for (let attempt = 1; ; attempt++) {
      const root = mkdtempSync(join(tmpdir(), 'etcd-test-'));
      roots.add(root);
      const ports = [];
      for (let i = 0; i < size; i++) {
        const peer = await freePort();
        const relay = options.peerRelays ? await TcpProxy.start(`http://127.0.0.1:${peer}`) : undefined;
        ports.push({ client: await freePort(), peer, relay });
      }
      const initialCluster = ports.map(({ peer, relay }, i) => `m${i}=${relay?.url ?? `http://127.0.0.1:${peer}`}`).join(',');
      const settings = { initialCluster, token: `test-${randomUUID()}`, timing, tls: options.tls };
      const members = ports.map(({ client, peer, relay }, i) => new EtcdMember(`m${i}`, client, peer, join(root, `m${i}`), settings, relay));
      const cluster = new EtcdCluster(members, root, options.tls);
      try {
        for (const member of members) member.launch('new');
        await cluster.untilHealthy(20_000);
        return cluster;
      } catch (error) {
        await cluster.stop();
        if (attempt === 3) throw error;
      }
    }
  }

  /** Client URLs of every member, for `hosts`. */
  get hosts(): string[] {
    return this.members.map((member) => member.clientUrl);
  }

  /** The cluster as a LOCK_STORE url of the sample app and the checker: etcd://host:port[,host:port...] (plain http only). */
  get storeUrl(): string {
    return `etcd://${this.hosts.map((host) => host.replace(/^http:\/\//, '')).join(',')}`;
  }

  /** The member that leads now, asked of the running members. */
  async leader(): Promise<EtcdMember> {
    // `-w simple` prints one line per member: endpoint, id, version, db size, is leader, ...
    // (the JSON form prints 64-bit member ids as numbers, which JSON.parse rounds).
    const { stdout } = await this.ctl(['--command-timeout', '2s', 'endpoint', 'status', '-w', 'simple'], 5_000);
    const line = stdout.split('\n').find((row) => row.split(', ')[4] === 'true');
    const leader = line && this.members.find((member) => member.clientUrl === line.split(', ')[0]);
    if (!leader) throw new Error(`no member reports itself as leader:\n${stdout}`);
    return leader;
  }

  /** Waits until every running member answers a quorum read (so a leader is elected and reachable). */
  async untilHealthy(within = 20_000): Promise<void> {
    const until = performance.now() + within;
    for (;;) {
      try {
        await this.ctl(['--command-timeout', '2s', 'endpoint', 'health'], 5_000);
        return;
      } catch (error) {
        if (performance.now() > until) {
          throw new Error(
            `etcd (${this.endpoints().join(', ')}) was not healthy within ${within}ms: ${(error as Error).message}\n` +
              this.members.map((member) => `--- ${member.name}\n${member.log}`).join('\n'),
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  /** Starts a stopped or killed member again on its data folder, and waits until the cluster is healthy. */
  async restart(member: EtcdMember): Promise<void> {
    if (member.running) await member.stop();
    member.launch('existing');
    await this.untilHealthy();
  }

  /** Stops every member and removes the data folders. */
  async stop(): Promise<void> {
    await Promise.all(this.members.map((member) => member.kill()));
    await Promise.all(this.members.map((member) => member.peerRelay?.stop()));
    rmSync(this.root, { recursive: true, force: true });
    roots.delete(this.root);
  }

  /**
   * Turns authentication on, with a root user of password `rootPassword`;
   * every etcdctl call of this cluster then signs in as root (without it,
   * etcd answers even the health check "user name is empty").
   */
  async enableAuth(rootPassword: string): Promise<void> {
    await this.etcdctl('user', 'add', 'root', `--new-user-password=${rootPassword}`);
    await this.etcdctl('user', 'grant-role', 'root', 'root');
    await this.etcdctl('auth', 'enable');
    this.signIn = `root:${rootPassword}`;
  }

  /** Runs etcdctl against the running members (for tests that act as an operator: delete a key, revoke a lease). */
  async etcdctl(...args: string[]): Promise<string> {
    const { stdout } = await this.ctl(args, 10_000);
    return stdout;
  }

  /** etcdctl against the running members, trusting the test CA when they serve TLS. */
  private ctl(args: string[], timeout: number): Promise<{ stdout: string }> {
    const trust = this.tls ? ['--cacert', this.tls.caFile] : [];
    const user = this.signIn ? ['--user', this.signIn] : [];
    return run('etcdctl', ['--endpoints', this.endpoints().join(','), ...trust, ...user, ...args], { timeout });
  }

  private endpoints(): string[] {
    return this.members.filter((member) => member.running).map((member) => member.clientUrl);
  }
}
