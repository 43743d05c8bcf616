import { after, before, describe, it } from 'node:test';
import { runLockStoreContract } from 'nestjs-distributed-lock/testing';
import { EtcdLockStore } from 'nestjs-distributed-lock/etcd';
import { EtcdCluster } from '../support/etcd-cluster.js';

// One etcd per topology for the whole file; the suite keeps keys apart per test.
let single: EtcdCluster;
let cluster: EtcdCluster;
before(async () => {
  [single, cluster] = await Promise.all([EtcdCluster.start({ members: 1 }), EtcdCluster.start({ members: 3 })]);
});
after(async () => {
  await Promise.all([single?.stop(), cluster?.stop()]);
});

runLockStoreContract(
  { describe, it },
  { name: 'EtcdLockStore on a single node', createStore: () => new EtcdLockStore({ hosts: single.hosts, sessionTtl: '2s' }) },
);

runLockStoreContract(
  { describe, it },
  { name: 'EtcdLockStore on a 3-node cluster', createStore: () => new EtcdLockStore({ hosts: cluster.hosts, sessionTtl: '2s' }) },
);
