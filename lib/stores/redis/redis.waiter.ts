import type { Clock, Timer } from '../../clock.js';
import type { AcquireRequest, AcquireResult } from '../../store/lock-store.js';
import type { LockKeys } from './redis.keys.js';
import type { WakeChannel, Wakeable } from './wake-channel.js';

/** What the acquire script answered. */
export type AcquireReply =
  /** Granted by this very call. */
  | { readonly kind: 'granted'; readonly token: number }
  /** Already held by this owner: handed over by someone else's script earlier. */
  | { readonly kind: 'held'; readonly token: number }
  /** Someone else holds it for `pttl` more ms; `fence` is the counter when the script ran. */
  | { readonly kind: 'busy'; readonly pttl: number; readonly fence: number };

/** What the leave script answered: held (and kept) by this owner, or not. */
export type LeaveReply = { readonly held: true; readonly token: number } | { readonly held: false; readonly pttl: number };

/** What a waiter needs from its store. */
export interface WaitBackend {
  readonly clock: Clock;
  readonly wake: WakeChannel;
  /** Runs the acquire script; `life` is how long the queue entry lives unrefreshed (0: one try). */
  tryAcquire(keys: LockKeys, request: AcquireRequest, life: number): Promise<AcquireReply>;
  /** Runs the leave script; `keep` keeps a lock handed over in the meantime instead of passing it on. */
  leave(keys: LockKeys, request: AcquireRequest, keep: boolean): Promise<LeaveReply>;
  /** Turns a grant into the acquire result (and waits for replicas when configured). */
  granted(request: AcquireRequest, token: number, validFrom: number, byThisCall: boolean): Promise<AcquireResult>;
  /** The waiter is done (settled or abandoned): forget it. */
  settled(waiter: Waiter): void;
}

/**
 * One acquisition waiting in a key's queue in Redis, from joining it to
 * holding the lock or giving up.
 *
 * **Waking.** The waiter joins the queue with the acquire script and then
 * waits for a hand-off message: the release (or any client that finds the
 * lease over) gives the lock straight to the longest live waiter and
 * publishes its token. No polling: a re-check runs only every
 * `refreshEvery` (to keep the queue entry alive) and when the holder's lease
 * is due to end (in case it ends without a release), so a missed message
 * delays a waiter by at most that.
 *
 * **Safe deadline after a hand-off.** The lease was created by someone else's
 * script, at a moment this process did not see. The waiter counts it from
 * `safeFrom`: the clock reading taken before the latest of its own requests
 * that Redis ran *before* the hand-off. Redis runs scripts one at a time, and
 * every reply of the acquire script carries the fencing counter as it was
 * then: a "busy" reply whose counter is below the handed-over token ran before
 * the hand-off, so it was sent before the lease began. The request that
 * joined the queue always ran before any hand-off to this owner (owners are
 * unique per acquisition), so it is the fallback. The deadline therefore
 * never falls after the lease ends in Redis; it is early by at most one
 * refresh interval and a round trip, which is why `refreshEvery` is kept
 * to a tenth of the ttl.
 */
export class Waiter implements Wakeable {
  /** How often the queue entry is refreshed: a tenth of the ttl, within [20ms, 1s]. */
  private readonly refreshEvery: number;
  /** How long the entry lives without a refresh: three refreshes and some slack. */
  private readonly life: number;
  private state: 'waiting' | 'leaving' | 'done' = 'waiting';
  /**
   * The acquire script call on its way, if any. A leave is sent only after
   * it has settled: a NOSCRIPT answer makes the call go again as EVAL, which
   * would then run after the leave and put this owner back in the queue.
   */
  private inFlight?: Promise<unknown>;
  /** A reading taken before the request that joined the queue. */
  private joinedAt = 0;
  private lastBusy?: { readonly sentAt: number; readonly fence: number };
  private recheckTimer?: Timer;
  private waitTimer?: Timer;
  private readonly onAbort = () => this.giveUp(false);
  private leaving?: Promise<void>;

  constructor(
    private readonly backend: WaitBackend,
    private readonly keys: LockKeys,
    private readonly request: AcquireRequest,
    private readonly resolve: (result: AcquireResult) => void,
    private readonly reject: (error: unknown) => void,
  ) {
    this.refreshEvery = Math.min(1_000, Math.max(20, Math.round(request.ttl / 10)));
    this.life = 3 * this.refreshEvery + 100;
  }

