import { DBusError, RequestNameReply } from 'dbus-next';
import type { Clock, Timer } from '../../clock.js';
import type { LockStoreError } from '../../errors.js';
import type { AcquireRequest, AcquireResult } from '../../store/lock-store.js';
import { BusTimeoutError, type BusConnection, type NameWatcher } from './bus-connection.js';
import { BUSY, type ConnectionPool } from './connection-pool.js';

const LIMITS_EXCEEDED = 'org.freedesktop.DBus.Error.LimitsExceeded';

/** What a claim needs from the store that made it. */
export interface ClaimHost {
  readonly clock: Clock;
  readonly pool: ConnectionPool;
  /** The claim now owns its name: record it as the key's holder; returns its fencing token. */
  held(claim: NameClaim): number;
  /** The claim no longer owns its name (released, expired, lost). */
  unheld(claim: NameClaim): void;
  /** The claim is over and off its connection: its name may have room for a caller waiting in this process. */
  ended(claim: NameClaim): void;
  /** Every connection already claims the name: wait in this process, at the front when `first`. */
  waitHere(claim: NameClaim, first: boolean): void;
  /** A claim that waited in this process gave up. */
  leaveHere(claim: NameClaim): void;
  /** Wraps a bus failure into an error that names the operation, the key and the bus. */
  failure(what: string, claim: NameClaim, error: unknown): LockStoreError;
}

/**
 * ```
 * here ──> requesting ──> held ──> leaving ──> done
 *               └──> queued ──┘       ↑
 *                      └──────────────┘ (gave up)
 * ```
 * `here`: waiting in this process for a connection without a claim on the
 * name. `requesting`: `RequestName` sent. `queued`: in the daemon's FIFO
 * queue, until `NameAcquired`. `leaving`: `ReleaseName` sent (release,
 * expiry, a waiter giving up, or the store closing); the claim stays on its
 * connection until the daemon answered, so no later claim on that connection
 * can mistake a `NameAcquired`/`NameLost` meant for this one (the daemon
 * sends a name's signals before its reply to the call that caused them, and
 * dbus-next delivers a signal no later than a reply that came before it). A
 * held claim whose lease has not ended stays `held` through the store's
 * close, until its lease expiry moves it on (see `keepPastClose`).
 */
type Phase = 'here' | 'requesting' | 'queued' | 'held' | 'leaving' | 'done';

/** One acquisition of one key: its way through the bus's queue, its ownership, and its end. */
export class NameClaim implements NameWatcher {
  private phase: Phase = 'here';
  private connection?: BusConnection;
  private settled = false;
  private ended = false;
  private timer?: Timer;
  private onAbort?: () => void;
  /** The wait ran out or the signal aborted before the answer to `RequestName` came. */
  private gaveUp = false;
  /**
   * `NameAcquired` came while the answer to `RequestName` was on its way to
   * us. The daemon sends that answer first, but dbus-next hands replies over
   * through promises and signals synchronously, so a grant that followed
   * `IN_QUEUE` in the same read reaches the claim before the reply does.
   */
  private acquiredEarly = false;
  /** When the lease ends unless renewed, on the store's clock. */
  expiresAt = Infinity;

  constructor(
    private readonly host: ClaimHost,
    readonly request: AcquireRequest,
    readonly name: string,
    private readonly resolve: (result: AcquireResult) => void,
    private readonly reject: (error: Error) => void,
  ) {}

  get key(): string {
    return this.request.key;
  }

  get owner(): string {
    return this.request.owner;
  }

  /** Starts the claim; `behind` when callers of this process already wait here for the name. */
  start(behind: boolean): void {
    const { wait, signal } = this.request;
    if (wait > 0) {
      this.timer = this.host.clock.setTimer(() => this.giveUp(), wait, true);
      if (signal) {
        this.onAbort = () => this.giveUp();
        signal.addEventListener('abort', this.onAbort, { once: true });
      }
    }
    if (behind) this.host.waitHere(this, false);
    else void this.takeConnection();
  }

