import { InvalidLockKeyError, describeValue } from './errors.js';

/**
 * The longest key accepted, in UTF-16 code units. Long enough for composite
 * keys built from ids; short enough that every store can hold it (stores with
 * tighter limits, such as bus names, hash it).
 */
export const MAX_KEY_LENGTH = 1024;

/**
 * Checks a key named by the application. `where` says who supplied it, so the
 * error can point at the decorator or call site.
 */
export function validateKey(key: unknown, where: string): string {
  if (typeof key !== 'string') {
    throw new InvalidLockKeyError(`${where}: the key is ${describeValue(key)}; use a non-empty string`);
  }
  if (key.length === 0) {
    throw new InvalidLockKeyError(`${where}: the key is empty; use a non-empty string such as "orders:42"`);
  }
  if (key.length > MAX_KEY_LENGTH) {
    throw new InvalidLockKeyError(
      `${where}: the key ${describeValue(key)} is longer than ${MAX_KEY_LENGTH} characters; hash long inputs into a shorter key`,
    );
  }
  if (!key.isWellFormed()) {
    throw new InvalidLockKeyError(
      `${where}: the key ${describeValue(key)} contains an unpaired UTF-16 surrogate; use well-formed text (String.prototype.toWellFormed())`,
    );
  }
  return key;
}

/**
 * Turns the module's prefix into the start of every name a store sees: the
 * store key is `keySpace(prefix) + key`.
 *
 * The prefix's own ':' and '%' are percent-encoded, so the first ':' in a
 * store key always ends the prefix: no key, however hostile, can produce a
 * name inside another prefix (`a` + `b:c` and `a:b` + `c` stay apart).
 */
export function keySpace(prefix: string): string {
  return `${prefix.replace(/[%:]/g, (c) => (c === '%' ? '%25' : '%3A'))}:`;
}
