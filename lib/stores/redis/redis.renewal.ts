import type { Cluster, Redis } from 'ioredis';
import { keySlot } from './key-slot.js';
import { RENEW, RENEW_ON_NODE } from './redis.scripts.js';

/** Locks renewed per script call: one call for 1,000 locks, and Redis is never blocked long by one. */
const RENEW_BATCH = 1_000;

/** One lock to renew: its Redis key, its owner, the new lease in whole milliseconds. */
export interface RenewItem {
  readonly name: string;
  readonly owner: string;
  readonly ttl: number;
}

/**
 * Renews `items` with as few script calls as the deployment allows, all sent
 * at once (one round trip), and answers per item, in order, whether its owner
 * still held it.
 *
 * - Standalone or Sentinel: one call per {@link RENEW_BATCH} locks.
 * - Cluster: a script runs on one node, and Redis routes a script by its
 *   declared keys, which must share a slot. So the locks are grouped by the
 *   primary that serves them (as the client last saw the slot map), and one
 *   call per primary and batch names a single key for routing and passes the
 *   rest in ARGV, which Redis 7 allows for a script flagged
 *   `allow-cross-slot-keys`. If such a call fails (a slot moved, Redis 6), its
 *   locks are renewed again with one call per slot and declared keys, which
 *   ioredis redirects as usual.
 */
export async function renewAll(client: Redis | Cluster, items: readonly RenewItem[]): Promise<boolean[]> {
  const renewed = new Array<boolean>(items.length).fill(false);
  const record = (batch: readonly Placed[], reply: unknown) =>
    batch.forEach(({ index }, j) => (renewed[index] = (reply as number[])[j] === 1));
  const withDeclaredKeys = async (batch: readonly Placed[]) =>
    record(batch, await RENEW.run(client, batch.map(({ name }) => name), batch.flatMap(({ owner, ttl }) => [owner, ttl])));
  const onOneNode = async (batch: readonly Placed[]) =>
    record(batch, await RENEW_ON_NODE.run(client, [batch[0]?.name ?? ''], batch.flatMap(({ name, owner, ttl }) => [name, owner, ttl])));

  if (!client.isCluster) {
    await Promise.all(chunks(items.map((item, index) => ({ ...item, index, slot: 0 }))).map(withDeclaredKeys));
    return renewed;
  }
  const slotMap = (client as Cluster).slots;
  const placed = items.map((item, index) => ({ ...item, index, slot: keySlot(item.name) }));
  // Slot map not known yet (connecting, refreshing): one group per slot.
  const byNode = groupBy(placed, ({ slot }) => slotMap[slot]?.[0] ?? `slot ${slot}`);
  await Promise.all(
    byNode.flatMap(chunks).map((batch) =>
      onOneNode(batch).catch(() => Promise.all(groupBy(batch, ({ slot }) => slot).map(withDeclaredKeys))),
    ),
  );
  return renewed;
}

/** A lock to renew, with its place in the answer and its Cluster slot. */
interface Placed extends RenewItem {
  readonly index: number;
  readonly slot: number;
}

/** `values` grouped by `key`, groups in order of first appearance. */
function groupBy<T>(values: readonly T[], key: (value: T) => string | number): T[][] {
  const groups = new Map<string | number, T[]>();
  for (const value of values) {
    const k = key(value);
    const group = groups.get(k);
    if (group) group.push(value);
    else groups.set(k, [value]);
  }
  return [...groups.values()];
}

function chunks<T>(values: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let start = 0; start < values.length; start += RENEW_BATCH) out.push(values.slice(start, start + RENEW_BATCH));
  return out;
}
