/**
 * Where one lock's queue lives in etcd. Every acquisition, holding or
 * waiting, puts a key of its own under the lock's prefix,
 *
 *     `${keyPrefix}${escape(storeKey)}/${session lease id in hex}[/${slot}]`
 *
 * and the owner of the lock is the key with the lowest create revision under
 * that prefix.
 *
 * Escaping ('%' to '%25', '/' to '%2F') is one-to-one and leaves no '/' in an
 * escaped store key, so the first '/' after the key prefix always ends the
 * lock's name: no key, however hostile (`a/b`, `a/`, NUL, `../a`), can put a
 * queue entry under another lock's prefix.
 *
 * **Names are reused.** etcd keeps a deleted key in its index until the
 * history is compacted, and every range over the lock's prefix walks those
 * entries. A name per acquisition would leave one behind per acquisition, and
 * a busy lock's queue reads would slow down with every use (a third slower
 * after a few thousand). So a session reuses its names: its first
 * acquisition of a lock at a time takes slot 0, a second concurrent one
 * slot 1, and so on, and a name is free again once its key is known gone. A
 * lease id is unique in the cluster, so no two sessions share a name. The
 * same name may thus carry several keys one after another; every request
 * that acts on a key names its create revision too (see etcd.queue.ts).
 */
export interface LockPath {
  /** The lock's prefix, ending in '/': every queue entry of the lock starts with it. */
  readonly prefix: Buffer;
  /** The first key after every key that starts with `prefix` (a range end for etcd). */
  readonly end: Buffer;
}

export function lockPath(keyPrefix: string, storeKey: string): LockPath {
  const prefix = Buffer.from(`${keyPrefix}${escape(storeKey)}/`);
  // The prefix ends in '/' (0x2f): the same bytes ending in '0' (0x30) sort
  // right after every key that starts with it.
  const end = Buffer.from(prefix);
  end[end.length - 1] = 0x30;
  return { prefix, end };
}

/** The queue entry names one session has in use. */
export class EntryNames {
  private readonly used = new Set<string>();
  private readonly base: string;
  private readonly baseBytes: Buffer;

  constructor(leaseId: string) {
    this.base = BigInt(leaseId).toString(16);
    this.baseBytes = Buffer.from(this.base);
  }

  /** A name under `path` that no other acquisition of this session is using. */
  take(path: LockPath): Buffer {
    for (let slot = 0; ; slot++) {
      const key = Buffer.concat([path.prefix, slot === 0 ? this.baseBytes : Buffer.from(`${this.base}/${slot}`)]);
      const text = key.toString('latin1');
      if (!this.used.has(text)) {
        this.used.add(text);
        return key;
      }
    }
  }

  /** The key under `key` is gone (deleted, or never written): its name may be taken again. */
  free(key: Buffer): void {
    this.used.delete(key.toString('latin1'));
  }
}

function escape(text: string): string {
  return /[%/]/.test(text) ? text.replace(/[%/]/g, (c) => (c === '%' ? '%25' : '%2F')) : text;
}
