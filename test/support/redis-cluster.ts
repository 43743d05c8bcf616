import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { RedisServer } from './redis-server.js';

const run = promisify(execFile);

/**
 * A real Redis Cluster of `primaries` nodes without replicas, each a
 * {@link RedisServer} on a free loopback port, joined with
 * `redis-cli --cluster create`. Ready when `start` resolves: every node has
 * every slot assigned and reports `cluster_state:ok`.
 *
 * @example
 * let cluster: RedisCluster;
 * before(async () => (cluster = await RedisCluster.start()));
 * after(() => cluster.stop());
 * new Cluster(cluster.nodes)
 */
export class RedisCluster {
  private constructor(readonly servers: readonly RedisServer[]) {}

  static async start(primaries = 3): Promise<RedisCluster> {
    const servers: RedisServer[] = [];
    const cluster = new RedisCluster(servers);
    try {
      for (let i = 0; i < primaries; i++) {
        servers.push(await RedisServer.start({ args: ['--cluster-enabled', 'yes', '--cluster-node-timeout', '2000'] }));
      }
      await run('redis-cli', ['--cluster', 'create', ...servers.map(({ port }) => `127.0.0.1:${port}`), '--cluster-yes'], {
        timeout: 30_000,
      });
      await cluster.untilReady(15_000);
      return cluster;
    } catch (error) {
      await cluster.stop();
      throw error;
    }
  }

  /** The startup nodes for an ioredis `Cluster`. */
  get nodes(): { host: string; port: number }[] {
    return this.servers.map(({ port }) => ({ host: '127.0.0.1', port }));
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((server) => server.stop()));
  }

  private async untilReady(within: number): Promise<void> {
    const until = performance.now() + within;
    for (;;) {
      const infos = await Promise.all(
        this.servers.map(async ({ port }) => (await run('redis-cli', ['-p', String(port), 'cluster', 'info'])).stdout),
      );
      if (infos.every((info) => info.includes('cluster_state:ok') && info.includes('cluster_slots_assigned:16384'))) return;
      if (performance.now() > until) throw new Error(`the cluster did not become ready within ${within}ms:\n${infos.join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
