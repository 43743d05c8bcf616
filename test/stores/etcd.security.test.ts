import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { inspect } from 'node:util';
import { Etcd3 } from 'etcd3';
import { InvalidLockOptionError, LockService, LockStoreError } from 'nestjs-distributed-lock';
import { EtcdLockStore } from 'nestjs-distributed-lock/etcd';
import { runLockStoreContract } from 'nestjs-distributed-lock/testing';
import { createTestApp } from '../support/app.js';
import { makeCertificates, type TestCertificates } from '../support/certificates.js';
import { captureLogs } from '../support/log-capture.js';
import { EtcdCluster } from '../support/etcd-cluster.js';

const ROOT_PASSWORD = 'r00t-pa55';
const PASSWORD = 'pa55-w0rd-never-shown';
const locker = { username: 'locker', password: PASSWORD };
const attempt = { key: 'k', owner: 'o', ttl: 1000, wait: 0, onLost() {} };

/**
 * The least-privilege set-up the README documents for the store (default
 * keyPrefix 'lock/'): a role with readwrite on the prefix, and nothing else.
 *
 * etcd has no permission for leases as such. Granting one needs only a
 * login; revoking one, keeping it alive (etcd ≥ 3.5) and listing its keys
 * (`keys: true`, etcd ≥ 3.4.26) are checked against the keys attached to it,
 * and the store attaches only keys under its prefix. Reading alone is not
 * enough (joining a queue writes a key), nor is writing alone (the same
 * transaction reads the keys ahead, and waiters watch them).
 */
async function enableAuth(etcd: EtcdCluster): Promise<void> {
  const commands = [
    ['role', 'add', 'locks'],
    ['role', 'grant-permission', 'locks', 'readwrite', '--prefix=true', 'lock/'],
    ['user', 'add', 'locker', `--new-user-password=${PASSWORD}`],
    ['user', 'grant-role', 'locker', 'locks'],
  ];
  for (const command of commands) await etcd.etcdctl(...command);
  await etcd.enableAuth(ROOT_PASSWORD);
}

/** Everything an error shows a logger that prints all its properties, its cause included. */
function everything(error: unknown): string {
  return inspect(error, { depth: 10, showHidden: true });
}

