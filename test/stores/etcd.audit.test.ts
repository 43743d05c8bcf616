import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import type { AcquireRequest } from 'nestjs-distributed-lock';
import { EtcdLockStore } from 'nestjs-distributed-lock/etcd';
import { EtcdCluster } from '../support/etcd-cluster.js';
import { grant, request } from '../support/store-requests.js';
import type { HeldAnswer, TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait-for.js';

// The store's keepalive audit compares the keys etcd lists under its session
// lease with the locks it holds. etcd stamps that list with a revision read
// after the list (on a follower, after a round trip to the leader), so a key
// created in between looks deleted: these tests make that happen, once on
// demand and once under load, and expect no lock to be reported lost.

/** Requests whose losses go into `losses`, with the key they were for. */
function recording(losses: string[]): (key: string) => AcquireRequest {
  return (key) => request(key, { ttl: 600_000, onLost: (reason) => losses.push(`${key}: ${reason}`) });
}

/**
 * Holds back the leader's answer to the next audit a follower forwards to it
 * (through the leader's peer relay), and resolves once the leader has
 * answered: it has listed the lease's keys. Bounded, since a new leader's
 * relay would hold nothing.
 */
async function holdNextAudit(leaderRelay: TcpProxy): Promise<HeldAnswer> {
  const audit = leaderRelay.holdAnswerTo('POST /leases/internal ');
  let answered = false;
  void audit.answering.then(() => (answered = true));
  await waitFor(() => answered, 5_000, "the leader's answer to the next audit");
  return audit;
}

describe('EtcdLockStore audit, on a 3-node cluster whose members reach each other through relays', () => {
  let cluster: EtcdCluster;
  before(async () => {
    cluster = await EtcdCluster.start({ members: 3, peerRelays: true });
  });
  after(async () => {
    await cluster?.stop();
  });

  it('keeps a lock acquired while the leader\'s list of the lease\'s keys was on its way, though the follower stamped the list after it', async () => {
    const leader = await cluster.leader();
    const follower = cluster.members.find((member) => member !== leader);
    assert.ok(follower && leader.peerRelay);
    // The store talks to the follower only, which forwards the audit to the
    // leader and stamps the leader's list with its own revision when it comes back.
    const store = new EtcdLockStore({ hosts: [follower.clientUrl], sessionTtl: '2s' });
    const admin = new Etcd3({ hosts: cluster.hosts });
    const losses: string[] = [];
    const lockRequest = recording(losses);
    try {
      await grant(store, lockRequest(`audit-first-${randomUUID()}`)); // starts the session, and its audits
      const audit = await holdNextAudit(leader.peerRelay);
      const late = lockRequest(`audit-late-${randomUUID()}`);
      await grant(store, late); // through the follower, which has applied it when it answers
      audit.release();
      // The next audit starts only once this one is done, with every read it makes.
      (await holdNextAudit(leader.peerRelay)).release();
      assert.deepEqual(losses, [], 'no lock reported lost');
      const [renewed] = await store.renew([{ key: late.key, owner: late.owner, ttl: 600_000 }]);
      assert.equal(renewed?.renewed, true, 'the late lock is still held');
      const keys = await admin.getAll().prefix(`lock/${late.key}/`).keys();
      assert.equal(keys.length, 1, 'and its key still stands in etcd');
    } finally {
      await store.close();
      admin.close();
    }
  });

  it('reports none of thousands of held locks lost while acquisitions go on and every audit\'s list comes back late', async () => {
    const leader = await cluster.leader();
    const follower = cluster.members.find((member) => member !== leader);
    const relay = leader.peerRelay;
    assert.ok(follower && relay);
    const store = new EtcdLockStore({ hosts: [follower.clientUrl], sessionTtl: '2s' });
    const admin = new Etcd3({ hosts: cluster.hosts });
    const losses: string[] = [];
    const lockRequest = recording(losses);
    let started = 0;
    let granted = 0;
    let acquiring = true;
    const acquire = async (more: () => boolean) => {
      while (more()) {
        started++;
        await grant(store, lockRequest(`load-${randomUUID()}`));
        granted++;
      }
    };
    try {
      await Promise.all(Array.from({ length: 64 }, () => acquire(() => started < 2_000)));
      const workers = Array.from({ length: 16 }, () => acquire(() => acquiring));
      // Three audits, each answered only after 50 more locks were granted
      // through the follower meanwhile: 50 suspects each, and a list of
      // thousands of keys to compare.
      for (let audits = 0; audits < 3; audits++) {
        const audit = await holdNextAudit(relay);
        const before = granted;
        await waitFor(() => granted >= before + 50, 10_000, '50 grants while the audit is held');
        audit.release();
      }
      (await holdNextAudit(relay)).release(); // once it is sent, the third audit is done
      acquiring = false;
      await Promise.all(workers);
      assert.deepEqual(losses, [], `no lock of ${granted} reported lost`);
      assert.equal(await admin.getAll().prefix('lock/load-').count(), granted, 'and no key deleted');
      // Revoking the session deletes every key at once (closing would move each held lock to a lease of its own).
      const [entry] = (await admin.getAll().prefix('lock/load-').limit(1).exec()).kvs;
      await admin.leaseClient.leaseRevoke({ ID: entry?.lease ?? '0' });
      await waitFor(() => losses.length === granted, 5_000, 'the store saw its session revoked');
    } finally {
      acquiring = false;
      await store.close();
      admin.close();
    }
  });
});
