import type { PaymentRecord, ReportRecord } from './src/journal.js';

export interface DemoRun {
  readonly instances: readonly string[];
  readonly store: string;
  /** `performance.now()` when the payment requests were sent. */
  readonly sentAt: number;
  /** HTTP status of every payment request. */
  readonly statuses: readonly number[];
  readonly payments: readonly PaymentRecord[];
  /** The cron ticks, in epoch seconds, while every instance was up. */
  readonly ticks: readonly number[];
  readonly reports: readonly ReportRecord[];
}

const TIMELINE_WIDTH = 40;

/** The report's lines and the failures found; no failures means the locks did their job. */
export function buildReport(run: DemoRun): { lines: string[]; failures: string[] } {
  const failures: string[] = [];
  const lines = [
    `nestjs-distributed-lock demo: ${run.instances.length} instances of sample-app (${run.instances.join(', ')}) in one process, ${run.store} store`,
    '',
    ...cronSection(run, failures),
    '',
    ...paymentSection(run, failures),
    '',
  ];
  return { lines, failures };
}

function cronSection(run: DemoRun, failures: string[]): string[] {
  const rows = run.ticks.map((second) => {
    const runners = run.reports.filter((report) => report.second === second);
    const tick = new Date(second * 1000).toISOString().slice(11, 19);
    if (runners.length !== 1) {
      failures.push(`tick ${tick} ran on ${runners.length} instances (${runners.map((r) => r.instance).join(', ') || 'none'})`);
    }
    return [
      tick,
      runners.map((r) => r.instance).join(', ') || '-',
      runners.map((r) => String(r.fencingToken)).join(', ') || '-',
      String(run.instances.length - runners.length),
    ];
  });
  return [
    `Cron ReportJob.build, every second on every instance, @WithLock('reports:tick', { onBusy: 'skip', lockAtLeastFor: '800ms' })`,
    ...table(['tick (UTC)', 'ran on', 'fence', 'skipped'], rows, [false, false, true, true]),
  ];
}

function paymentSection(run: DemoRun, failures: string[]): string[] {
  const failed = run.statuses.filter((status) => status !== 201);
  if (failed.length > 0) failures.push(`${failed.length} payment requests failed (HTTP ${failed.join(', ')})`);
  const payments = [...run.payments].sort((a, b) => a.orderId.localeCompare(b.orderId) || a.startedAt - b.startedAt);
  const at = (time: number) => time - run.sentAt;
  const span = Math.max(1, ...payments.map((p) => at(p.finishedAt)));
  const rows = payments.map((p) => [
    p.orderId,
    p.instance,
    String(p.fencingToken),
    ms(at(p.startedAt)),
    ms(p.finishedAt - p.startedAt),
    timeline(at(p.startedAt), at(p.finishedAt), span),
  ]);
  const orderIds = [...new Set(payments.map((p) => p.orderId))];
  const verdicts = orderIds.map((id) => serialization(id, payments.filter((p) => p.orderId === id), failures));
  verdicts.push(parallelism(orderIds, payments, failures));
  const waits = payments.map((p) => at(p.startedAt)).sort((a, b) => a - b);
  return [
    `Payments: ${run.statuses.length} requests to POST /orders/:id/pay sent at once (t=0), @WithLock(id => \`orders:\${id}\`, { wait: '5s' })`,
    ...table(['order', 'instance', 'fence', 'waited ms', 'paying ms', timelineHeader(span)], rows, [false, false, true, true, true, false]),
    ...verdicts.map((verdict) => `  ${verdict}`),
    waits.length > 0
      ? `  wait from request sent to payment start: min ${ms(waits[0])} ms, median ${ms(waits[Math.floor(waits.length / 2)])} ms, max ${ms(waits[waits.length - 1])} ms`
      : '  no payment ran',
  ];
}

/** Same-id payments must not overlap, and each must carry a larger fencing token than the one before. */
function serialization(orderId: string, payments: readonly PaymentRecord[], failures: string[]): string {
  for (let i = 1; i < payments.length; i++) {
    const before = payments[i - 1];
    const after = payments[i];
    if (after.startedAt < before.finishedAt) {
      failures.push(`order ${orderId}: payments on ${before.instance} and ${after.instance} overlapped`);
    } else if (after.fencingToken <= before.fencingToken) {
      failures.push(`order ${orderId}: fencing token ${after.fencingToken} did not grow past ${before.fencingToken}`);
    }
  }
  const on = [...new Set(payments.map((p) => p.instance))].join(', ');
  return payments.length > 1
    ? `order ${orderId}: ${payments.length} payments on ${on}, one after another, fencing tokens growing`
    : `order ${orderId}: 1 payment on ${on}`;
}

/** Payments for different ids must have run at the same time, every pair of ids at least once. */
function parallelism(orderIds: readonly string[], payments: readonly PaymentRecord[], failures: string[]): string {
  for (const [i, a] of orderIds.entries()) {
    for (const b of orderIds.slice(i + 1)) {
      const overlap = payments.some(
        (p) => p.orderId === a && payments.some((q) => q.orderId === b && q.startedAt < p.finishedAt && p.startedAt < q.finishedAt),
      );
      if (!overlap) failures.push(`orders ${a} and ${b} never ran at the same time`);
    }
  }
  return `orders ${orderIds.join(', ')}: different ids ran at the same time`;
}

function timeline(start: number, end: number, span: number): string {
  const from = Math.floor((start / span) * TIMELINE_WIDTH);
  const to = Math.max(from + 1, Math.round((end / span) * TIMELINE_WIDTH));
  return `|${' '.repeat(from)}${'#'.repeat(to - from)}${' '.repeat(TIMELINE_WIDTH - to)}|`;
}

function timelineHeader(span: number): string {
  const end = `${ms(span)} ms`;
  return `0${' '.repeat(TIMELINE_WIDTH + 1 - end.length)}${end}`;
}

function ms(value: number): string {
  return `${Math.round(value)}`;
}

function table(header: readonly string[], rows: readonly string[][], rightAligned: readonly boolean[]): string[] {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column].length)));
  const line = (cells: readonly string[]) =>
    '  ' +
    cells
      .map((cell, column) => (rightAligned[column] ? cell.padStart(widths[column]) : cell.padEnd(widths[column])))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)];
}