describe('EtcdLockStore as a least-privilege etcd user', () => {
  let etcd: EtcdCluster;
  let root: Etcd3;
  const client = (auth: { username: string; password: string }) => new Etcd3({ hosts: etcd.hosts, auth, dialTimeout: 2_000 });

  before(async () => {
    etcd = await EtcdCluster.start({ members: 1 });
    await enableAuth(etcd);
    root = client({ username: 'root', password: ROOT_PASSWORD });
  });
  after(async () => {
    root?.close();
    await etcd?.stop();
  });

  it('can touch nothing outside its prefix: other keys, other leases, users and roles', async () => {
    // A lease of someone else's, carrying a key outside the prefix.
    const lease = root.lease(60, { autoKeepAlive: false });
    await lease.put('other/held').value('x');
    const user = client(locker);
    try {
      const denied = /permission denied/;
      await assert.rejects(user.get('other/held').string(), denied);
      await assert.rejects(user.put('lock').value('x').exec(), denied, 'the prefix is "lock/", not "lock"');
      await assert.rejects(user.getAll().prefix('').keys(), denied);
      await assert.rejects(user.leaseClient.leaseRevoke({ ID: await lease.grant() }), denied);
      await assert.rejects(user.getUsers(), denied);
      await assert.rejects(user.auth.authDisable(), denied);
      assert.equal(await root.get('other/held').string(), 'x');
    } finally {
      user.close();
      await lease.revoke();
    }
  });

  runLockStoreContract(
    { describe, it },
    { name: 'EtcdLockStore (least-privilege user)', createStore: () => new EtcdLockStore({ hosts: etcd.hosts, auth: locker, sessionTtl: '2s' }) },
  );

  it('tells a user that may only read the prefix to grant readwrite', async () => {
    const commands = [
      ['role', 'add', 'read-locks'],
      ['role', 'grant-permission', 'read-locks', 'read', '--prefix=true', 'lock/'],
      ['user', 'add', 'reader', `--new-user-password=${PASSWORD}`],
      ['user', 'grant-role', 'reader', 'read-locks'],
    ];
    for (const command of commands) await etcd.etcdctl(...command);
    const store = new EtcdLockStore({ hosts: etcd.hosts, auth: { username: 'reader', password: PASSWORD }, dialTimeout: 2_000 });
    try {
      await assert.rejects(store.acquire(attempt), (error: unknown) => {
        assert.ok(error instanceof LockStoreError);
        assert.match(error.message, /permission denied.*role grant-permission <role> readwrite --prefix=true lock\//);
        assert.doesNotMatch(everything(error), new RegExp(PASSWORD));
        return true;
      });
    } finally {
      await store.close();
    }
  });

  it('never puts the password in an error, its cause or its properties', async () => {
    const store = new EtcdLockStore({ hosts: etcd.hosts, auth: { username: 'locker', password: `wrong-${PASSWORD}` }, dialTimeout: 2_000 });
    try {
      await assert.rejects(store.acquire(attempt), (error: unknown) => {
        assert.ok(error instanceof LockStoreError);
        assert.match(error.message, /authentication failed.*check the auth option/);
        assert.doesNotMatch(everything(error), new RegExp(PASSWORD));
        return true;
      });
    } finally {
      await store.close();
    }
  });

  it('never puts a secret in an options error, even one passed by mistake', () => {
    const secretKey = `-----BEGIN PRIVATE KEY----- ${PASSWORD}`; // read as text by mistake (a Buffer would show as hex anyway)
    const mistakes: unknown[] = [
      { hosts: etcd.hosts, password: PASSWORD, username: 'locker' }, // auth flattened
      { hosts: [`etcd://locker:${PASSWORD}@127.0.0.1:2379`] }, // credentials in a URL of the wrong scheme
      `http://locker:${PASSWORD}@127.0.0.1:2379`, // a URL instead of options
      { auth: locker }, // no hosts
      { client: { hosts: etcd.hosts, auth: locker } }, // options instead of a client
      { client: root, credentials: { rootCertificate: secretKey, privateKey: secretKey }, auth: locker },
    ];
    for (const [index, options] of mistakes.entries()) {
      assert.throws(
        () => new EtcdLockStore(options as ConstructorParameters<typeof EtcdLockStore>[0]),
        (error: unknown) => {
          assert.ok(error instanceof InvalidLockOptionError);
          assert.doesNotMatch(everything(error), new RegExp(PASSWORD), `mistake #${index}`);
          return true;
        },
      );
    }
  });

  it('never puts the password in the logs when the password changes under a held lock', async () => {
    const { logger: capture, lines } = captureLogs();
    const store = new EtcdLockStore({ hosts: etcd.hosts, auth: locker, sessionTtl: '2s', dialTimeout: 2_000 });
    const app = await createTestApp({ lock: { store, ttl: 600 } });
    app.useLogger(capture);
    const locks = app.get(LockService);
    try {
      // etcd drops the user's token when its password changes: the release
      // after the critical section has to log in again, and fails.
      await locks.withLock('creds:rotation', () => root.user('locker').setPassword('rotated-password'));
      await assert.rejects(locks.acquire('creds:after'), (error: unknown) => {
        assert.ok(error instanceof LockStoreError);
        lines.push(everything(error));
        return true;
      });
      assert.ok(lines.some((line) => /Releasing lock "creds:rotation" failed/.test(line)), `the failed release was logged: ${lines.join('\n')}`);
      assert.ok(lines.every((line) => !line.includes(PASSWORD)), lines.join('\n'));
    } finally {
      await root.user('locker').setPassword(PASSWORD);
      await app.close();
    }
  });
});

describe('EtcdLockStore over TLS', () => {
  let certificates: TestCertificates;
  let rootCertificate: Buffer;
  let etcd: EtcdCluster;

  before(async () => {
    certificates = makeCertificates('etcd');
    rootCertificate = readFileSync(certificates.caFile);
    etcd = await EtcdCluster.start({ members: 1, tls: certificates });
  });
  after(async () => {
    await etcd?.stop();
    certificates.remove();
  });

  runLockStoreContract(
    { describe, it },
    { name: 'EtcdLockStore (TLS)', createStore: () => new EtcdLockStore({ hosts: etcd.hosts, credentials: { rootCertificate }, sessionTtl: '2s' }) },
  );

  it('refuses, within dialTimeout, a server whose certificate it cannot verify, and says why', async () => {
    const store = new EtcdLockStore({ hosts: etcd.hosts, dialTimeout: 1_000 }); // trusts the system's roots only
    const started = performance.now();
    try {
      await assert.rejects(store.acquire(attempt), (error: unknown) => {
        assert.ok(error instanceof LockStoreError);
        assert.ok(error.message.includes(etcd.hosts[0] ?? ''), error.message);
        assert.match(error.message, /certificate.*pass credentials: \{ rootCertificate \}/);
        return true;
      });
      const took = performance.now() - started;
      assert.ok(took < 1_000 + 500, `failed after ${Math.round(took)}ms, dialTimeout 1000ms`);
    } finally {
      await store.close();
    }
  });

  describe('with a least-privilege user', () => {
    before(() => enableAuth(etcd));

    runLockStoreContract(
      { describe, it },
      {
        name: 'EtcdLockStore (TLS, least-privilege user)',
        createStore: () => new EtcdLockStore({ hosts: etcd.hosts, credentials: { rootCertificate }, auth: locker, sessionTtl: '2s' }),
      },
    );
  });
});
