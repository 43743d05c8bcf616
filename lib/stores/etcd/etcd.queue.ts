import type { Etcd3, IKeyValue, KVClient } from 'etcd3';
import type { LockPath } from './etcd.keys.js';

/**
 * The requests that move an acquisition through a lock's queue: each is one
 * round trip, each is safe to repeat (etcd3 re-sends a request whose
 * connection failed, and the first attempt may have been applied), and each
 * that changes a key first compares its create revision, so a request that
 * arrives late can never touch a later key of the same name (see
 * etcd.keys.ts). The one exception, {@link removeName}, is sent only where
 * no later key can carry the name.
 */

/** Per-request options: how long etcd may take to answer (`dialTimeout` from now). */
export interface RequestOptions {
  readonly deadline: number;
}

/** The value a key gets once its acquisition owns the lock after waiting (see {@link mark}). */
export const OWNER_MARK = Buffer.from('owner');
const EMPTY = Buffer.alloc(0);

/** Where an acquisition stands in its lock's queue. */
export interface Position {
  /** Create revision of the acquisition's key: its place in the queue and, once it owns the lock, its fencing token. */
  readonly revision: number;
  /** The keys ahead of it (latin1 of the key's bytes → create revision), exactly as at revision `knownAt`. Empty: it owns the lock. */
  readonly ahead: Map<string, number>;
  readonly knownAt: number;
}

/**
 * Joins the queue: puts `key` under the lease and reads which keys are ahead,
 * in one transaction, so the answer is exact at the revision of the put.
 *
 * - `wait` false (one try): puts the key only if the lock's prefix is empty,
 *   so a busy lock costs no write. Resolves `undefined` when busy.
 * - `wait` true: always puts the key and lists every key of the lock.
 *
 * Repeating it is safe: the key's create revision does not change once it
 * exists, and a one-try key left behind by an earlier attempt is deleted.
 * Only that rare case reads who is first, in a second request: a range in
 * the failure branch is sent and decoded on every try, and measured 2% of an
 * uncontended acquire+release.
 */
export async function enqueue(
  kv: KVClient,
  path: LockPath,
  key: Buffer,
  leaseId: string,
  wait: boolean,
  options: RequestOptions,
): Promise<Position | undefined> {
  const put = { request_put: { key, value: EMPTY, lease: leaseId } };
  const all = { request_range: { key: path.prefix, range_end: path.end, keys_only: true } };
  if (wait) {
    const reply = await kv.txn({ compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }], success: [put, all], failure: [all] }, options);
    const kvs = reply.responses[reply.succeeded ? 1 : 0]?.response_range.kvs ?? [];
    const mine = kvs.find((entry) => entry.key.equals(key));
    if (!mine) throw new Error('etcd answered the queue transaction without the key it had just written');
    const revision = Number(mine.create_revision);
    return { revision, ahead: keysBefore(kvs, revision), knownAt: Number(reply.header.revision) };
  }
  const reply = await kv.txn(
    {
      compare: [{ key: path.prefix, range_end: path.end, target: 'Create', result: 'Equal', create_revision: 0 }],
      success: [put],
      failure: [{ request_range: { key, keys_only: true } }],
    },
    options,
  );
  if (reply.succeeded) {
    const revision = Number(reply.header.revision);
    return { revision, ahead: new Map(), knownAt: revision };
  }
  const mine = reply.responses[0]?.response_range.kvs[0];
  if (!mine) return undefined;
  // An earlier attempt of this request put the key: it owns the lock if nothing is ahead of it.
  const position = await keysAhead(kv, path, Number(mine.create_revision), options);
  if (position.ahead.size === 0) return position;
  await remove(kv, key, position.revision, options); // behind the holder: a single try does not wait
  return undefined;
}

/**
 * Reads which of the keys ahead of `revision` still exist (linearizable, so
 * exact at the revision it answers with).
 */
