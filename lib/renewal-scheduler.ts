import type { Logger } from '@nestjs/common';
import type { Clock } from './clock.js';
import { EarliestTimer } from './earliest-timer.js';
import type { LockHandle } from './lock.js';
import type { LockStore } from './store/lock-store.js';

/**
 * Keeps every lock a service holds renewed, with one timer in all and one
 * `store.renew` call per tick for every lock that is due (or nearly due), so
 * 10,000 held locks cost one timer and a few batched round trips, not 10,000
 * of each. One batch is in flight at a time: a slow store makes the scheduler
 * skip beats instead of piling up requests. Deadlines are enforced on the same
 * timer, so a lock whose renewal never came back is reported lost on time.
 */
export class RenewalScheduler {
  private readonly locks = new Set<LockHandle>();
  private readonly timer: EarliestTimer;
  private inFlight = false;
  /**
   * True from a failed batch to the next one that succeeds: a store that is
   * down fails every retry, and one warning says as much as twenty.
   */
  private failing = false;

  constructor(
    private readonly store: LockStore,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    this.timer = new EarliestTimer(clock, () => this.tick());
  }

  /** All locks still held, for shutdown. */
  held(): LockHandle[] {
    return [...this.locks];
  }

  get size(): number {
    return this.locks.size;
  }

  /** Tracks a lock, or re-times one whose renewal moved earlier (a shorter `extend`). */
  add(lock: LockHandle): void {
    this.locks.add(lock);
    this.timer.arm(lock.renewAt);
  }

  /**
   * Forgets a lock. The timer stays armed even when no lock is left: it is
   * unref'd, fires at most once more and then stops, and keeping it spares
   * every short critical section a timer set-up and tear-down.
   */
  delete(lock: LockHandle): void {
    this.locks.delete(lock);
  }

  /** Cancels the timer, at shutdown. */
  stop(): void {
    this.timer.cancel();
  }

  private tick(): void {
    const now = this.clock.now();
    const due: LockHandle[] = [];
    for (const lock of this.locks) {
      if (now >= lock.deadline) lock.lose('expired');
      else if (!this.inFlight && now >= lock.renewAt - lock.renewSlack) due.push(lock);
    }
    if (due.length > 0) void this.renew(due);
    this.rearm();
  }

  /**
   * Arms the timer for the earliest renewal (or, while one is in flight, the
   * earliest deadline). The slack only widens which locks join a tick that
   * fires anyway; it never makes the timer fire sooner.
   */
  private rearm(): void {
    let next = Infinity;
    for (const lock of this.locks) {
      const at = this.inFlight ? lock.deadline : Math.min(lock.deadline, lock.renewAt);
      if (at < next) next = at;
    }
    if (next < Infinity) this.timer.arm(next);
  }

  private async renew(batch: LockHandle[]): Promise<void> {
    this.inFlight = true;
    try {
      const results = await this.store.renew(
        batch.map((lock) => ({ key: lock.storeKey, owner: lock.ownerId, ttl: lock.ttl })),
      );
      batch.forEach((lock, i) => {
        const result = results[i];
        if (!this.locks.has(lock)) return;
        if (result?.renewed) lock.confirm(result);
        else lock.lose('not-owner');
      });
      if (this.failing) {
        this.failing = false;
        this.logger.log(`Renewing locks in the ${this.store.traits.name} store works again`);
      }
    } catch (error) {
      // Locks released while the batch was in flight (at shutdown, say) need nothing more.
      const live = batch.filter((lock) => this.locks.has(lock));
      if (live.length === 0) return;
      // The store could not be asked. Try again well before the deadline;
      // if no renewal is confirmed by then, the deadline check reports loss.
      const now = this.clock.now();
      for (const lock of live) {
        lock.renewAt = now + Math.min(1_000, Math.max(10, (lock.deadline - now) / 4));
        lock.renewSlack = 0;
      }
      if (this.failing) return;
      this.failing = true;
      this.logger.warn(
        `Renewing ${live.length} lock(s) in the ${this.store.traits.name} store failed (${
          error instanceof Error ? error.message : String(error)
        }); retrying until their deadlines, and warning again only when a lock is lost or renewals work again`,
      );
    } finally {
      this.inFlight = false;
      this.rearm();
    }
  }
}
