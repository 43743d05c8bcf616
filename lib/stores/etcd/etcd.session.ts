import type { Etcd3, IDuplexStream, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse } from 'etcd3';
import type { Clock, Timer } from '../../clock.js';
import { EntryNames } from './etcd.keys.js';
import type { RequestOptions } from './etcd.queue.js';

/** Why a session ended. */
export type SessionEnd =
  /** No keepalive was confirmed before the lease's deadline (etcd unreachable, a cut, a frozen process). */
  | 'expired'
  /** etcd answered that the lease no longer exists (revoked, or expired on its side). */
  | 'revoked'
  /** The store closed it. */
  | 'closed';

/** What a session tells its store. */
export interface SessionEvents {
  /** The session ended; every key under its lease is gone or about to go. Called once. */
  ended(session: Session): void;
  /** A keepalive was just sent: a good moment for work on the same cadence (the key audit). */
  beat(session: Session): void;
}

/** The longest wait between tries to reopen a failed keepalive stream (see `Session.failed`). */
const MAX_RETRY_DELAY = 1_000;

/**
 * One etcd lease shared by every lock the store holds, and the one
 * keepalive stream that keeps it alive.
 *
 * **Validity counted from the send.** etcd renews a lease when the leader
 * receives the keepalive, for the lease's full TTL. The session records the
 * moment it *sent* each keepalive and, when the answer comes, knows the
 * lease lives at least until `sentAt + TTL`, however late the answer was.
 * `validUntil` is the latest such bound, minus a drift allowance (1% + 2 ms)
 * for the two clocks running at slightly different rates. etcd never revokes
 * a lease before its deadline (it checks for expired leases afterwards, and a
 * new leader extends every lease by an election timeout), so every key under
 * the lease exists at least until `validUntil` unless someone deletes it.
 *
 * **Driving the stream ourselves.** etcd3's `Lease` counts from when answers
 * arrive, and only notices a dead stream when writing to it fails: a stream
 * that stays open through a network cut (microsoft/etcd3#110) keeps it
 * "alive" forever. Here the answers on one stream come back in the order the
 * keepalives were sent, so each answer is matched to its send time; and the
 * session ends at `validUntil` by its own timer whether the stream failed,
 * hung or never answered. A keepalive left unanswered for a whole interval
 * marks the stream stalled: it is cancelled (which makes etcd3 drop that
 * host's connection) and a new one is opened, possibly to another member.
 *
 * Keepalives go every third of the TTL, so a healthy session always has at
 * least two thirds of its TTL ahead of it.
 */
export class Session {
  /** Store-clock time until which the lease certainly exists. */
  validUntil: number;
  /** The queue entry names in use under this session's lease. */
  readonly names: EntryNames;
  ended = false;
  private readonly interval: number;
  private readonly drift: number;
  private stream?: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>;
  private opening = false;
  /** Send times of the keepalives on `stream` still waiting for an answer, oldest first. */
  private sent: number[] = [];
  private beatTimer?: Timer;
  private deadlineTimer?: Timer;
  /** The reopening scheduled after the stream failed, while no stream is open or opening (see `open`). */
  private retryTimer?: Timer;
  private retryDelay = 0;

  private constructor(
    private readonly client: Etcd3,
    private readonly clock: Clock,
    private readonly events: SessionEvents,
    private readonly callOptions: () => RequestOptions,
    /** The lease, as etcd3 passes lease ids: a decimal string. */
    readonly leaseId: string,
    /** The TTL etcd granted, in milliseconds (etcd may raise the one asked for). */
    readonly ttl: number,
    grantSentAt: number,
  ) {
    this.names = new EntryNames(leaseId);
    this.interval = Math.max(50, Math.floor(ttl / 3));
    this.drift = ttl / 100 + 2;
    this.validUntil = grantSentAt + ttl - this.drift;
    this.armDeadline();
    this.beat();
  }

  /** Grants a lease of `ttlSeconds` and starts keeping it alive. */
  static async start(
    client: Etcd3,
    clock: Clock,
    ttlSeconds: number,
    events: SessionEvents,
    callOptions: () => RequestOptions,
  ): Promise<Session> {
    const sentAt = clock.now();
    const grant = await client.leaseClient.leaseGrant({ TTL: ttlSeconds }, callOptions());
    return new Session(client, clock, events, callOptions, grant.ID, Number(grant.TTL) * 1_000, sentAt);
  }

  /** True while the lease is certainly alive at `now`. */
  alive(now = this.clock.now()): boolean {
    return !this.ended && now < this.validUntil;
  }

