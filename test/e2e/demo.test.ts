import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { runDemo } from '../support/demo.js';
import type { NodeRun } from '../support/run-node.js';

/** The rows of the cron table: tick, instance(s) that ran it, fence(s), skipped. */
function tickRows(output: string): string[][] {
  return output
    .split('\n')
    .filter((line) => /^\s+\d\d:\d\d:\d\d\s/.test(line))
    .map((line) => line.trim().split(/\s{2,}/));
}

describe('npm run demo on the embedded store', () => {
  let run: NodeRun;
  before(async () => {
    run = await runDemo({ LOCK_STORE: '' });
  });

  it('exits by itself with code 0 and the OK verdict', () => {
    assert.equal(run.code, 0, run.output);
    assert.match(run.output, /^OK: 1 runner per tick, same-id payments serialized, different ids in parallel$/m);
    assert.doesNotMatch(run.output, /FAIL/);
  });

  it('shows exactly one of the three instances running each cron tick while the others skip', () => {
    const rows = tickRows(run.output);
    assert.ok(rows.length >= 3, `expected at least 3 ticks, got:\n${run.output}`);
    for (const [tick, ranOn, , skipped] of rows) {
      assert.match(ranOn, /^app-\d$/, `tick ${tick} ran on "${ranOn}"`);
      assert.equal(skipped, '2', `tick ${tick}`);
    }
  });

  it('shows the payments of one order one after another on several instances, and the other orders beside them', () => {
    assert.match(run.output, /order 1: 3 payments on app-\d, app-\d, app-\d, one after another, fencing tokens growing/);
    assert.match(run.output, /orders 1, 2, 3: different ids ran at the same time/);
    assert.match(run.output, /min \d+ ms, median \d+ ms, max \d+ ms/);
  });
});

describe('npm run demo with LOCK_STORE naming a store this version lacks', () => {
  it('says so and exits with code 2 without starting the apps', async () => {
    const { code, output } = await runDemo({ LOCK_STORE: 'zookeeper://127.0.0.1:2181' });
    assert.equal(code, 2, output);
    assert.match(output, /LOCK_STORE has the unknown scheme "zookeeper:"/);
    assert.doesNotMatch(output, /Cron ReportJob/);
  });
});
