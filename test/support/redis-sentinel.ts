import { Redis } from 'ioredis';
import { RedisServer } from './redis-server.js';
import { waitFor } from './wait-for.js';

/** The master name the sentinel monitors. */
const NAME = 'mymaster';

/** What a forced fail-over did, with `performance.now()` readings. */
export interface Failover {
  /** When `SENTINEL FAILOVER` was sent. */
  readonly sentAt: number;
  /** When the sentinel first named the new master and it answered as one. */
  readonly promotedAt: number;
  /** When the old master was in sync as the new one's replica. */
  readonly demotedAt: number;
}

/**
 * A real Sentinel deployment for one test file: a primary, one replica of it
 * (`--replicaof`), and one `redis-server --sentinel` watching them with
 * quorum 1, each on a free loopback port with its own temporary folder.
 * Ready when `start` resolves: the replica is in sync and the sentinel has
 * found it, so `SENTINEL FAILOVER` can promote it. `stop` ends all three.
 *
 * @example
 * let sentinel: RedisSentinel;
 * before(async () => (sentinel = await RedisSentinel.start()));
 * after(() => sentinel.stop());
 * new Redis({ sentinels: sentinel.sentinels, name: sentinel.name })
 */
export class RedisSentinel {
  /** The master name the sentinel monitors. */
  readonly name = NAME;
  private readonly admin: Redis;

  private constructor(
    readonly nodes: readonly [RedisServer, RedisServer],
    /** The `redis-server --sentinel` process. */
    private readonly sentinel: RedisServer,
  ) {
    this.admin = new Redis({ host: '127.0.0.1', port: sentinel.port, lazyConnect: true, retryStrategy: () => 50, maxRetriesPerRequest: 1 });
    this.admin.on('error', () => {}); // answered through the commands that fail
  }

  static async start(): Promise<RedisSentinel> {
    // No delay before a full sync (Redis waits 5s by default for more replicas to join).
    const primary = await RedisServer.start({ args: ['--repl-diskless-sync-delay', '0'] });
    const replica = await RedisServer.start({ args: ['--replicaof', '127.0.0.1', String(primary.port), '--repl-diskless-sync-delay', '0'] }).catch(
      async (error: unknown) => {
        await primary.stop();
        throw error;
      },
    );
    try {
      await untilInSync(replica, 10_000);
      const config = [
        `sentinel monitor ${NAME} 127.0.0.1 ${primary.port} 1`,
        `sentinel down-after-milliseconds ${NAME} 1000`,
        `sentinel failover-timeout ${NAME} 10000`,
        '',
      ].join('\n');
      const deployment = new RedisSentinel([primary, replica], await RedisServer.start({ config, args: ['--sentinel'] }));
      try {
        await deployment.untilReplicaKnown(replica, 15_000);
        return deployment;
      } catch (error) {
        await deployment.stop();
        throw error;
      }
    } catch (error) {
      await Promise.all([primary.stop(), replica.stop()]);
      throw error;
    }
  }

  /** The sentinel addresses for an ioredis `Redis` in Sentinel mode. */
  get sentinels(): { host: string; port: number }[] {
    return [{ host: '127.0.0.1', port: this.sentinel.port }];
  }

  /** The node the sentinel names as master now. */
  async master(): Promise<RedisServer> {
    const [, port] = (await this.admin.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', this.name)) as [string, string];
    const node = this.nodes.find((server) => server.port === Number(port));
    if (!node) throw new Error(`the sentinel names 127.0.0.1:${port} as master, which is none of the test's servers`);
    return node;
  }

  /** The node that is not the master now. */
  async replica(): Promise<RedisServer> {
    const master = await this.master();
    return this.nodes[0] === master ? this.nodes[1] : this.nodes[0];
  }

  /**
   * Forces a fail-over (`SENTINEL FAILOVER`) once the replica has every write
   * the master acknowledged so far (a write, then `WAIT 1`: replication is in
   * order, so the replica then has all earlier writes too). Resolves once the
   * sentinel names the replica as master and it answers as one, and the old
   * master is the new one's replica and in sync.
   * The sentinel demotes it (and drops its clients) only when it next looks
   * at it, about 10s after the switch with Redis 7.0; until then the old
   * master takes the writes of every client still connected to it.
   */
  async failover(within = 30_000): Promise<Failover> {
    const old = await this.master();
    const next = await this.replica();
    // A replica the sentinel last saw down (a test stopped it), or that it
    // has not seen in sync since it was demoted, cannot be promoted yet.
    await this.untilReplicaKnown(next, within);
    const before = new Redis(old.port, '127.0.0.1');
    try {
      await before.set('redis-sentinel:synced', String(Date.now()));
      const acked = await before.wait(1, 5_000);
      if (acked < 1) throw new Error(`the replica on port ${next.port} did not confirm the master's writes within 5s`);
    } finally {
      before.disconnect();
    }
    const sentAt = performance.now();
    await this.admin.call('SENTINEL', 'FAILOVER', this.name);
    await waitFor(async () => (await this.master()) === next && (await role(next)) === 'master', within, 'the sentinel promoted the replica');
    const promotedAt = performance.now();
    await untilInSync(old, within);
    return { sentAt, promotedAt, demotedAt: performance.now() };
  }

  /** Ends the sentinel and both servers, and removes their folders. */
  async stop(): Promise<void> {
    this.admin.disconnect();
    await Promise.all([this.sentinel, ...this.nodes].map((server) => server.stop()));
  }

  /** Until the sentinel lists `node` as a healthy replica: only then can it promote it. */
  private async untilReplicaKnown(node: RedisServer, within: number): Promise<void> {
    try {
      await waitFor(
        async () => {
          const replicas = (await this.admin.call('SENTINEL', 'REPLICAS', this.name).catch(() => [])) as string[][];
          return replicas.some((fields) => {
            const info = Object.fromEntries(fields.flatMap((_, i) => (i % 2 ? [] : [[fields[i], fields[i + 1]]])));
            return info.port === String(node.port) && info.flags === 'slave' && info['master-link-status'] === 'ok';
          });
        },
        within,
        `the sentinel on port ${this.sentinel.port} found the replica on port ${node.port}`,
      );
    } catch (error) {
      throw new Error(`${(error as Error).message}; sentinel output:\n${this.sentinel.log}`);
    }
  }
}

/** What `node` answers to ROLE: 'master' or 'slave'. */
async function role(node: RedisServer): Promise<string> {
  const probe = new Redis(node.port, '127.0.0.1');
  try {
    return String(((await probe.role()) as unknown[])[0]);
  } finally {
    probe.disconnect();
  }
}

/** Until `node` is a replica whose link to the master is up. */
async function untilInSync(node: RedisServer, within: number): Promise<void> {
  const probe = new Redis(node.port, '127.0.0.1');
  try {
    await waitFor(async () => /role:slave[\s\S]*master_link_status:up/.test(await probe.info('replication')), within, `port ${node.port} in sync as a replica`);
  } finally {
    probe.disconnect();
  }
}
