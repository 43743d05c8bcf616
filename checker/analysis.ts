import type { EnterEvent, ResourceOp, SectionEvent } from './protocol.js';

/** A fault as it was injected. */
export interface Fault {
  kind: string;
  at: number;
  /** When it had healed (server faults). */
  until?: number;
  /** For faults on a holder: the worker and the key it held. */
  worker?: number;
  key?: string;
}

export interface History {
  sections: SectionEvent[];
  /**
   * Workers killed inside a section (SIGKILL), with that section: entered,
   * never left. Known only once the worker's reports have all arrived (see
   * checker/main.ts).
   */
  killed: { enter: EnterEvent; at: number }[];
  ops: ResourceOp[];
  faults: Fault[];
  finalValues: Map<string, number>;
  seconds: number;
  /** Host time when the workers were told to stop. */
  endedAt: number;
  /**
   * Server faults after which the store starts its leases afresh. An etcd
   * leader that takes over extends every lease to its full ttl, so a dead
   * holder's locks outlive it by a session ttl counted from the election, not
   * from the death.
   */
  leaseResets?: string[];
  /**
   * Server faults during which the store cannot serve anyone (a paused or
   * restarting server): time inside them does not count against liveness.
   */
  outages?: string[];
}

export interface Overlap {
  key: string;
  earlier: { worker: number; token: number; start: number; end: number; toldAt: number };
  later: { worker: number; token: number; start: number };
}

export interface Findings {
  sections: number;
  sectionsPerSecond: number;
  overlaps: Overlap[];
  tokenRegressions: number;
  staleAccepted: number;
  staleRejected: number;
  lostUpdates: number;
  /** Keys whose final counter differs from the number of accepted writes. */
  countMismatches: string[];
  /**
   * Milliseconds from a holder's death (SIGKILL), or from the end of a later
   * lease reset, to the next acquisition of its key, less the time the server
   * was out (see `History.outages`) in between.
   */
  deathToNext: number[];
  /**
   * For deaths whose key nobody acquired again before the run ended: how long
   * it had been free-but-unavailable by then (from the death or a later reset).
   */
  deathNeverPassedOn: number[];
  faultsByKind: Record<string, number>;
}

/**
 * Checks a run's history:
 * - **overlaps**: two critical sections of one key that overlap while the
 *   earlier holder had not yet been told it lost the lock, where "told" is the
 *   earlier of its signal aborting and its own deadline passing (a holder that
 *   was frozen cannot act on a signal, but its own clock had already ended its
 *   lease: that case is what fencing is for, and is checked below);
 * - **token regressions**: a later acquisition of a key with a lower token
 *   (a section entered after its holder's own deadline is no later
 *   acquisition: its grant came before its report);
 * - **stale accepted**: a resource operation accepted although a higher token
 *   had already been accepted for its key (recomputed from the log, not taken
 *   from the resource's own answer);
 * - **lost updates**: an accepted write whose read was not the current value;
 * - **count mismatches**: a final counter that differs from the accepted writes.
 */
export function analyse(history: History): Findings {
  const byKey = new Map<string, { worker: number; token: number; start: number; end: number; toldAt: number }[]>();
  const add = (key: string, s: { worker: number; token: number; start: number; end: number; toldAt: number }) =>
    (byKey.get(key) ?? byKey.set(key, []).get(key))?.push(s);
  for (const s of history.sections) {
    add(s.key, { worker: s.worker, token: s.token, start: s.start, end: s.end, toldAt: Math.min(s.abortedAt ?? Infinity, s.deadline) });
  }
  for (const { enter, at } of history.killed) {
    add(enter.key, { worker: enter.worker, token: enter.token, start: enter.start, end: at, toldAt: Math.min(at, enter.deadline) });
  }

  const overlaps: Overlap[] = [];
  let tokenRegressions = 0;
  for (const [key, sections] of byKey) {
    sections.sort((a, b) => a.start - b.start);
    let topToken = -Infinity;
    // Sections that began earlier and had not ended by the current one's start.
    let open: typeof sections = [];
    for (const later of sections) {
      // A holder frozen between its grant and its report of entering reports
      // an entry after its own deadline: it was granted before the next
      // holder, not after, and fencing is what stops it (counted as stale).
      if (later.token < topToken && later.start < later.toldAt) tokenRegressions++;
      topToken = Math.max(topToken, later.token);
      open = open.filter((earlier) => earlier.end > later.start);
      for (const earlier of open) {
        if (later.start < earlier.toldAt && earlier.worker !== later.worker) {
          overlaps.push({ key, earlier, later: { worker: later.worker, token: later.token, start: later.start } });
        }
      }
      open.push(later);
    }
  }

  let staleAccepted = 0;
  let staleRejected = 0;
  let lostUpdates = 0;
  const highest = new Map<string, number>();
  const accepted = new Map<string, number>();
  for (const op of history.ops) {
    const top = highest.get(op.key) ?? -Infinity;
    if (!op.accepted) {
      staleRejected++;
      continue;
    }
    if (op.token < top) staleAccepted++;
    highest.set(op.key, Math.max(top, op.token));
    if (op.kind === 'write') {
      accepted.set(op.key, (accepted.get(op.key) ?? 0) + 1);
      if (op.read !== op.current) lostUpdates++;
    }
  }
  const countMismatches = [...accepted].filter(([key, count]) => (history.finalValues.get(key) ?? 0) !== count).map(([key]) => key);

  const deathToNext: number[] = [];
  const deathNeverPassedOn: number[] = [];
  const resets = history.faults.filter((f) => history.leaseResets?.includes(f.kind));
  const outages = history.faults.filter((f) => history.outages?.includes(f.kind));
  for (const fault of history.faults) {
    if (fault.kind !== 'kill-holder' || fault.key === undefined) continue;
    const next = (byKey.get(fault.key) ?? []).find((s) => s.start > fault.at && s.worker !== fault.worker);
    const until = next?.start ?? history.endedAt;
    const resetsSince = resets.filter((f) => f.at < until && (f.until ?? f.at) > fault.at).map((f) => Math.min(f.until ?? f.at, until));
    const from = Math.max(fault.at, ...resetsSince);
    const out = outages.reduce((sum, f) => sum + Math.max(0, Math.min(until, f.until ?? f.at) - Math.max(from, f.at)), 0);
    (next ? deathToNext : deathNeverPassedOn).push(until - from - out);
  }

  const faultsByKind: Record<string, number> = {};
  for (const fault of history.faults) faultsByKind[fault.kind] = (faultsByKind[fault.kind] ?? 0) + 1;
  return {
    sections: history.sections.length,
    sectionsPerSecond: history.sections.length / history.seconds,
    overlaps,
    tokenRegressions,
    staleAccepted,
    staleRejected,
    lostUpdates,
    countMismatches,
    deathToNext,
    deathNeverPassedOn,
    faultsByKind,
  };
}