  /**
   * Lists the keys etcd holds under the lease, with the revision the answer
   * carries, which may be later than the list (see `EtcdLockStore.audit`);
   * a lease etcd no longer has ends the session as revoked.
   */
  async keys(): Promise<{ revision: number; keys: Set<string> } | undefined> {
    const answer = await this.client.leaseClient.leaseTimeToLive({ ID: this.leaseId, keys: true }, this.callOptions());
    if (Number(answer.TTL) < 0) {
      this.end('revoked');
      return undefined;
    }
    return { revision: Number(answer.header.revision), keys: new Set(answer.keys.map((key) => key.toString('latin1'))) };
  }

  /** Ends the session: stops the keepalives and tells the store. Idempotent. */
  end(why: SessionEnd): void {
    if (this.ended) return;
    this.ended = true;
    this.beatTimer?.cancel();
    this.deadlineTimer?.cancel();
    this.retryTimer?.cancel();
    this.dropStream(false);
    this.events.ended(this);
    // A lease we gave up on may still exist in etcd (the cut healed just
    // after the deadline): revoke it, so its keys go now rather than at its TTL.
    if (why === 'expired') this.revoke().catch(() => {});
  }

  /** Revokes the lease in etcd, deleting every key under it. */
  async revoke(): Promise<void> {
    await this.client.leaseClient.leaseRevoke({ ID: this.leaseId }, this.callOptions());
  }

  private beat(): void {
    if (this.ended) return;
    const now = this.clock.now();
    const oldest = this.sent[0];
    if (oldest !== undefined && now - oldest > this.interval) this.dropStream(true);
    if (this.stream) {
      this.stream.write({ ID: this.leaseId });
      this.sent.push(now);
    } else {
      this.open();
    }
    this.events.beat(this);
    this.beatTimer = this.clock.setTimer(() => this.beat(), this.interval);
  }

  /**
   * Opens the keepalive stream unless one is open or opening, in place of any
   * retry still pending: a beat that reopens the stream while etcd is back
   * must not leave a retry behind that opens a second one. A second stream
   * would replace the first in `stream` and orphan it: a live gRPC call that
   * nothing ends, which keeps its HTTP/2 connection referenced, and the
   * process running, even after the client is closed.
   */
  private open(): void {
    this.retryTimer?.cancel();
    this.retryTimer = undefined;
    if (this.opening || this.stream || this.ended) return;
    this.opening = true;
    this.client.leaseClient.leaseKeepAlive().then(
      (stream) => {
        this.opening = false;
        if (this.ended) {
          closeStream(stream, false);
          return;
        }
        this.stream = stream;
        this.sent = [];
        stream.on('data', (answer) => stream === this.stream && this.answered(answer));
        stream.on('error', () => stream === this.stream && this.failed());
        stream.on('end', () => stream === this.stream && this.failed());
        stream.write({ ID: this.leaseId });
        this.sent.push(this.clock.now());
      },
      () => {
        this.opening = false;
        this.failed();
      },
    );
  }

  private answered(answer: ILeaseKeepAliveResponse): void {
    const sentAt = this.sent.shift();
    if (sentAt === undefined || this.ended) return;
    this.retryDelay = 0;
    const ttl = Number(answer.TTL) * 1_000;
    if (!(ttl > 0)) {
      this.end('revoked');
      return;
    }
    const until = sentAt + ttl - this.drift;
    if (until > this.validUntil) {
      this.validUntil = until;
      this.armDeadline();
    }
  }

  /**
   * The stream failed: open another soon, not at the next beat (every lost
   * millisecond is lease margin), backing off to one try a second, so a
   * member back from a restart is found within a second rather than a whole
   * interval later, when the lease may have run out meanwhile.
   */
  private failed(): void {
    this.dropStream(false);
    if (this.ended) return;
    this.retryDelay = Math.min(this.interval, MAX_RETRY_DELAY, Math.max(25, this.retryDelay * 2));
    this.retryTimer = this.clock.setTimer(() => this.open(), this.retryDelay);
  }

  /** Forgets the stream; `reset` cancels it in a way that makes etcd3 drop the host's connection (a stalled stream). */
  private dropStream(reset: boolean): void {
    const stream = this.stream;
    this.stream = undefined;
    this.sent = [];
    if (stream) closeStream(stream, reset);
  }

  private armDeadline(): void {
    this.deadlineTimer?.cancel();
    this.deadlineTimer = this.clock.setTimer(() => {
      if (this.clock.now() >= this.validUntil) this.end('expired');
      else this.armDeadline();
    }, Math.max(0, this.validUntil - this.clock.now()));
  }
}

/**
 * Closes a stream etcd3 opened. Ending it first makes etcd3 see it as a
 * deliberate close; cancelling a still-writable stream makes etcd3 treat the
 * host as failed and reconnect, which is what a stalled stream needs.
 */
export function closeStream(stream: { end(): void; cancel(): void; on(event: 'error', fn: (err: Error) => void): unknown }, reset: boolean): void {
  stream.on('error', () => {}); // the cancellation itself surfaces as an error
  if (!reset) stream.end();
  stream.cancel();
}
