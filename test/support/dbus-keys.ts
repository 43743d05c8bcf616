import { MAX_KEY_LENGTH } from 'nestjs-distributed-lock';

/**
 * Keys that try to break a mapping to bus names: separators and characters
 * bus names forbid, wildcards, path tricks, NUL, leading digits, non-Latin
 * text, unpaired surrogates, case differences, the longest key and beyond.
 */
export const HOSTILE_KEYS: readonly string[] = [
  'a',
  'A',
  'orders:42',
  'Orders:42',
  'orders/42',
  'orders.42',
  'orders_42',
  'orders-42',
  'orders 42',
  '*',
  'a*',
  '**',
  '..',
  '../a',
  '.',
  ':',
  '::',
  '\u0000',
  'a\u0000b',
  'a\u0000',
  '42',
  '0a',
  'ключ🔒',
  '鍵',
  '🔒',
  '\uD800',
  '\uDC00',
  'x'.repeat(MAX_KEY_LENGTH),
  'x'.repeat(MAX_KEY_LENGTH - 1) + 'y',
  'y' + 'x'.repeat(MAX_KEY_LENGTH - 1),
  'x'.repeat(5_000),
  '',
];

/** The longest `namePrefix` the store accepts (200 characters), in many elements. */
export const LONGEST_PREFIX = `a${'.b'.repeat(99)}c`;
