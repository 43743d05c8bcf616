import { hash } from 'node:crypto';
import { InvalidLockOptionError } from '../../errors.js';

/** The longest well-known bus name the D-Bus specification allows. */
export const MAX_BUS_NAME_LENGTH = 255;

/** Start of every bus name the store owns, unless `namePrefix` says otherwise. */
export const DEFAULT_NAME_PREFIX = 'nestjs_distributed_lock';

/** The longest `namePrefix`: it leaves room for the readable tail and the digest. */
export const MAX_NAME_PREFIX_LENGTH = 200;

/** Letters and digits of the key's end kept in the name, so `busctl list` shows which lock a name is. */
const READABLE_LENGTH = 40;

/** 128 bits of SHA-256, in base32: 26 characters. */
const DIGEST_LENGTH = 26;
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** One element of a well-known bus name: ASCII letters, digits, `_` and `-`, not starting with a digit. */
const ELEMENT = /^[A-Za-z_-][A-Za-z0-9_-]*$/;

/**
 * The well-known bus name that stands for lock `key`:
 * `<namePrefix>.<readable>_<digest>`.
 *
 * - `digest` is the first 128 bits of SHA-256 over the key's UTF-16 code
 *   units (little-endian), in lowercase base32. It alone tells keys apart:
 *   two keys share a name only if SHA-256 collides on 128 bits, which no one
 *   has ever seen happen. UTF-16 rather than UTF-8 because it is lossless for
 *   every JavaScript string: UTF-8 would turn every unpaired surrogate into
 *   U+FFFD and merge keys that differ only there.
 * - `readable` is for people reading `busctl list`: the key's last 40
 *   ASCII letters and digits after every run of other characters became one
 *   `_` (`:orders:42` gives `_orders_42`). It is shortened when a long
 *   `namePrefix` leaves less room, and a leading `_` is added when it would
 *   start with a digit, which bus names forbid.
 *
 * The name never exceeds 255 characters and uses only `[A-Za-z0-9_]` after
 * the prefix, whatever the key holds (separators, `*`, `..`, NUL, emoji, 1024
 * characters or more). Case is kept, so `Orders` and `orders` stay apart.
 *
 * @example
 * lockBusName(':orders:42')                      // 'nestjs_distributed_lock._orders_42_<26 base32 characters>'
 * lockBusName('orders:42', 'com.example.Locks')  // 'com.example.Locks.orders_42_<26 base32 characters>'
 */
export function lockBusName(key: string, namePrefix: string = DEFAULT_NAME_PREFIX): string {
  const room = MAX_BUS_NAME_LENGTH - namePrefix.length - '.'.length - '_'.length - '_'.length - DIGEST_LENGTH;
  const keep = Math.max(0, Math.min(READABLE_LENGTH, room));
  const readable = keep === 0 ? '' : key.replace(/[^A-Za-z0-9]+/g, '_').slice(-keep);
  const element = `${readable}_${digest(key)}`;
  return `${namePrefix}.${/^[0-9]/.test(element) ? `_${element}` : element}`;
}

function digest(key: string): string {
  const bytes = hash('sha256', Buffer.from(key, 'utf16le'), 'buffer');
  let out = '';
  let bits = 0;
  let value = 0;
  for (let i = 0; out.length < DIGEST_LENGTH; ) {
    if (bits < 5) {
      value = (value << 8) | (bytes[i++] ?? 0);
      bits += 8;
    }
    bits -= 5;
    out += BASE32[(value >>> bits) & 31];
  }
  return out;
}

/**
 * Checks `namePrefix`: dot-separated elements a bus name may hold, short
 * enough to leave room for the per-key part.
 */
export function validateNamePrefix(prefix: unknown): string {
  const option = 'DbusLockStore option namePrefix';
  if (typeof prefix !== 'string' || prefix.length === 0) {
    throw new InvalidLockOptionError(option, prefix, 'use a bus name prefix such as "com.example.Locks"');
  }
  if (prefix.length > MAX_NAME_PREFIX_LENGTH) {
    throw new InvalidLockOptionError(
      option,
      prefix,
      `use at most ${MAX_NAME_PREFIX_LENGTH} characters, so every lock name fits the bus's ${MAX_BUS_NAME_LENGTH}-character limit`,
    );
  }
  const bad = prefix.split('.').find((element) => !ELEMENT.test(element));
  if (bad !== undefined) {
    throw new InvalidLockOptionError(
      option,
      prefix,
      `the element "${bad}" is not allowed in a bus name; use dot-separated elements of ASCII letters, digits and "_" ` +
        'that do not start with a digit, such as "com.example.Locks"',
    );
  }
  if (prefix === 'org.freedesktop.DBus' || prefix.startsWith('org.freedesktop.DBus.')) {
    throw new InvalidLockOptionError(option, prefix, 'the bus reserves org.freedesktop.DBus; use a prefix of your own such as "com.example.Locks"');
  }
  return prefix;
}
