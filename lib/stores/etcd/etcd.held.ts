import type { Clock } from '../../clock.js';
import { EarliestTimer } from '../../earliest-timer.js';
import type { AcquireRequest, RenewRequest, RenewResult } from '../../store/lock-store.js';
import type { Session } from './etcd.session.js';

/** A lock this store holds. */
export interface HeldLock {
  readonly owner: string;
  readonly storeKey: string;
  /** The queue entry that owns the lock. */
  readonly key: Buffer;
  /** Create revision of `key`: the fencing token. */
  readonly revision: number;
  readonly session: Session;
  /** When the lock's own ttl runs out unless renewed (store clock). */
  expiresAt: number;
  readonly onLost: AcquireRequest['onLost'];
}

/**
 * The locks this store holds, and the two things the session lease cannot
 * do for them.
 *
 * **Each lock's own ttl.** The session lease outlives any one lock: it is
 * kept alive for as long as the process runs. A lock whose holder stops
 * renewing it (its work hangs, or `lockAtLeastFor` leaves it to run out)
 * must still end after its ttl, so the store deletes its key then, from one
 * timer for all locks. The holder's deadline is never later than that
 * moment, because `validFor` is at most the ttl counted from the same
 * reading.
 *
 * **Renewal without a round trip.** Renewing only moves that local expiry;
 * the lease behind the key is kept alive by the session. The answer counts
 * from now and ends no later than the session's `validUntil`, the last
 * keepalive's send time plus the lease TTL (minus drift), so it never
 * promises more than etcd will keep.
 */
export class HeldLocks {
  private readonly locks = new Map<string, HeldLock>();
  private readonly timer: EarliestTimer;

  constructor(
    private readonly clock: Clock,
    /** Deletes the key of a lock whose ttl ran out. */
    private readonly expire: (lock: HeldLock) => void,
  ) {
    this.timer = new EarliestTimer(clock, () => this.sweep());
  }

  get(owner: string): HeldLock | undefined {
    return this.locks.get(owner);
  }

  add(lock: HeldLock): void {
    this.locks.set(lock.owner, lock);
    this.timer.arm(lock.expiresAt);
  }

  delete(owner: string): void {
    this.locks.delete(owner);
  }

  renew(requests: readonly RenewRequest[]): RenewResult[] {
    const now = this.clock.now();
    return requests.map(({ key, owner, ttl }): RenewResult => {
      const lock = this.locks.get(owner);
      if (!lock || lock.storeKey !== key || now >= lock.expiresAt || !lock.session.alive(now)) return { renewed: false };
      lock.expiresAt = now + ttl;
      this.timer.arm(lock.expiresAt);
      return { renewed: true, validFrom: now, validFor: Math.min(ttl, lock.session.validUntil - now) };
    });
  }

  /**
   * Reports `lock` lost and forgets it, if it is still held. Returns whether
   * it was: only then may the caller free its name, since whoever removed it
   * earlier (release, the ttl sweep) frees it, and the name may have been
   * taken again since.
   */
  lose(lock: HeldLock, reason: 'not-owner' | 'session-lost'): boolean {
    if (this.locks.get(lock.owner) !== lock) return false;
    this.locks.delete(lock.owner);
    lock.onLost(reason);
    return true;
  }

  /** Every lock under `session` is lost at once: its lease is gone. */
  sessionEnded(session: Session): void {
    for (const lock of [...this.locks.values()]) if (lock.session === session) this.lose(lock, 'session-lost');
  }

  /**
   * The locks of `session` created by `revision` whose key is not among
   * `keys`, the lease's key list that etcd answered at `revision`: suspects
   * only, since etcd may stamp the list with a revision later than the one
   * it was read at (see `EtcdLockStore.audit`).
   */
  unlisted(session: Session, revision: number, keys: ReadonlySet<string>): HeldLock[] {
    return [...this.locks.values()].filter(
      (lock) => lock.session === session && lock.revision <= revision && !keys.has(lock.key.toString('latin1')),
    );
  }

  /** Locks whose own ttl has not run out at `now`. */
  unexpired(now: number): HeldLock[] {
    return [...this.locks.values()].filter((lock) => lock.expiresAt > now);
  }

  /** At close: every lock still held is lost. */
  loseAll(): void {
    for (const lock of [...this.locks.values()]) this.lose(lock, 'session-lost');
    this.timer.cancel();
  }

  private sweep(): void {
    const now = this.clock.now();
    let next = Infinity;
    for (const lock of [...this.locks.values()]) {
      if (lock.expiresAt <= now) {
        this.locks.delete(lock.owner);
        this.expire(lock);
      } else if (lock.expiresAt < next) {
        next = lock.expiresAt;
      }
    }
    if (next < Infinity) this.timer.arm(next);
  }
}
