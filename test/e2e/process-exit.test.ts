import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runExitChild } from '../support/exit-check.js';

describe('a process that took and released locks', () => {
  it('exits by itself without closing the application', async () => {
    const { code, output } = await runExitChild([]);
    assert.equal(code, 0, output);
    assert.match(output, /done/);
  });

  it('exits by itself after closing the application', async () => {
    const { code, output } = await runExitChild(['--close']);
    assert.equal(code, 0, output);
    assert.match(output, /done/);
  });
});
