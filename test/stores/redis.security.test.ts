import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { LockService, LockStoreError } from 'nestjs-distributed-lock';
import { RedisLockStore } from 'nestjs-distributed-lock/redis';
import { runLockStoreContract } from 'nestjs-distributed-lock/testing';
import { createTestApp } from '../support/app.js';
import { makeCertificates, type TestCertificates } from '../support/certificates.js';
import { captureLogs } from '../support/log-capture.js';
import { freePort } from '../support/free-port.js';
import { RedisServer } from '../support/redis-server.js';
import { waitFor } from '../support/wait-for.js';

/**
 * The least-privilege ACL the README documents for the store (default
 * keyPrefix 'lock:'): only the commands the store and ioredis's ready check
 * run, only its keys and its wake-up channels.
 */
const STORE_ACL =
  '-@all +info +ping +evalsha +eval +subscribe +unsubscribe +get +set +del +exists +incr +pttl +pexpire +time ' +
  '+zrange +zadd +zrem +zscore +hget +hset +hdel +publish ~lock:* &lock:wake:*';
const PASSWORD = 'pa55-w0rd-never-shown';

describe('RedisLockStore as a least-privilege ACL user', () => {
  let redis: RedisServer;
  let admin: Redis;
  let url: string;

  before(async () => {
    redis = await RedisServer.start();
    admin = new Redis(redis.port, '127.0.0.1');
    await admin.call('ACL', 'SETUSER', 'locker', 'on', `>${PASSWORD}`, 'resetchannels', ...STORE_ACL.split(' '));
    url = `redis://locker:${PASSWORD}@127.0.0.1:${redis.port}`;
  });
  after(async () => {
    admin.disconnect();
    await redis.stop();
  });

  it('can touch nothing outside its keys and commands', async () => {
    const user = new Redis(url);
    try {
      await assert.rejects(user.get('other:key'), /NOPERM/);
      await assert.rejects(user.call('FLUSHALL'), /NOPERM/);
      await assert.rejects(user.call('KEYS', '*'), /NOPERM/);
    } finally {
      user.disconnect();
    }
  });

  runLockStoreContract({ describe, it }, { name: 'RedisLockStore (ACL user)', createStore: () => new RedisLockStore({ url }) });

  it('never puts the password in an error message', async () => {
    const store = new RedisLockStore({ url: `redis://locker:wrong-${PASSWORD}@127.0.0.1:${redis.port}`, connectTimeout: 1_000 });
    try {
      await assert.rejects(
        store.acquire({ key: 'k', owner: 'o', ttl: 1000, wait: 0, onLost() {} }),
        (error: unknown) => {
          assert.ok(error instanceof LockStoreError);
          const text = `${error.message} ${String((error as { cause?: unknown }).cause)}`;
          assert.doesNotMatch(text, new RegExp(PASSWORD));
          return true;
        },
      );
    } finally {
      await store.close();
    }
  });

  it('never puts the password in the logs when renewals start failing', async () => {
    const { logger: capture, lines } = captureLogs();
    const app = await createTestApp({ lock: { store: new RedisLockStore({ url, connectTimeout: 500 }), ttl: 600 } });
    app.useLogger(capture);
    try {
      const lock = await app.get(LockService).acquire('creds:renewal');
      await admin.call('ACL', 'SETUSER', 'locker', 'resetpass', '>rotated-password');
      await admin.call('CLIENT', 'KILL', 'USER', 'locker');
      await waitFor(() => !lock.held, 5_000, 'the lock reported lost');
      assert.ok(lines.some((line) => /lost|failed/i.test(line)), `something was logged: ${lines.join('\n')}`);
      assert.ok(lines.every((line) => !line.includes(PASSWORD)), lines.join('\n'));
    } finally {
      await admin.call('ACL', 'SETUSER', 'locker', 'resetpass', `>${PASSWORD}`);
      await app.close();
    }
  });
});

describe('RedisLockStore over TLS', () => {
  let redis: RedisServer;
  let certificates: TestCertificates;
  let tlsPort: number;
  let ca: string;

  before(async () => {
    certificates = makeCertificates('redis');
    ca = readFileSync(certificates.caFile, 'utf8');
    tlsPort = await freePort();
    redis = await RedisServer.start({
      args: [
        '--tls-port', String(tlsPort),
        '--tls-cert-file', certificates.certFile,
        '--tls-key-file', certificates.keyFile,
        '--tls-ca-cert-file', certificates.caFile,
        '--tls-auth-clients', 'no',
      ],
    });
  });
  after(async () => {
    await redis.stop();
    certificates.remove();
  });

  runLockStoreContract(
    { describe, it },
    { name: 'RedisLockStore (TLS)', createStore: () => new RedisLockStore({ url: `rediss://127.0.0.1:${tlsPort}`, tls: { ca } }) },
  );

  it('refuses a server whose certificate it cannot verify', async () => {
    const store = new RedisLockStore({ url: `rediss://127.0.0.1:${tlsPort}`, connectTimeout: 1_000 });
    try {
      await assert.rejects(store.acquire({ key: 'k', owner: 'o', ttl: 1000, wait: 0, onLost() {} }), LockStoreError);
    } finally {
      await store.close();
    }
  });
});