  /**
   * Takes a connection without a claim on the name and asks the bus for the
   * name. `turn` when the claim waited in this process and its turn came: if
   * it still finds no connection, it goes back to the front of that queue.
   */
  async takeConnection(turn = false): Promise<void> {
    let connection;
    try {
      connection = this.host.pool.claim(this.name, this);
      if (connection instanceof Promise) connection = await connection;
    } catch (error) {
      this.end(); // forgotten by the store, and the next caller waiting here gets its turn
      this.fail(this.host.failure('reach the bus for', this, error));
      return;
    }
    if (connection === BUSY) {
      if (this.phase !== 'here') return;
      if (this.request.wait > 0) this.host.waitHere(this, turn);
      else this.settle({ acquired: false });
      return;
    }
    this.connection = connection;
    if (this.phase !== 'here') {
      this.end(); // gave up or closed while the connection opened
      return;
    }
    this.phase = 'requesting';
    const sentAt = this.host.clock.now();
    connection.request(this.name, this.request.wait > 0).then(
      (reply) => this.answered(reply, sentAt),
      (error: unknown) => this.requestFailed(error),
    );
  }

  /** `NameAcquired`: the queue reached this claim. In other phases the signal repeats a reply, or comes too late. */
  acquired(): void {
    if (this.phase === 'requesting') this.acquiredEarly = true;
    if (this.phase !== 'queued') return;
    this.connection?.unhold();
    this.grant(this.host.clock.now());
  }

  /** `NameLost` while held: only another owner could cause it, and the store never allows replacement. */
  lost(): void {
    if (this.phase !== 'held') return;
    this.host.unheld(this);
    this.end();
    this.request.onLost('not-owner');
  }

  dropped(error: Error): void {
    const phase = this.phase;
    this.end();
    if (phase === 'held') {
      this.host.unheld(this);
      this.request.onLost('session-lost');
    } else {
      this.fail(this.host.failure('wait for', this, error));
    }
  }

  /** Confirms a renewal from the claim's own state: the bus keeps a name as long as the connection lives. */
  renew(ttl: number, now: number, enforced: boolean): boolean {
    if (this.phase !== 'held' || !this.connection?.open || (enforced && this.expiresAt <= now)) return false;
    this.expiresAt = now + ttl;
    return true;
  }

  /** Gives the name up. Rejects only when the bus did not answer; a connection that ended freed the name anyway. */
  async release(): Promise<void> {
    this.host.unheld(this);
    try {
      await this.leave();
    } catch (error) {
      if (error instanceof BusTimeoutError) throw this.host.failure('release', this, error);
    }
  }

  /** The lease ran out unrenewed: the name goes to the next in the bus's queue. */
  expire(): void {
    this.host.unheld(this);
    this.leave().catch(() => {}); // failing means the connection ended, which frees the name too
  }

  /**
   * The store is closing. True when the claim holds its name and its lease
   * has not ended: it keeps the name until the lease ends, and its connection
   * stays open for it (see `DbusLockStore.close`). Nothing else changes: the
   * store's lease expiry still releases the name at its end.
   */
  keepPastClose(now: number): boolean {
    if (this.phase !== 'held' || this.expiresAt <= now || !this.connection?.open) return false;
    this.connection.outlastStore();
    return true;
  }

  /**
   * The store is closing, and this claim keeps nothing past it: a wait is
   * answered at once (not acquired), a holder hears `session-lost`, and
   * whatever the claim has on the bus, its name or its queue place, is given
   * back with `ReleaseName`. On a connection that closes with the store,
   * the close gives it back either way and the call fails, which ends the
   * claim just the same; on one kept open for a name that outlasts the
   * store, the call is what takes this claim off the bus, so its key is not
   * blocked until that lease ends.
   */
  close(): void {
    const phase = this.phase;
    this.clearWait();
    this.settle({ acquired: false });
    if (phase === 'here') {
      this.phase = 'done'; // a connection still opening for it is closed as it opens
    } else if (phase === 'requesting') {
      this.gaveUp = true; // once the bus answers, the claim leaves whatever it got
    } else if (phase === 'queued' || phase === 'held') {
      if (phase === 'queued') this.connection?.unhold();
      else this.request.onLost('session-lost');
      this.leave().catch(() => {}); // failing means the connection ended, which gave everything back too
    }
  }

