import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { DbusDaemon } from '../support/dbus-daemon.js';
import { EtcdCluster } from '../support/etcd-cluster.js';
import { RedisServer } from '../support/redis-server.js';

const child = fileURLToPath(new URL('../support/bad-input-child.js', import.meta.url));

interface Outcome {
  results: Record<string, { ok: boolean; error?: string; message?: string; ms: number; value?: unknown }>;
  unhandled: string[];
  leftovers: string[];
  connectTimeout: number;
}

/** Runs the cases in a child process that must exit by itself (within 15s) once they are done. */
function runCases(args: string[]): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [child, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (chunk) => (out += chunk));
    proc.stderr.on('data', (chunk) => (err += chunk));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`the process did not exit by itself:\n${out}\n${err}`));
    }, 60_000);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`exit ${code}:\n${out}\n${err}`));
      resolve(JSON.parse(out.trim().split('\n').at(-1) as string) as Outcome);
    });
  });
}

/** What each bad input must produce: the error class and words of its message, or a value. */
const expected: Record<string, { error: string; message: RegExp } | { value: unknown }> = {
  'empty key': { error: 'InvalidLockKeyError', message: /the key is empty/ },
  'non-string key': { error: 'InvalidLockKeyError', message: /the key is 42; use a non-empty string/ },
  'over-long key': { error: 'InvalidLockKeyError', message: /longer than 1024 characters/ },
  'unpaired surrogate': { error: 'InvalidLockKeyError', message: /unpaired UTF-16 surrogate/ },
  'zero ttl': { error: 'InvalidLockOptionError', message: /ttl of lock "matrix:d": 0/ },
  'negative ttl': { error: 'InvalidLockOptionError', message: /ttl of lock "matrix:d": -1/ },
  'NaN ttl': { error: 'InvalidLockOptionError', message: /ttl of lock "matrix:d": NaN/ },
  'infinite wait': { error: 'InvalidLockOptionError', message: /wait of lock "matrix:d": Infinity/ },
  'unparsable wait': { error: 'InvalidLockOptionError', message: /wait of lock "matrix:d": "soon"/ },
  'unknown module option': { error: 'InvalidLockOptionError', message: /LockModule option "tll"/ },
  'key function that throws': { error: 'InvalidLockKeyError', message: /Orders\.pay: the key function threw for arguments \["boom"\]: no tenant/ },
  'release twice': { value: [true, false] },
  'release after loss': { value: false },
  'extend after loss': { error: 'LockLostError', message: /Lock "matrix:lost" was lost/ },
  'closed store': { error: 'LockStoreError', message: /closed/ },
  'unreachable server': { error: 'LockStoreError', message: /lock ":matrix:net"/ },
  'wrong password': { error: 'LockStoreError', message: /^(?!.*not-the-password).*lock ":matrix:net"/ },
};

function check(outcome: Outcome): void {
  assert.deepEqual(outcome.unhandled, [], 'no unhandled rejection');
  assert.deepEqual(outcome.leftovers, [], 'no lock left behind');
  for (const [name, result] of Object.entries(outcome.results)) {
    const want = expected[name];
    assert.ok(want, `an expectation for ${name}`);
    if ('value' in want) {
      assert.equal(result.ok, true, `${name}: ${result.message}`);
      assert.deepEqual(result.value, want.value, name);
    } else {
      assert.equal(result.ok, false, `${name} must fail`);
      assert.equal(result.error, want.error, `${name}: ${result.message}`);
      assert.match(result.message ?? '', want.message, name);
      if (outcome.connectTimeout > 0) assert.ok(result.ms < outcome.connectTimeout + 1_500, `${name} answered within the connect timeout (${Math.round(result.ms)}ms)`);
    }
  }
}

describe('every bad input, against every store', () => {
  let redis: RedisServer;
  let bus: DbusDaemon;
  let etcd: EtcdCluster;
  before(async () => {
    bus = await DbusDaemon.start();
    redis = await RedisServer.start();
    const admin = new Redis(redis.port, '127.0.0.1');
    await admin.config('SET', 'requirepass', 'matrix-password');
    admin.disconnect();
    etcd = await EtcdCluster.start();
    await etcd.enableAuth('matrix-password');
  });
  after(async () => {
    await redis?.stop();
    await bus?.stop();
    await etcd?.stop();
  });

  it('memory: typed errors naming the problem, no unhandled rejection, nothing left behind, and the process exits by itself', async () => {
    const outcome = await runCases(['memory']);
    check(outcome);
    assert.equal(Object.keys(outcome.results).length, Object.keys(expected).length - 2, 'every case but the network ones ran');
  });

  it('redis: the same, with failures answered within the connect timeout', async () => {
    const outcome = await runCases(['redis', `redis://:matrix-password@127.0.0.1:${redis.port}`]);
    check(outcome);
    assert.equal(Object.keys(outcome.results).length, Object.keys(expected).length, 'every case ran');
  });

  it('etcd: the same, as a user of an etcd with auth enabled', async () => {
    const [host] = etcd.hosts;
    const outcome = await runCases(['etcd', (host as string).replace('http://', 'http://root:matrix-password@')]);
    check(outcome);
    assert.equal(Object.keys(outcome.results).length, Object.keys(expected).length, 'every case ran');
  });

  it('dbus: the same (no passwords: the bus authenticates the process\'s user)', async () => {
    const outcome = await runCases(['dbus', bus.address]);
    check(outcome);
    assert.equal(Object.keys(outcome.results).length, Object.keys(expected).length - 1, 'every case but the password one ran');
  });
});
