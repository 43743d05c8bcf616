import { systemClock, type Clock, type Timer } from '../../clock.js';
import { LockStoreError } from '../../errors.js';
import type {
  AcquireRequest,
  AcquireResult,
  LockStore,
  LockStoreTraits,
  RenewRequest,
  RenewResult,
} from '../../store/lock-store.js';

export interface MemoryLockStoreOptions {
  /** The clock leases are counted on. Default: the system's monotonic clock. */
  clock?: Clock;
}

interface Waiter {
  readonly request: AcquireRequest;
  readonly resolve: (result: AcquireResult) => void;
  timer?: Timer;
  onAbort?: () => void;
}

interface Entry {
  owner: string;
  expiresAt: number;
  onLost: AcquireRequest['onLost'];
  /** FIFO: the longest waiter first. */
  waiters: Waiter[];
  /** Armed only while someone waits, to hand the key over when the lease runs out. */
  expiry?: Timer;
}

/**
 * The embedded default store: locks shared by everything in one process
 * (several Nest applications in one process included, when they are given the
 * same instance). Fair: waiters are served in FIFO order and the key passes
 * straight from the releasing holder to the longest waiter, so a releasing
 * caller cannot grab it back ahead of them. Fencing tokens come from one
 * counter for the whole store, so they grow with every acquisition of every
 * key and a released key leaves nothing behind.
 *
 * @example
 * const store = new MemoryLockStore();
 * LockModule.forRoot({ store })  // share `store` between apps in one process
 */
export class MemoryLockStore implements LockStore {
  readonly traits: LockStoreTraits = { name: 'memory', fencing: 'process', fair: true, waits: true };
  readonly clock: Clock;
  private readonly entries = new Map<string, Entry>();
  private nextToken = 1;
  private closed = false;
  /** Entries only re-checked when touched; swept when the map doubles, so lost locks cannot pile up. */
  private sweepAt = 1_024;

  constructor(options: MemoryLockStoreOptions = {}) {
    this.clock = options.clock ?? systemClock;
  }

  acquire(request: AcquireRequest): Promise<AcquireResult> {
    if (this.closed) return Promise.reject(closedError('acquire'));
    const now = this.clock.now();
    let entry = this.entries.get(request.key);
    if (entry && entry.expiresAt <= now) entry = this.handOff(request.key, entry, now);
    if (!entry) {
      if (this.entries.size >= this.sweepAt) this.sweep(now);
      this.entries.set(request.key, { owner: request.owner, expiresAt: now + request.ttl, onLost: request.onLost, waiters: [] });
      return Promise.resolve(this.grant(request, now));
    }
    const retryAfter = entry.expiresAt - now;
    if (request.wait === 0 || request.signal?.aborted) return Promise.resolve({ acquired: false, retryAfter });
    return new Promise((resolve) => this.enqueue(request.key, entry, request, resolve));
  }

  renew(requests: readonly RenewRequest[]): Promise<readonly RenewResult[]> {
    if (this.closed) return Promise.reject(closedError('renew'));
    const now = this.clock.now();
    return Promise.resolve(
      requests.map(({ key, owner, ttl }): RenewResult => {
        const entry = this.entries.get(key);
        if (!entry || entry.owner !== owner || entry.expiresAt <= now) return { renewed: false };
        entry.expiresAt = now + ttl;
        return { renewed: true, validFrom: now, validFor: ttl };
      }),
    );
  }

  release(key: string, owner: string): Promise<boolean> {
    if (this.closed) return Promise.reject(closedError('release'));
    const entry = this.entries.get(key);
    if (!entry || entry.owner !== owner) return Promise.resolve(false);
    const now = this.clock.now();
    const wasHeld = entry.expiresAt > now;
    this.handOff(key, entry, now);
    return Promise.resolve(wasHeld);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const now = this.clock.now();
    for (const entry of this.entries.values()) {
      entry.expiry?.cancel();
      if (entry.expiresAt > now) entry.onLost('session-lost');
      for (const waiter of entry.waiters) this.settle(waiter, { acquired: false });
    }
    this.entries.clear();
  }

  private grant(request: AcquireRequest, now: number): AcquireResult {
    return { acquired: true, fencingToken: this.nextToken++, validFrom: now, validFor: request.ttl };
  }

  /**
   * The holder of `entry` released it or its lease ran out: give the key to
   * the longest waiter, or drop the entry when nobody waits. Returns the entry
   * when someone holds the key afterwards.
   */
  private handOff(key: string, entry: Entry, now: number): Entry | undefined {
    entry.expiry?.cancel();
    entry.expiry = undefined;
    const next = entry.waiters.shift();
    if (!next) {
      this.entries.delete(key);
      return undefined;
    }
    entry.owner = next.request.owner;
    entry.expiresAt = now + next.request.ttl;
    entry.onLost = next.request.onLost;
    this.settle(next, this.grant(next.request, now));
    if (entry.waiters.length > 0) this.watchExpiry(key, entry);
    return entry;
  }

  private enqueue(key: string, entry: Entry, request: AcquireRequest, resolve: Waiter['resolve']): void {
    const waiter: Waiter = { request, resolve };
    const giveUp = () => {
      const index = entry.waiters.indexOf(waiter);
      if (index < 0) return;
      entry.waiters.splice(index, 1);
      this.settle(waiter, { acquired: false, retryAfter: Math.max(0, entry.expiresAt - this.clock.now()) });
      if (entry.waiters.length === 0) {
        entry.expiry?.cancel();
        entry.expiry = undefined;
      }
    };
    waiter.timer = this.clock.setTimer(giveUp, request.wait, true);
    if (request.signal) {
      waiter.onAbort = giveUp;
      request.signal.addEventListener('abort', giveUp, { once: true });
    }
    entry.waiters.push(waiter);
    if (!entry.expiry) this.watchExpiry(key, entry);
  }

  private watchExpiry(key: string, entry: Entry): void {
    entry.expiry = this.clock.setTimer(() => {
      entry.expiry = undefined;
      if (this.entries.get(key) !== entry) return;
      const now = this.clock.now();
      if (entry.expiresAt <= now) this.handOff(key, entry, now);
      else this.watchExpiry(key, entry);
    }, Math.max(0, entry.expiresAt - this.clock.now()));
  }

  private settle(waiter: Waiter, result: AcquireResult): void {
    waiter.timer?.cancel();
    if (waiter.onAbort) waiter.request.signal?.removeEventListener('abort', waiter.onAbort);
    waiter.resolve(result);
  }

  private sweep(now: number): void {
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt <= now && entry.waiters.length === 0) this.entries.delete(key);
    }
    this.sweepAt = Math.max(1_024, this.entries.size * 2);
  }
}

function closedError(what: string): LockStoreError {
  return new LockStoreError(`The memory lock store is closed and cannot ${what}; create a new MemoryLockStore or stop using this one after close()`);
}