  private answered(reply: number, sentAt: number): void {
    if (this.phase !== 'requesting') return;
    const got = reply === RequestNameReply.PRIMARY_OWNER || reply === RequestNameReply.IN_QUEUE;
    if (this.gaveUp) {
      const done = () => this.settle({ acquired: false });
      if (got) this.leave().then(done, done);
      else {
        done();
        this.end();
      }
      return;
    }
    if (reply === RequestNameReply.PRIMARY_OWNER) {
      this.grant(sentAt);
    } else if (reply === RequestNameReply.IN_QUEUE && this.acquiredEarly) {
      this.grant(this.host.clock.now());
    } else if (reply === RequestNameReply.IN_QUEUE) {
      this.phase = 'queued';
      this.connection?.hold();
    } else if (reply === RequestNameReply.EXISTS) {
      this.settle({ acquired: false });
      this.end();
    } else {
      // ALREADY_OWNER: the pool never puts two claims on one name on one connection, so the bus and the store disagree.
      this.fail(this.host.failure('take', this, new Error(`the bus answered RequestName with ${reply} (already the owner)`)));
      this.leave().catch(() => {});
    }
  }

  private requestFailed(error: unknown): void {
    if (this.phase !== 'requesting') return;
    if (error instanceof DBusError && error.type === LIMITS_EXCEEDED && this.connection) {
      // This connection has as many names as the bus allows one connection: try another.
      this.connection.markFull();
      this.connection.unwatch(this.name, this);
      this.connection = undefined;
      this.phase = 'here';
      void this.takeConnection();
      return;
    }
    this.fail(this.host.failure('take', this, error));
    if (!(error instanceof BusTimeoutError)) {
      this.end();
      return;
    }
    // The bus may still answer: leave whatever it gives, and only then free the connection for this name.
    error.late.then(
      (reply) => {
        if (reply === RequestNameReply.PRIMARY_OWNER || reply === RequestNameReply.IN_QUEUE) this.leave().catch(() => {});
        else this.end();
      },
      () => this.end(),
    );
  }

  private grant(validFrom: number): void {
    this.clearWait();
    this.phase = 'held';
    this.expiresAt = validFrom + this.request.ttl;
    const fencingToken = this.host.held(this);
    this.settle({ acquired: true, fencingToken, validFrom, validFor: this.request.ttl });
  }

  /** The wait ran out or the signal aborted. */
  private giveUp(): void {
    this.clearWait();
    if (this.phase === 'here') {
      this.phase = 'done';
      this.host.leaveHere(this);
      this.settle({ acquired: false });
    } else if (this.phase === 'requesting') {
      this.gaveUp = true; // settled once the bus answers and the claim left whatever it got
    } else if (this.phase === 'queued') {
      this.connection?.unhold();
      this.leave().then(
        () => this.settle({ acquired: false }),
        (error: unknown) => this.fail(this.host.failure('leave the queue of', this, error)),
      );
    }
  }

  /**
   * `ReleaseName`: gives up ownership or the queue place, then takes the
   * claim off its connection. After a timeout the claim stays there until
   * the late answer comes or the connection ends.
   */
  private async leave(): Promise<void> {
    const connection = this.connection;
    if (!connection || this.phase === 'leaving' || this.ended) return;
    this.phase = 'leaving';
    try {
      await connection.release(this.name);
    } catch (error) {
      if (error instanceof BusTimeoutError) error.late.then(() => this.end(), () => this.end());
      else this.end();
      throw error;
    }
    this.end();
  }

  private end(): void {
    this.phase = 'done';
    this.clearWait();
    if (this.ended) return;
    this.ended = true;
    this.connection?.unwatch(this.name, this);
    this.host.ended(this);
  }

  private clearWait(): void {
    this.timer?.cancel();
    this.timer = undefined;
    if (this.onAbort) this.request.signal?.removeEventListener('abort', this.onAbort);
    this.onAbort = undefined;
  }

  private settle(result: AcquireResult): void {
    if (this.settled) return;
    this.settled = true;
    this.resolve(result);
  }

  private fail(error: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.clearWait();
    this.reject(error);
  }
}