export async function keysAhead(kv: KVClient, path: LockPath, revision: number, options: RequestOptions): Promise<Position> {
  const reply = await kv.range({ key: path.prefix, range_end: path.end, max_create_revision: revision - 1, keys_only: true }, options);
  return { revision, ahead: keysBefore(reply.kvs, revision), knownAt: Number(reply.header.revision) };
}

/**
 * Writes {@link OWNER_MARK} into the key of an acquisition that now owns the
 * lock, if the key is still the one it created: its successor, watching it,
 * then knows no key ahead of it is left. Resolves false when the key is gone,
 * which means the acquisition does not own the lock after all.
 */
export async function mark(kv: KVClient, key: Buffer, revision: number, options: RequestOptions): Promise<boolean> {
  const reply = await kv.txn(
    {
      compare: [{ key, target: 'Create', result: 'Equal', create_revision: revision }],
      success: [{ request_put: { key, value: OWNER_MARK, ignore_lease: true } }],
    },
    options,
  );
  return reply.succeeded;
}

/**
 * Whether the key created at `revision` is still under `key` and still on
 * lease `leaseId`, as the audit's list of the lease's keys would show it: a
 * linearizable read, so it sees every write etcd had acknowledged when the
 * read was sent.
 */
export async function onLease(kv: KVClient, key: Buffer, revision: number, leaseId: string, options: RequestOptions): Promise<boolean> {
  const reply = await kv.range({ key, keys_only: true }, options);
  const entry = reply.kvs[0];
  return entry !== undefined && Number(entry.create_revision) === revision && entry.lease === leaseId;
}

/**
 * Moves a held lock's key onto a lease of its own for its remaining `ms`, so
 * it outlives the session (a lock left to run out, such as `lockAtLeastFor`,
 * when the store closes). Only if the key is still the one it created.
 */
export async function keepAlone(client: Etcd3, key: Buffer, revision: number, ms: number, options: RequestOptions): Promise<void> {
  const lease = await client.leaseClient.leaseGrant({ TTL: Math.max(1, Math.ceil(ms / 1_000)) }, options);
  await client.kv.txn(
    {
      compare: [{ key, target: 'Create', result: 'Equal', create_revision: revision }],
      success: [{ request_put: { key, lease: lease.ID, ignore_value: true } }],
    },
    options,
  );
}

/** Deletes the key created at `revision` under `key`, if it is still there; resolves whether it was. */
export async function remove(kv: KVClient, key: Buffer, revision: number, options: RequestOptions): Promise<boolean> {
  const reply = await kv.txn(
    { compare: [{ key, target: 'Create', result: 'Equal', create_revision: revision }], success: [{ request_delete_range: { key } }] },
    options,
  );
  return reply.succeeded;
}

/**
 * Deletes `key` if it was created at `revision` or before: a key the audit
 * found under the session's lease at `revision`, whose name the store took
 * so that no acquisition can take the key over meanwhile.
 */
export async function removeStray(kv: KVClient, key: Buffer, revision: number, options: RequestOptions): Promise<void> {
  await kv.txn(
    { compare: [{ key, target: 'Create', result: 'Less', create_revision: revision + 1 }], success: [{ request_delete_range: { key } }] },
    options,
  );
}

/**
 * Deletes whatever key has this name, resolving whether there was one: for
 * a key whose create revision is unknown (its transaction failed without an
 * answer), or whose name no other key can carry meanwhile. Safe only while
 * the name stays reserved, or when the request is known to have been sent
 * once (see `EtcdLockStore.release`).
 */
export async function removeName(kv: KVClient, key: Buffer, options: RequestOptions): Promise<boolean> {
  const reply = await kv.deleteRange({ key }, options);
  return reply.deleted !== '0';
}

function keysBefore(kvs: readonly IKeyValue[], revision: number): Map<string, number> {
  const ahead = new Map<string, number>();
  for (const entry of kvs) {
    const created = Number(entry.create_revision);
    if (created < revision) ahead.set(entry.key.toString('latin1'), created);
  }
  return ahead;
}
