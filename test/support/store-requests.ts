import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { AcquireRequest, AcquireResult, LockStore } from 'nestjs-distributed-lock';

/** An acquire request as LockService would send it: a fresh owner, a 30 s lease, one try; override what the test needs. */
export function request(key: string, overrides: Partial<AcquireRequest> = {}): AcquireRequest {
  return { key, owner: randomUUID(), ttl: 30_000, wait: 0, onLost: () => {}, ...overrides };
}

/** Acquires, failing the test unless the lock was granted. */
export async function grant(store: LockStore, req: AcquireRequest): Promise<Extract<AcquireResult, { acquired: true }>> {
  const result = await store.acquire(req);
  assert.equal(result.acquired, true, `expected ${req.key} to be granted to ${req.owner}`);
  return result as Extract<AcquireResult, { acquired: true }>;
}
