import type { Clock } from '../../clock.js';
import { EarliestTimer } from '../../earliest-timer.js';

/** A lease the store times itself: it ends at `expiresAt` on the store's clock unless renewed. */
export interface TimedLease {
  readonly expiresAt: number;
}

/**
 * Ends leases nobody renewed in time (the `enforceTtl` option), with one
 * timer for all of them: armed for the earliest end, it re-scans when it
 * fires. A renewal that moves an end later leaves the timer alone: it fires
 * early, finds nothing due and re-arms for the new earliest end. One that
 * moves it earlier (an `extend` to a shorter ttl, as `lockAtLeastFor` does)
 * is tracked again, which re-arms the timer if needed. 10,000 held locks
 * cost one unref'd timer and one scan every ttl/3 or so.
 */
export class LeaseExpiry<T extends TimedLease> {
  private readonly leases = new Set<T>();
  private readonly timer: EarliestTimer;

  constructor(
    private readonly clock: Clock,
    private readonly expired: (lease: T) => void,
  ) {
    this.timer = new EarliestTimer(clock, () => this.tick());
  }

  /** Starts timing `lease`, or re-times one whose end moved. */
  track(lease: T): void {
    this.leases.add(lease);
    this.timer.arm(lease.expiresAt);
  }

  untrack(lease: T): void {
    this.leases.delete(lease);
  }

  stop(): void {
    this.timer.cancel();
    this.leases.clear();
  }

  private tick(): void {
    const now = this.clock.now();
    let next = Infinity;
    for (const lease of this.leases) {
      if (lease.expiresAt <= now) {
        this.leases.delete(lease);
        this.expired(lease);
      } else if (lease.expiresAt < next) {
        next = lease.expiresAt;
      }
    }
    if (next < Infinity) this.timer.arm(next);
  }
}
