import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EtcdCluster } from '../support/etcd-cluster.js';
import { runDemo } from '../support/demo.js';

describe('npm run demo on the etcd store', () => {
  let etcd: EtcdCluster;
  before(async () => {
    etcd = await EtcdCluster.start({ members: 1 });
  });
  after(() => etcd.stop());

  it('runs one instance per cron tick and serialises payments with LOCK_STORE=etcd://', async () => {
    const { code, output } = await runDemo({ LOCK_STORE: etcd.storeUrl });
    assert.equal(code, 0, output);
    assert.match(output, /etcd store/);
    assert.match(output, /^OK: 1 runner per tick, same-id payments serialized, different ids in parallel$/m);
  });
});
