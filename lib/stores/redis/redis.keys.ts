/**
 * The Redis keys behind one lock, in the order the per-lock scripts take them
 * as KEYS (see redis.scripts.ts for what each one holds). All four share the
 * hash tag `{…}`, so on a Cluster they live in one slot and one script can
 * touch them all.
 */
export type LockKeys = readonly [lock: string, fence: string, queue: string, waiters: string];

/**
 * Derives the keys of store key `key` under `prefix`: the lock is
 * `${prefix}{${escaped key}}`, the others are its name with `:fence`,
 * `:queue` and `:waiters` appended.
 *
 * The key is escaped ('%' to '%25', '}' to '%7D') for two reasons. Redis
 * Cluster hashes the text between the first '{' and the first '}' after it,
 * so a raw '}' in the key would end the tag early, and a key starting with
 * '}' would leave it empty (Redis then hashes the whole name, and the four
 * keys could land in different slots). And escaping is one-to-one, so two
 * different keys never produce the same name: every lock name ends in '}',
 * every other name in a letter, and stripping the fixed prefix and suffix
 * gives back the escaped key. (The prefix may not contain braces; see
 * the `keyPrefix` option.)
 */
export function lockKeys(prefix: string, key: string): LockKeys {
  const lock = lockName(prefix, key);
  return [lock, `${lock}:fence`, `${lock}:queue`, `${lock}:waiters`];
}

/** Just the lock's own key: all a renewal needs. */
export function lockName(prefix: string, key: string): string {
  return `${prefix}{${key.replace(/[%}]/g, (c) => (c === '%' ? '%25' : '%7D'))}}`;
}
