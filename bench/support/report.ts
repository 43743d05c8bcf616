/** Small helpers for printing a benchmark's results: aligned tables, units, PASS/MISS, run order. */
import { fmt } from './stats.js';

/** Writes one line to stdout. */
export const log = (line = ''): void => {
  process.stdout.write(line + '\n');
};

/** PASS or MISS. */
export const mark = (pass: boolean): string => (pass ? 'PASS' : 'MISS');

/** The order of `items` in run `run`: rotated, so every item takes every position equally often. */
export function rotation<T>(items: readonly T[], run: number): T[] {
  const k = run % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

/** Rows as aligned columns, the first row a header underlined with dashes. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => (row[c] ?? '').length)));
  const line = (row: string[]) => row.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd();
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

/** 1.234 -> "1.23 ms" */
export const ms = (v: number, digits = 2): string => `${fmt(v, digits)} ms`;
/** milliseconds shown as microseconds: 0.054 -> "54 µs" */
export const us = (vMs: number): string => `${fmt(vMs * 1_000)} µs`;

