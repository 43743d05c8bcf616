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
 * that acts on a key names its create revision too, or is known to land
 * before the name is taken again (see etcd.queue.ts).
 */
export interface LockPath {
  /** The lock's prefix, ending in '/': every queue entry of the lock starts with it. */
  readonly prefix: Buffer;
  /** The first key after every key that starts with `prefix` (a range end for etcd). */
  readonly end: Buffer;
  /** `prefix` as latin1 text, one character per byte: how entry names are compared. */
  readonly text: string;
}

function lockPath(keyPrefix: string, storeKey: string): LockPath {
  const text = `${keyPrefix}${escape(storeKey)}/`;
  const length = Buffer.byteLength(text);
  // One buffer of its own for both, not a slice of Node's shared 8 KiB pool,
  // which a cached path would keep alive whole.
  const both = Buffer.allocUnsafeSlow(2 * length);
  both.write(text);
  both.copy(both, length, 0, length);
  const prefix = both.subarray(0, length);
  const end = both.subarray(length);
  // The prefix ends in '/' (0x2f): the same bytes ending in '0' (0x30) sort
  // right after every key that starts with it.
  end[length - 1] = 0x30;
  return { prefix, end, text: prefix.toString('latin1') };
}

/**
 * The paths of up to `limit` locks, so a lock taken again (the usual case)
 * does not escape its key and build its buffers on every acquire: profiled
 * on the uncontended benchmark, that was over a third of the store's own
 * time per acquire and release. Past `limit`, the path cached longest is
 * dropped (and built again when its lock comes back).
 */
export class LockPaths {
  private readonly paths = new Map<string, LockPath>();

  constructor(
    private readonly keyPrefix: string,
    private readonly limit = 1_000,
  ) {}

  of(storeKey: string): LockPath {
    let path = this.paths.get(storeKey);
    if (!path) {
      if (this.paths.size >= this.limit) this.paths.delete(this.paths.keys().next().value as string);
      path = lockPath(this.keyPrefix, storeKey);
      this.paths.set(storeKey, path);
    }
    return path;
  }
}

/**
 * The queue entry names one session has in use. A name is freed only by the
 * buffer `take` returned for it: a late free of a key whose name has been
 * taken again since (a waiter that rejoined, an orphan retried) is a no-op,
 * so two acquisitions can never hold one name.
 */
export class EntryNames {
  /** Latin1 text of each name in use → the buffer handed out for it. */
  private readonly used = new Map<string, Buffer>();
  private readonly base: string;
  private readonly baseBytes: Buffer;

  constructor(leaseId: string) {
    this.base = BigInt(leaseId).toString(16);
    this.baseBytes = Buffer.from(this.base);
  }

  /** A name under `path` that no other acquisition of this session is using. */
  take(path: LockPath): Buffer {
    for (let slot = 0; ; slot++) {
      const name = slot === 0 ? this.base : `${this.base}/${slot}`;
      const text = path.text + name;
      if (!this.used.has(text)) {
        const key = Buffer.concat([path.prefix, slot === 0 ? this.baseBytes : Buffer.from(name)]);
        this.used.set(text, key);
        return key;
      }
    }
  }

  /**
   * Takes the name of the key whose latin1 text is `text`, if no acquisition
   * of this session holds it: its buffer, to free it with; `undefined` when
   * the name is in use.
   */
  claim(text: string): Buffer | undefined {
    if (this.used.has(text)) return undefined;
    const key = Buffer.from(text, 'latin1');
    this.used.set(text, key);
    return key;
  }

  /** The key `take` returned is gone (deleted, or never written): its name may be taken again. */
  free(key: Buffer): void {
    const text = key.toString('latin1');
    if (this.used.get(text) === key) this.used.delete(text);
  }
}

function escape(text: string): string {
  return text.replaceAll('%', '%25').replaceAll('/', '%2F');
}
