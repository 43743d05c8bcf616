/**
 * SVG panels for latency distributions, in the style of chart.ts (same
 * width, fonts and colours) but with two kinds chart.ts does not draw:
 *
 * - a percentile plot: one line per implementation, y = latency on a log
 *   scale, x = percentile on a "tail" scale (p0, p90, p99, p99.9 … equally
 *   spaced, then max), so the median and the worst waits are both readable;
 * - horizontal bars with a target line, for one figure per implementation.
 *
 * No dependencies, like chart.ts, so the script that measured also draws.
 */

export interface Distribution {
  readonly name: string;
  readonly color: string;
  /** Samples, in any order. */
  readonly values: readonly number[];
  /** Shown after the name in the legend. */
  readonly note?: string;
}

export interface HorizontalLine {
  readonly value: number;
  readonly label: string;
  readonly color: string;
}

export interface PercentilePanel {
  readonly kind: 'percentiles';
  readonly title: string;
  readonly yLabel: string;
  readonly series: readonly Distribution[];
  readonly lines?: readonly HorizontalLine[];
  /** Formats a y value (the axis is logarithmic). */
  readonly format: (value: number) => string;
}

export interface BarRow {
  readonly label: string;
  readonly value: number;
  readonly color: string;
  /** Printed at the end of the bar; default the formatted value. */
  readonly text?: string;
}

export interface BarsPanel {
  readonly kind: 'bars';
  readonly title: string;
  readonly xLabel: string;
  readonly rows: readonly BarRow[];
  readonly target?: HorizontalLine;
  readonly format: (value: number) => string;
}

export type Panel = PercentilePanel | BarsPanel;

