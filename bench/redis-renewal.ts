/**
 * Section 3 of the Redis benchmark: 10,000 locks held through LockService
 * on one RedisLockStore, and the script requests each renewal tick sends.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  LockModule,
  LockService,
  type AcquireRequest,
  type AcquireResult,
  type Clock,
  type Lock,
  type LockStore,
  type LockStoreTraits,
  type RenewRequest,
  type RenewResult,
} from 'nestjs-distributed-lock';
import { RedisLockStore } from 'nestjs-distributed-lock/redis';
import { sentCommands, sentSince } from './redis-counters.js';
import { round } from './support/stats.js';

export interface RenewTick {
  /** ms since the last lock was acquired */
  at: number;
  locks: number;
  /** Script requests the store sent for this tick (EVALSHA, and EVAL after a NOSCRIPT answer); all sent at once. */
  roundTrips: number;
  /** Of those, EVALs resent because Redis did not have the script cached yet (NOSCRIPT). */
  noscriptRetries: number;
  /** ceil(locks / 1,000): the most round trips the target allows */
  allowed: number;
  ms: number;
}

/** The real RedisLockStore behind a thin wrapper that counts renew calls and the requests each one sent. */
class CountingStore implements LockStore {
  readonly traits: LockStoreTraits;
  readonly clock?: Clock;
  readonly ticks: RenewTick[] = [];
  origin = 0;
  counting = false;

  constructor(
    private readonly inner: RedisLockStore,
    /** The target: at most one round trip per this many locks. */
    private readonly locksPerRoundTrip: number,
  ) {
    this.traits = inner.traits;
    this.clock = inner.clock;
  }

  acquire(request: AcquireRequest): Promise<AcquireResult> {
    return this.inner.acquire(request);
  }

  /** The renewal on its way, if any: awaited before releasing, so none is cut off by the shutdown. */
  pending: Promise<unknown> = Promise.resolve();

  renew(requests: readonly RenewRequest[]): Promise<readonly RenewResult[]> {
    const work = this.counting ? this.countedRenew(requests) : this.inner.renew(requests);
    this.pending = work.catch(() => {});
    return work;
  }

  private async countedRenew(requests: readonly RenewRequest[]): Promise<readonly RenewResult[]> {
    // Nothing else runs in this process meanwhile, so every script request sent in between is this renewal's.
    const before = new Map(sentCommands);
    const start = performance.now();
    const results = await this.inner.renew(requests);
    const elapsed = performance.now() - start;
    const sent = sentSince(before);
    this.ticks.push({
      at: round(start - this.origin),
      locks: requests.length,
      roundTrips: (sent.evalsha ?? 0) + (sent.eval ?? 0),
      noscriptRetries: sent.eval ?? 0,
      allowed: Math.ceil(requests.length / this.locksPerRoundTrip),
      ms: round(elapsed, 2),
    });
    return results;
  }

  release(key: string, owner: string): Promise<boolean> {
    return this.inner.release(key, owner);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

export interface RenewalResult {
  locks: number;
  ttlMs: number;
  holdMs: number;
  acquireAllMs: number;
  releaseAllMs: number;
  ticks: RenewTick[];
  /** Over the ticks with the script cached in Redis (no NOSCRIPT retry): locks renewed per script request. */
  locksPerRoundTrip: number;
  /** The first renewal on a Redis that has not seen the script: EVALSHA answered NOSCRIPT, every batch resent as EVAL. */
  coldTicks: number;
  heldAtEnd: number;
  lost: number;
  pass: boolean;
}

export interface RenewalSettings {
  readonly locks: number;
  readonly ttlMs: number;
  readonly holdMs: number;
}

/**
 * Holds `locks` locks through LockService on one RedisLockStore for
 * `holdMs`, and counts each renewal tick's script requests; `pass` when every
 * tick with the scripts cached sends at most one request per
 * `locksPerRoundTrip` locks and no lock was lost.
 */
export async function benchRenewal(url: string, settings: RenewalSettings, locksPerRoundTrip: number): Promise<RenewalResult> {
  const { locks: count, ttlMs, holdMs } = settings;
  const store = new CountingStore(new RedisLockStore({ url }), locksPerRoundTrip);
  @Module({ imports: [LockModule.forRoot({ store, ttl: ttlMs, closeStore: true })] })
  class RenewalModule {}
  const app = await NestFactory.createApplicationContext(RenewalModule, { logger: ['error', 'warn'] });
  const locks = app.get(LockService);
  let lost = 0;
  locks.onLost(() => lost++);
  const held: Lock[] = [];
  // All at once in chunks (ioredis pipelines them), so the leases start close together.
  const t0 = performance.now();
  for (let start = 0; start < count; start += 1_000) {
    held.push(...(await Promise.all(Array.from({ length: Math.min(1_000, count - start) }, (_, i) => locks.acquire(`held:${start + i}`)))));
  }
  const acquireAllMs = performance.now() - t0;
  store.origin = performance.now();
  store.counting = true;
  await sleep(holdMs);
  store.counting = false;
  await store.pending;
  const heldAtEnd = held.filter((lock) => lock.held).length;
  const t1 = performance.now();
  await Promise.all(held.map((lock) => lock.release()));
  const releaseAllMs = performance.now() - t1;
  await store.pending;
  await app.close();
  const ticks = store.ticks;
  const warm = ticks.filter((t) => t.noscriptRetries === 0);
  const renewed = warm.reduce((sum, t) => sum + t.locks, 0);
  const calls = warm.reduce((sum, t) => sum + t.roundTrips, 0);
  return {
    locks: count,
    ttlMs,
    holdMs,
    acquireAllMs: round(acquireAllMs),
    releaseAllMs: round(releaseAllMs),
    ticks,
    locksPerRoundTrip: round(renewed / Math.max(1, calls)),
    coldTicks: ticks.length - warm.length,
    heldAtEnd,
    lost,
    pass: warm.length > 0 && warm.every((t) => t.roundTrips <= t.allowed) && heldAtEnd === count && lost === 0,
  };
}
