import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { analyse, type History } from '../../checker/analysis.js';
import type { SectionEvent } from '../../checker/protocol.js';

const section = (worker: number, token: number, start: number, end: number, deadline: number): SectionEvent => ({
  type: 'section',
  worker,
  key: 'k',
  token,
  start,
  end,
  deadline,
  write: 'accepted',
});

const history = (sections: SectionEvent[]): History => ({
  sections,
  killed: [],
  ops: [],
  faults: [],
  finalValues: new Map(),
  seconds: 1,
  endedAt: 10_000,
});

describe('the checker analysis of tokens', () => {
  it('counts a later acquisition with a lower token as a regression', () => {
    const findings = analyse(history([section(1, 5, 0, 10, 1_000), section(2, 4, 20, 30, 1_020)]));
    assert.equal(findings.tokenRegressions, 1);
  });

  it('does not count a holder that reports entering after its own deadline (frozen between its grant and its report)', () => {
    // Worker 2 was granted token 4 first, froze before reporting, and entered after its deadline at 15.
    const findings = analyse(history([section(1, 5, 0, 10, 1_000), section(2, 4, 20, 30, 15)]));
    assert.equal(findings.tokenRegressions, 0);
  });
});
