import type { Findings } from './analysis.js';

function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

const ms = (value: number) => (Number.isNaN(value) ? '-' : `${Math.round(value)}ms`);

/** Prints the findings and returns how many violations there were. */
export function report(run: {
  findings: Findings;
  counts: { busy: number; storeErrors: number; crashed: number };
  stragglers: number;
  ttl: number;
  deathMargin: number;
  leaseResets?: string[];
  outages?: string[];
  /** Whether the store's tokens are ordered; the token checks mean nothing otherwise. */
  fencing: boolean;
  seed: number;
  store: string;
}): number {
  const { findings: f, counts, ttl, deathMargin } = run;
  const since =
    (run.leaseResets?.length ? ` (or the end of a later ${run.leaseResets.join('/')})` : '') +
    (run.outages?.length ? `, less ${run.outages.join('/')} time,` : '');
  const deathBound = ttl + deathMargin;
  const slowDeaths = [...f.deathToNext, ...f.deathNeverPassedOn].filter((gap) => gap > deathBound).length;
  const checks: [string, string, boolean][] = [
    ['overlapping sections, earlier holder not yet told', String(f.overlaps.length), f.overlaps.length === 0],
    ...(run.fencing
      ? ([['stale operations accepted by the resource', String(f.staleAccepted), f.staleAccepted === 0]] as [string, string, boolean][])
      : []),
    ['lost updates among accepted writes', String(f.lostUpdates), f.lostUpdates === 0],
    ['counters that differ from accepted writes', String(f.countMismatches.length), f.countMismatches.length === 0],
    ...(run.fencing
      ? ([['later acquisitions with a lower token', String(f.tokenRegressions), f.tokenRegressions === 0]] as [string, string, boolean][])
      : []),
    [`holder death${since} to next acquisition over ${deathBound}ms (ttl + ${deathMargin}ms)`, String(slowDeaths), slowDeaths === 0],
    ['workers that crashed', String(counts.crashed), counts.crashed === 0],
    ['workers that did not exit by themselves', String(run.stragglers), run.stragglers === 0],
  ];
  console.log('');
  console.log(`critical sections: ${f.sections} (${f.sectionsPerSecond.toFixed(1)}/s); busy give-ups: ${counts.busy}; store errors seen by workers: ${counts.storeErrors}`);
  console.log(`stale operations rejected by fencing: ${f.staleRejected}`);
  console.log(
    `holder death${since} to next acquisition: p50 ${ms(percentile(f.deathToNext, 50))}, p99 ${ms(percentile(f.deathToNext, 99))}, max ${ms(f.deathToNext.length ? Math.max(...f.deathToNext) : Number.NaN)} over ${f.deathToNext.length} deaths` +
      (f.deathNeverPassedOn.length ? `; ${f.deathNeverPassedOn.length} not passed on before the end, after ${f.deathNeverPassedOn.map(ms).join(', ')}` : ''),
  );
  console.log(`faults: ${Object.entries(f.faultsByKind).map(([kind, n]) => `${kind} ${n}`).join(', ') || 'none'}`);
  for (const [what, value, ok] of checks) console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}: ${value}`);
  if (!run.fencing) console.log('n/a  token checks: this store\'s tokens are not ordered; workers check lock.held before writing instead');
  for (const overlap of f.overlaps.slice(0, 5)) console.log(`  overlap on ${overlap.key}: ${JSON.stringify(overlap)}`);
  const violations = checks.filter(([, , ok]) => !ok).length;
  console.log(violations === 0 ? `checker: no violations (store ${run.store}, seed ${run.seed})` : `checker: ${violations} violation(s); replay with --seed ${run.seed}`);
  return violations;
}
