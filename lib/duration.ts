import { InvalidLockOptionError } from './errors.js';

/**
 * A duration: milliseconds as a number, or a string with a unit
 * (`'500ms'`, `'5s'`, `'2m'`, `'1h'`, `'1.5s'`).
 */
export type Duration = number | string;

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;
const PATTERN = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$/;

/**
 * Node's timers cap at 2^31-1 ms (about 24.8 days); a longer duration would
 * fire at once, so it is refused rather than silently shortened.
 */
export const MAX_DURATION_MS = 2_147_483_647;

/**
 * Parses a duration into whole milliseconds (rounded up, so a lease is never
 * shorter than asked). `allowZero` is for `wait`, where 0 means one try.
 */
export function toMilliseconds(value: unknown, option: string, allowZero = false): number {
  let ms: number;
  if (typeof value === 'number') {
    ms = value;
  } else if (typeof value === 'string') {
    const match = PATTERN.exec(value);
    if (!match) {
      throw new InvalidLockOptionError(
        option,
        value,
        `write milliseconds as a number (1500) or a string with a unit: '500ms', '5s', '2m' or '1h'`,
      );
    }
    ms = Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
  } else {
    throw new InvalidLockOptionError(option, value, `pass milliseconds as a number or a string such as '5s'`);
  }
  if (!Number.isFinite(ms) || ms < 0 || (ms === 0 && !allowZero)) {
    throw new InvalidLockOptionError(
      option,
      value,
      allowZero ? 'use a finite duration of 0 or more' : 'use a finite duration greater than 0',
    );
  }
  const whole = Math.ceil(ms);
  if (whole > MAX_DURATION_MS) {
    throw new InvalidLockOptionError(option, value, `use at most ${MAX_DURATION_MS}ms (about 24.8 days)`);
  }
  return whole;
}