  start(): void {
    const { request, backend } = this;
    // Registered before the first request is sent: a hand-off can come right
    // after Redis queued us, and its message may beat the script's reply.
    backend.wake.add(request.owner, this);
    this.waitTimer = backend.clock.setTimer(() => this.giveUp(true), request.wait, true);
    request.signal?.addEventListener('abort', this.onAbort, { once: true });
    this.joinedAt = backend.clock.now();
    this.check();
  }

  woken(token: number): void {
    if (this.state !== 'waiting') return;
    // A later request already saw the lock in other hands: this hand-off's
    // lease is over; the next re-check queues us again.
    if (this.lastBusy && this.lastBusy.fence >= token) return;
    this.take(token, this.safeFrom(token), false);
  }

  recheck(): void {
    if (this.state === 'waiting' && !this.inFlight) this.check();
  }

  /** The store is closing: resolve `{ acquired: false }` and leave the queue, passing on a lock handed over meanwhile. */
  abandon(): Promise<void> {
    if (this.state === 'leaving' && this.leaving) return this.leaving;
    if (this.state === 'done') return Promise.resolve();
    this.end();
    this.resolve({ acquired: false });
    return this.afterInFlight(() => this.backend.leave(this.keys, this.request, false)).then(
      () => {},
      () => {},
    );
  }

  /** Asks Redis for the lock: taken if it is this waiter's turn, else the queue entry is refreshed. */
  private check(): void {
    this.recheckTimer?.cancel();
    this.recheckTimer = undefined;
    if (this.state !== 'waiting' || this.inFlight) return;
    const sentAt = this.backend.clock.now();
    this.inFlight = this.backend.tryAcquire(this.keys, this.request, this.life).then(
      (reply) => {
        this.inFlight = undefined;
        this.answered(reply, sentAt);
      },
      (error: unknown) => {
        this.inFlight = undefined;
        if (this.state !== 'waiting') return;
        this.end();
        this.reject(error);
      },
    );
  }

  /** Runs `send` once the acquire script call on its way (if any) has settled. */
  private afterInFlight<T>(send: () => Promise<T>): Promise<T> {
    return this.inFlight ? this.inFlight.then(send) : send();
  }

  private answered(reply: AcquireReply, sentAt: number): void {
    if (this.state !== 'waiting') return;
    if (reply.kind === 'granted') return this.take(reply.token, sentAt, true);
    if (reply.kind === 'held') return this.take(reply.token, this.safeFrom(reply.token), false);
    this.lastBusy = { sentAt, fence: reply.fence };
    // Re-check when the holder's lease is due to end (it may end without a
    // release, and then nobody publishes), and at least every refreshEvery.
    const next = reply.pttl >= 0 ? Math.min(this.refreshEvery, reply.pttl + 1) : this.refreshEvery;
    this.recheckTimer = this.backend.clock.setTimer(() => this.check(), next);
  }

  /** The reading the lease handed over with `token` may be counted from (see the class comment). */
  private safeFrom(token: number): number {
    if (this.lastBusy && this.lastBusy.fence < token) return this.lastBusy.sentAt;
    return this.joinedAt;
  }

  /**
   * The wait ran out (`keep`: a lock handed over meanwhile is kept and
   * returned) or the signal aborted (it is passed on to the next waiter).
   */
  private giveUp(keep: boolean): void {
    if (this.state !== 'waiting') return;
    this.state = 'leaving';
    this.cancelTimers();
    this.leaving = this.afterInFlight(() => this.backend.leave(this.keys, this.request, keep)).then(
      (reply) => {
        if (this.state !== 'leaving') return;
        if (reply.held) return this.take(reply.token, this.safeFrom(reply.token), false);
        this.end();
        this.resolve({ acquired: false, retryAfter: Math.max(0, reply.pttl) });
      },
      (error: unknown) => {
        if (this.state !== 'leaving') return;
        this.end();
        // Timed out: whether the lock was handed over is unknown, so say Redis
        // failed. Aborted: the caller stopped caring; its signal says why.
        if (keep) this.reject(error);
        else this.resolve({ acquired: false });
      },
    );
  }

  private take(token: number, validFrom: number, byThisCall: boolean): void {
    this.end();
    this.backend.granted(this.request, token, validFrom, byThisCall).then(this.resolve, this.reject);
  }

  private end(): void {
    this.state = 'done';
    this.cancelTimers();
    this.request.signal?.removeEventListener('abort', this.onAbort);
    this.backend.wake.delete(this.request.owner);
    this.backend.settled(this);
  }

  private cancelTimers(): void {
    this.recheckTimer?.cancel();
    this.waitTimer?.cancel();
    this.recheckTimer = undefined;
    this.waitTimer = undefined;
  }
}
