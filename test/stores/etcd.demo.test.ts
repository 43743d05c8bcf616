import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EtcdCluster } from '../support/etcd-cluster.js';

const demo = fileURLToPath(new URL('../../sample-app/demo.js', import.meta.url));
const EXIT_WITHIN_MS = 30_000;

function runDemo(env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [demo], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let output = '';
    proc.stdout.on('data', (chunk) => (output += chunk));
    proc.stderr.on('data', (chunk) => (output += chunk));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`the demo did not exit by itself within ${EXIT_WITHIN_MS}ms; output:\n${output}`));
    }, EXIT_WITHIN_MS);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe('npm run demo on the etcd store', () => {
  let etcd: EtcdCluster;
  before(async () => {
    etcd = await EtcdCluster.start({ members: 1 });
  });
  after(() => etcd.stop());

  it('runs one instance per cron tick and serialises payments with LOCK_STORE=etcd://', async () => {
    const { code, output } = await runDemo({ LOCK_STORE: `etcd://${etcd.hosts[0]?.replace(/^http:\/\//, '')}` });
    assert.equal(code, 0, output);
    assert.match(output, /etcd store/);
    assert.match(output, /^OK: 1 runner per tick, same-id payments serialized, different ids in parallel$/m);
  });
});
