import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import type { AcquireRequest } from 'nestjs-distributed-lock';
import { runLockStoreContract } from 'nestjs-distributed-lock/testing';
import { RedisLockStore } from 'nestjs-distributed-lock/redis';
import { RedisCluster } from '../support/redis-cluster.js';

let cluster: RedisCluster;
const clients: Cluster[] = [];

before(async () => {
  cluster = await RedisCluster.start(3);
});
after(async () => {
  for (const client of clients) client.disconnect();
  await cluster.stop();
});

/** A store on its own Cluster client, as an application that passes its client in. */
function createStore(): RedisLockStore {
  const client = new Cluster(cluster.nodes);
  clients.push(client);
  return new RedisLockStore({ client });
}

runLockStoreContract({ describe, it }, { name: 'RedisLockStore on a 3-primary Cluster', createStore });

describe('RedisLockStore on a Cluster', () => {
  it('renews 2,500 locks spread over three primaries with one script call per primary', async () => {
    const store = createStore();
    try {
      const run = randomUUID();
      const held: AcquireRequest[] = Array.from({ length: 2_500 }, (_, i) => ({
        key: `cluster-renew:${run}:${i}`,
        owner: randomUUID(),
        ttl: 10_000,
        wait: 0,
        onLost: () => {},
      }));
      await Promise.all(held.map(async (req) => assert.equal((await store.acquire(req)).acquired, true)));
      /** Script calls over all nodes, each asked over a plain connection of its own. */
      const calls = async () => {
        let total = 0;
        for (const { port } of cluster.nodes) {
          const node = new Redis(port, '127.0.0.1');
          try {
            total += Number(/^cmdstat_evalsha:calls=(\d+)/m.exec(await node.info('commandstats'))?.[1] ?? 0);
          } finally {
            node.disconnect();
          }
        }
        return total;
      };
      const before = await calls();
      const results = await store.renew(held.map((req, i) => ({ key: req.key, owner: i % 5 === 0 ? 'someone-else' : req.owner, ttl: 60_000 })));
      const after = await calls();
      assert.equal(after - before, 3);
      assert.deepEqual(
        results.map((r) => r.renewed),
        held.map((_, i) => i % 5 !== 0),
      );
    } finally {
      await store.close();
    }
  });

  it('renews locks whose slot moved to another primary since the client last looked', async () => {
    const store = createStore();
    const admins = cluster.nodes.map(({ port }) => new Redis(port, '127.0.0.1'));
    try {
      const run = randomUUID();
      const held: AcquireRequest[] = Array.from({ length: 30 }, (_, i) => ({
        key: `moving:${run}:${i}`,
        owner: randomUUID(),
        ttl: 10_000,
        wait: 0,
        onLost: () => {},
      }));
      for (const req of held) assert.equal((await store.acquire(req)).acquired, true);
      // Move the slot of one lock to another primary, the way a resharding does.
      const slot = Number(await admins[0]?.call('CLUSTER', 'KEYSLOT', `lock:{${held[7]?.key}}`));
      const counts = await Promise.all(admins.map((admin) => admin.call('CLUSTER', 'COUNTKEYSINSLOT', slot)));
      const from = counts.findIndex((count) => Number(count) > 0);
      const to = (from + 1) % admins.length;
      const [source, target] = [admins[from] as Redis, admins[to] as Redis];
      const [sourceId, targetId] = await Promise.all([source.call('CLUSTER', 'MYID'), target.call('CLUSTER', 'MYID')]);
      await target.call('CLUSTER', 'SETSLOT', slot, 'IMPORTING', String(sourceId));
      await source.call('CLUSTER', 'SETSLOT', slot, 'MIGRATING', String(targetId));
      const keys = (await source.call('CLUSTER', 'GETKEYSINSLOT', slot, 100)) as string[];
      await source.call('MIGRATE', '127.0.0.1', cluster.nodes[to]?.port ?? 0, '', 0, 5_000, 'KEYS', ...keys);
      await Promise.all(admins.map((admin) => admin.call('CLUSTER', 'SETSLOT', slot, 'NODE', String(targetId))));

      const results = await store.renew(held.map(({ key, owner }) => ({ key, owner, ttl: 60_000 })));
      assert.deepEqual(
        results.map((r) => r.renewed),
        held.map(() => true),
      );
      assert.ok((await target.pttl(`lock:{${held[7]?.key}}`)) > 10_000, 'the moved lock was extended where it lives now');
    } finally {
      for (const admin of admins) admin.disconnect();
      await store.close();
    }
  });
});