const WIDTH = 900;
const MARGIN = { left: 90, right: 260, top: 40, bottom: 56 };
const PERCENTILE_HEIGHT = 420;
const BAR_ROW = 26;

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** The q-quantile of sorted values (nearest rank below, interpolated). */
function at(sorted: readonly number[], q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

function percentilePanel(p: PercentilePanel, offsetY: number): string {
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = PERCENTILE_HEIGHT - MARGIN.top - MARGIN.bottom;
  const x0 = MARGIN.left;
  const y0 = offsetY + MARGIN.top;
  const data = p.series.filter((s) => s.values.length > 0).map((s) => ({ ...s, sorted: [...s.values].sort((a, b) => a - b) }));
  // x: t = log10(1 / (1 - q)), from p0 up to the tail the largest sample set resolves; 'max' one step after.
  const tailMax = Math.max(2, Math.ceil(Math.log10(Math.max(...data.map((d) => d.sorted.length)))));
  const tMax = tailMax + 0.5;
  const x = (t: number) => x0 + (t / tMax) * plotW;
  // Sorted, so each series' extremes are its ends (no spreading of 100,000s of samples into Math.min).
  const lines = (p.lines ?? []).map((l) => l.value);
  const smallest = Math.min(...data.map((d) => d.sorted.find((v) => v > 0) ?? Infinity), ...lines);
  const largest = Math.max(...data.map((d) => d.sorted[d.sorted.length - 1]!), ...lines);
  const lo = 10 ** Math.floor(Math.log10(Math.max(1e-6, smallest)));
  const hi = 10 ** Math.ceil(Math.log10(largest));
  const y = (v: number) => y0 + plotH - ((Math.log10(Math.max(lo, v)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotH;
  const out: string[] = [];
  out.push(`<text x="${x0}" y="${offsetY + 24}" class="title">${escape(p.title)}</text>`);
  for (let decade = lo; decade <= hi * 1.001; decade *= 10) {
    for (const m of [1, 2, 5]) {
      const v = decade * m;
      if (v > hi * 1.001) break;
      out.push(`<line x1="${x0}" x2="${x0 + plotW}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" class="${m === 1 ? 'grid' : 'grid minor'}"/>`);
      out.push(`<text x="${x0 - 8}" y="${(y(v) + 4).toFixed(1)}" class="tick" text-anchor="end">${escape(p.format(v))}</text>`);
    }
  }
  const tickNames = ['p0', 'p90', 'p99', 'p99.9', 'p99.99', 'p99.999', 'p99.9999'];
  for (let t = 0; t <= tailMax; t++) {
    out.push(`<line x1="${x(t).toFixed(1)}" x2="${x(t).toFixed(1)}" y1="${y0}" y2="${y0 + plotH}" class="grid"/>`);
    out.push(`<text x="${x(t).toFixed(1)}" y="${y0 + plotH + 18}" class="tick" text-anchor="middle">${tickNames[t] ?? `t${t}`}</text>`);
  }
  out.push(`<text x="${x(Math.log10(2)).toFixed(1)}" y="${y0 + plotH + 18}" class="tick" text-anchor="middle">p50</text>`);
  out.push(`<line x1="${x(Math.log10(2)).toFixed(1)}" x2="${x(Math.log10(2)).toFixed(1)}" y1="${y0}" y2="${y0 + plotH}" class="grid minor"/>`);
  out.push(`<text x="${x(tMax).toFixed(1)}" y="${y0 + plotH + 18}" class="tick" text-anchor="middle">max</text>`);
  out.push(`<line x1="${x0}" x2="${x0}" y1="${y0}" y2="${y0 + plotH}" class="axis"/>`);
  out.push(`<line x1="${x0}" x2="${x0 + plotW}" y1="${y0 + plotH}" y2="${y0 + plotH}" class="axis"/>`);
  out.push(`<text transform="translate(${x0 - 72},${y0 + plotH / 2}) rotate(-90)" class="label" text-anchor="middle">${escape(p.yLabel)}</text>`);
  out.push(
    `<text x="${x0 + plotW / 2}" y="${y0 + plotH + 42}" class="label" text-anchor="middle">percentile of all acquisitions (tail scale: each step is 10x rarer)</text>`,
  );
  for (const d of data) {
    const n = d.sorted.length;
    const tEnd = Math.log10(n); // q = 1 - 1/n: the last rank the samples resolve
    const points: string[] = [];
    for (let t = 0; t <= tEnd + 1e-9; t += 0.02) {
      const q = Math.min(1, 1 - 10 ** -t);
      points.push(`${x(t).toFixed(1)},${y(at(d.sorted, q)).toFixed(1)}`);
    }
    points.push(`${x(tMax).toFixed(1)},${y(d.sorted[n - 1]!).toFixed(1)}`);
    out.push(`<polyline points="${points.join(' ')}" fill="none" stroke="${d.color}" stroke-width="2"><title>${escape(d.name)}</title></polyline>`);
    out.push(`<circle cx="${x(tMax).toFixed(1)}" cy="${y(d.sorted[n - 1]!).toFixed(1)}" r="3" fill="${d.color}"/>`);
  }
  for (const line of p.lines ?? []) {
    const ly = y(line.value).toFixed(1);
    out.push(`<line x1="${x0}" x2="${x0 + plotW}" y1="${ly}" y2="${ly}" stroke="${line.color}" stroke-width="1.5" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${x0 + 6}" y="${+ly - 4}" class="ref" fill="${line.color}" paint-order="stroke" stroke="#fff" stroke-width="3" stroke-linejoin="round">${escape(line.label)}</text>`);
  }
  data.forEach((d, j) => {
    const ly = y0 + 8 + j * 36;
    out.push(`<rect x="${x0 + plotW + 14}" y="${ly - 9}" width="14" height="4" fill="${d.color}"/>`);
    out.push(`<text x="${x0 + plotW + 34}" y="${ly - 3}" class="tick" font-weight="600">${escape(d.name)}</text>`);
    if (d.note) out.push(`<text x="${x0 + plotW + 34}" y="${ly + 11}" class="tick">${escape(d.note)}</text>`);
  });
  return out.join('\n');
}

function barsHeight(p: BarsPanel): number {
  return MARGIN.top + p.rows.length * BAR_ROW + 50;
}

function barsPanel(p: BarsPanel, offsetY: number): string {
  const labelW = 230;
  const x0 = MARGIN.left - 80 + labelW;
  const plotW = WIDTH - x0 - 140;
  const y0 = offsetY + MARGIN.top;
  const plotH = p.rows.length * BAR_ROW;
  const top = Math.max(...p.rows.map((r) => r.value), p.target?.value ?? 0) * 1.1 || 1;
  const x = (v: number) => x0 + (Math.max(0, v) / top) * plotW;
  const out: string[] = [];
  out.push(`<text x="${MARGIN.left - 80}" y="${offsetY + 24}" class="title">${escape(p.title)}</text>`);
  p.rows.forEach((row, i) => {
    const by = y0 + i * BAR_ROW;
    out.push(`<text x="${x0 - 8}" y="${by + 16}" class="tick" text-anchor="end">${escape(row.label)}</text>`);
    out.push(`<rect x="${x0}" y="${by + 4}" width="${Math.max(1, x(row.value) - x0).toFixed(1)}" height="${BAR_ROW - 8}" fill="${row.color}"/>`);
  });
  // the target over the bars, the values (with a white halo) over the target
  if (p.target) {
    const tx = x(p.target.value).toFixed(1);
    out.push(`<line x1="${tx}" x2="${tx}" y1="${y0 - 4}" y2="${y0 + plotH}" stroke="${p.target.color}" stroke-width="2" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${tx}" y="${y0 + plotH + 16}" class="ref" text-anchor="middle" fill="${p.target.color}" paint-order="stroke" stroke="#fff" stroke-width="3" stroke-linejoin="round">${escape(p.target.label)}</text>`);
  }
  p.rows.forEach((row, i) => {
    const by = y0 + i * BAR_ROW;
    out.push(`<text x="${(x(row.value) + 6).toFixed(1)}" y="${by + 16}" class="value" paint-order="stroke" stroke="#fff" stroke-width="3" stroke-linejoin="round">${escape(row.text ?? p.format(row.value))}</text>`);
  });
  out.push(`<line x1="${x0}" x2="${x0}" y1="${y0}" y2="${y0 + plotH}" class="axis"/>`);
  out.push(`<line x1="${x0}" x2="${x0 + plotW}" y1="${y0 + plotH}" y2="${y0 + plotH}" class="axis"/>`);
  out.push(`<text x="${x0 + plotW / 2}" y="${y0 + plotH + 34}" class="label" text-anchor="middle">${escape(p.xLabel)}</text>`);
  return out.join('\n');
}

/** One SVG document: a title, a caption line, then the panels stacked. */
export function renderPanels(title: string, caption: string, panels: readonly Panel[]): string {
  const head = 56;
  const heights = panels.map((p) => (p.kind === 'percentiles' ? PERCENTILE_HEIGHT : barsHeight(p)));
  const height = head + heights.reduce((a, b) => a + b, 0);
  let offset = head;
  const body = panels.map((p, i) => {
    const svg = p.kind === 'percentiles' ? percentilePanel(p, offset) : barsPanel(p, offset);
    offset += heights[i]!;
    return svg;
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif">`,
    '<style>.title{font-size:15px;font-weight:600;fill:#222}.label{font-size:12px;fill:#333}.tick{font-size:11px;fill:#555}.value{font-size:11px;fill:#222}.ref{font-size:11px;font-weight:600}.grid{stroke:#e6e6e6}.minor{stroke-dasharray:2 3}.axis{stroke:#888}.head{font-size:18px;font-weight:700;fill:#111}.caption{font-size:11px;fill:#666}</style>',
    '<rect width="100%" height="100%" fill="#fff"/>',
    `<text x="16" y="26" class="head">${escape(title)}</text>`,
    `<text x="16" y="44" class="caption">${escape(caption)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}
