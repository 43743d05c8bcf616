import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertExitsAfterClose, runExitChild } from '../support/exit-check.js';

describe('a process that took and released locks', () => {
  it('exits by itself without closing the application', async () => {
    const { code, output } = await runExitChild([]);
    assert.equal(code, 0, output);
    assert.match(output, /done/);
  });

  it('exits by itself within a second after closing the application', async () => {
    await assertExitsAfterClose([]);
  });

  it('exits by itself after closing two applications that share one store', async () => {
    await assertExitsAfterClose(['--shared']);
  });
});
