import { EtcdLeaseInvalidError, type Etcd3 } from 'etcd3';
import { systemClock, type Clock } from '../../clock.js';
import { LockStoreError, describeValue } from '../../errors.js';
import type {
  AcquireRequest,
  AcquireResult,
  LockStore,
  LockStoreTraits,
  RenewRequest,
  RenewResult,
} from '../../store/lock-store.js';
import { HeldLocks, type HeldLock } from './etcd.held.js';
import { LockPaths, type LockPath } from './etcd.keys.js';
import { connect, describeTarget, settingsFrom, type EtcdLockStoreOptions, type Settings } from './etcd.options.js';
import { enqueue, keepAlone, keysAhead, mark, onLease, remove, removeName, removeStray, type RequestOptions } from './etcd.queue.js';
import type { CountedRetry } from './etcd.retry.js';
import { Session, type SessionEvents } from './etcd.session.js';
import { Waiter, type Place, type WaiterBackend } from './etcd.waiter.js';
import { WatchHub } from './etcd.watch-hub.js';

/**
 * Locks in etcd through etcd3: a consensus store, for applications that need
 * correctness more than speed. Fencing tokens are etcd revisions, so they
 * grow for the life of the cluster's data, across restarts and leader
 * changes (`fencing: 'strict'`).
 *
 * **One session per store.** The store takes one etcd lease (its session)
 * and keeps it alive with one keepalive stream; every key it writes is
 * attached to it. Acquiring is one transaction and releasing one delete;
 * renewing costs no round trip (see {@link HeldLocks}). If the process dies
 * or freezes, etcd deletes every key of the lease after its TTL
 * (`sessionTtl`), and the locks pass on.
 *
 * **A fair queue, one wake-up per release.** Each acquisition puts its own
 * key under the lock's prefix (etcd.keys.ts); the owner is the key with the
 * lowest create revision. A waiter watches only the key just before its own
 * and usually takes over on that key's deletion without another round trip
 * ({@link Waiter}). Giving up deletes the waiter's key.
 *
 * ### Safety argument
 *
 * - *Mutual exclusion.* The owner is the lowest create revision under the
 *   prefix. The queue transaction puts the key and lists the keys ahead in
 *   one step, so that list is exact, and etcd gives every later key a higher
 *   revision, so nothing can ever join ahead. A waiter removes a key from its
 *   list only on evidence that it is gone (a delete of that name after the
 *   key's create revision, a linearizable read) or that nothing before it is
 *   left (the owner mark, written only by an owner and only if its key, by
 *   create revision, still exists). It owns the lock when the list is empty,
 *   which is then true. Names are reused (etcd.keys.ts), so every write that
 *   changes a key compares its create revision: a late or repeated request
 *   cannot touch a later key of the same name. The release's plain delete is
 *   the exception, and its name is reused only when it was sent once, so no
 *   copy of it is left to land ({@link deleteKey}).
 * - *Deadline.* A grant or renewal ends at the earlier of the lock's ttl
 *   (counted from a reading taken before the request, or from now for a
 *   renewal), after which this store deletes the key itself, and the
 *   session's `validUntil`: the send time of the newest keepalive etcd
 *   confirmed, plus the lease TTL, minus 1% + 2 ms for clock drift. etcd
 *   cannot delete the key earlier except on someone's explicit request.
 * - *Loss.* When no keepalive is confirmed by `validUntil` (etcd down, a
 *   partition, a keepalive stream that stays open through a cut and answers
 *   nothing, this process frozen), the session's own timer ends it: every
 *   lock under it is reported lost at once (`session-lost`) and waiters
 *   queue again on a new session. An answer that the lease is gone ends it
 *   at once. A key deleted by someone else is found by an audit of the
 *   lease's keys every keepalive interval, and confirmed by a read of that
 *   key before it is reported (`not-owner`); the audit also deletes
 *   keys of the lease that no acquisition holds (late copies of a join); a
 *   waiter whose own key was deleted while it waited, and which then took
 *   over, learns it from its owner mark failing, one round trip later. Either way fencing
 *   tokens protect the resource: the next owner's token is higher.
 *
 * @example
 * import { EtcdLockStore } from 'nestjs-distributed-lock/etcd';
 *
 * LockModule.forRoot({ store: new EtcdLockStore({ client: etcd }) })   // an Etcd3 the app already has
 * LockModule.forRoot({ store: new EtcdLockStore({ hosts: ['http://127.0.0.1:2379'] }) })  // closed with the app
 */
export class EtcdLockStore implements LockStore {
  readonly traits: LockStoreTraits = { name: 'etcd', fencing: 'strict', fair: true, waits: true };
  readonly clock: Clock;
  /** True when the store created its etcd client (from `hosts`): `LockModule` then closes the store with its last application. */
  readonly ownsConnection: boolean;
  private readonly client: Etcd3;
  /** The retry policy of a client the store created: it tells which requests were sent once. */
  private readonly retry?: CountedRetry;
  private readonly settings: Settings;
  /** Where etcd is, for errors; never with credentials. */
  private readonly target: string;
  private readonly hub: WatchHub;
  private readonly paths: LockPaths;
  private readonly held: HeldLocks;
  private readonly waiters = new Set<Waiter>();
  /** Keys to delete that etcd could not be asked to delete yet, by latin1 text; retried every keepalive. */
  private readonly orphans = new Map<string, Orphan>();
  /** The session later acquisitions use, while it starts and while it lives. */
  private session?: Promise<Session>;
  private live?: Session;
  private auditing = false;
  private closed = false;
  private readonly backend: WaiterBackend;
  private readonly sessionEvents: SessionEvents = {
    ended: (session) => this.sessionEnded(session),
    beat: (session) => this.beat(session),
  };

  constructor(options: EtcdLockStoreOptions) {
    this.settings = settingsFrom(options);
    this.clock = options.clock ?? systemClock;
    this.target = describeTarget(options);
    const connection = connect(options, this.settings);
    this.client = connection.client;
    this.ownsConnection = connection.owned;
    this.retry = connection.retry;
    this.paths = new LockPaths(this.settings.keyPrefix);
    this.hub = new WatchHub(this.client, this.clock, Math.min(this.settings.dialTimeout, (this.settings.sessionTtl * 1_000) / 3));
    this.held = new HeldLocks(this.clock, (lock) => void this.discard(lock));
    this.backend = {
      clock: this.clock,
      hub: this.hub,
      join: (waiter) => this.place(waiter.path, waiter.request, true) as Promise<Place>,
      check: (path, revision) => keysAhead(this.client.kv, path, revision, this.options()),
      granted: (waiter) => this.grant(waiter.request, waiter.session, waiter.key, waiter.revision, this.clock.now(), true),
      // A copy: the waiter's key changes when it joins again, and an orphan must keep the one it was given.
      leave: (waiter) => this.discard({ key: waiter.key, revision: waiter.revision, session: waiter.session }),
      settled: (waiter) => this.waiters.delete(waiter),
    };
  }

  async acquire(request: AcquireRequest): Promise<AcquireResult> {
    this.assertOpen('acquire', request.key);
    const path = this.paths.of(request.key);
    const wait = request.wait > 0 && !request.signal?.aborted;
    // A grant the session cannot back (it ended during the request) is
    // retried once, on the next session.
    for (let tries = 0; tries < 2; tries++) {
      const sentAt = this.clock.now();
      const place = await this.place(path, request, wait);
      if (!place || this.closed) return { acquired: false }; // closing revokes the session, and the key with it
      if (place.position.ahead.size > 0) {
        return new Promise((resolve) => {
          const waiter = new Waiter(this.backend, request, path, place, resolve);
          this.waiters.add(waiter);
          waiter.start();
        });
      }
      const result = this.grant(request, place.session, place.key, place.position.revision, sentAt, false);
      if (result) return result;
    }
    throw new LockStoreError(
      `The etcd lock store could not keep a session with etcd at ${this.target} long enough to grant lock ${describeValue(request.key)}; ` +
        'check that etcd is reachable and answers within dialTimeout, and that sessionTtl is well above its round trip',
    );
  }

  async renew(requests: readonly RenewRequest[]): Promise<readonly RenewResult[]> {
    this.assertOpen('renew');
    return this.held.renew(requests);
  }

  async release(key: string, owner: string): Promise<boolean> {
    this.assertOpen('release', key);
    const lock = this.held.get(owner);
    if (!lock || lock.storeKey !== key) return false;
    this.held.delete(owner);
    const now = this.clock.now();
    if (lock.session.ended) return false; // the lease took the key with it
    const wasHeld = now < lock.expiresAt && lock.session.alive(now);
    try {
      return (await this.deleteKey(lock)) && wasHeld;
    } catch (error) {
      // A plain delete that failed may still take effect later: its name then stays taken for good.
      this.orphans.set(lock.key.toString('latin1'), this.retry ? { key: lock.key, session: lock.session } : lock);
      throw this.failure(`release lock ${describeValue(key)}`, error);
    }
  }

  /**
   * Stops the store: waiting acquisitions resolve `{ acquired: false }`, and
   * the session's lease is revoked, which deletes every key the store wrote
   * in one request. A lock still held (one left to run out, as
   * `lockAtLeastFor` does) first moves to a lease of its own for the rest of
   * its ttl, so it keeps others out as long as it promised; it is reported
   * lost, since nobody renews it any more. The streams end, and so does the
   * client when the store created it.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const waiter of [...this.waiters]) waiter.abandon();
    await this.endSession();
    this.hub.close();
    if (this.ownsConnection) this.client.close();
  }

  /**
   * Ends the session as `close()` does (locks still held move to leases of
   * their own and run out there), and the watches kept for later waiters, so
   * neither keeps the process alive; the next acquisition starts a new
   * session. Nothing is ended while a wait is in progress, and the client
   * stays open.
   */
  async suspend(): Promise<void> {
    if (this.closed || this.waiters.size > 0) return;
    await this.endSession();
    this.hub.suspend();
  }

  private async endSession(): Promise<void> {
    const now = this.clock.now();
    await Promise.all(
      this.held
        .unexpired(now)
        .filter((lock) => !lock.session.ended)
        .map((lock) => keepAlone(this.client, lock.key, lock.revision, lock.expiresAt - now, this.options()).catch(() => {})),
    );
    this.held.loseAll();
    const session = this.live ?? (await this.session?.catch(() => undefined));
    if (session && !session.ended) {
      await session.revoke().catch(() => {}); // if etcd cannot be reached, the lease ends by itself after its TTL
      session.end('closed');
    }
  }

  /** Joins the lock's queue with a new key (on the current session, starting one if needed). `undefined`: busy, for a single try. */
  private async place(path: LockPath, request: AcquireRequest, wait: boolean): Promise<Place | undefined> {
    for (let tries = 0; ; tries++) {
      const session = this.live ?? (await this.currentSession().catch((error: unknown) => {
        throw this.failure(`start a session (grant a lease) for lock ${describeValue(request.key)}`, error);
      }));
      const key = session.names.take(path);
      try {
        const position = await enqueue(this.client.kv, path, key, session.leaseId, wait, this.options());
        if (!position) session.names.free(key);
        return position && { session, key, position };
      } catch (error) {
        if (error instanceof EtcdLeaseInvalidError) {
          // Nothing was written. etcd says the lease is gone before our keepalive did: start a new session.
          session.names.free(key);
          if (tries === 0) {
            session.end('revoked');
            continue;
          }
        } else {
          // The transaction may have been applied without an answer: delete whatever it left (the name stays taken).
          this.orphans.set(key.toString('latin1'), { key, session });
        }
        throw this.failure(`join the queue of lock ${describeValue(request.key)}`, error);
      }
    }
  }

  /**
   * Records a lock the session now holds through `key` (created at
   * `revision`) and answers the acquire; `undefined` when the session cannot
   * back it (it ended, or its lease is past its confirmed deadline; ending
   * it revokes the lease, and the key with it).
   */
  private grant(
    request: AcquireRequest,
    session: Session,
    key: Buffer,
    revision: number,
    validFrom: number,
    afterWaiting: boolean,
  ): AcquireResult | undefined {
    if (!session.alive(validFrom)) {
      if (!session.ended) session.end('expired'); // its lease, and the key with it, are revoked
      return undefined;
    }
    const lock: HeldLock = {
      owner: request.owner,
      storeKey: request.key,
      key,
      revision,
      session,
      expiresAt: validFrom + request.ttl,
      onLost: request.onLost,
    };
    this.held.add(lock);
    if (afterWaiting) this.markOwner(lock);
    return {
      acquired: true,
      fencingToken: lock.revision,
      validFrom,
      validFor: Math.min(request.ttl, session.validUntil - validFrom),
    };
  }

  /**
   * Deletes a released lock's key, resolving whether it was there, and frees
   * its name unless a copy of the request may still land on the name's next
   * key. On the store's own client that is a plain delete, the cheapest
   * write: while the name is this lock's, no other key carries it, so the
   * delete finds this key or nothing; and when it was sent once (etcd.retry.ts),
   * it cannot take effect again. A delete sent twice keeps its name taken for
   * good. On a client passed in, where re-sends cannot be seen, it compares
   * the key's create revision instead, which makes any copy harmless.
   */
  private async deleteKey(lock: HeldLock): Promise<boolean> {
    const { session, key } = lock;
    if (!this.retry) {
      const deleted = await remove(this.client.kv, key, lock.revision, this.options());
      session.names.free(key);
      return deleted;
    }
    const resent = this.retry.resent;
    const deleted = await removeName(this.client.kv, key, this.options());
    if (this.retry.resent === resent) session.names.free(key);
    return deleted;
  }

  /** Tells the successor this key owns the lock; if the key is gone, the lock was never really ours. */
  private markOwner(lock: HeldLock): void {
    mark(this.client.kv, lock.key, lock.revision, this.options()).then(
      (marked) => {
        // A mark that fails after a release (the two can cross) changes nothing.
        if (!marked && this.held.lose(lock, 'not-owner')) lock.session.names.free(lock.key);
      },
      () => {}, // unreachable: the session deadline decides
    );
  }

  private currentSession(): Promise<Session> {
    if (this.session) return this.session;
    const starting = Session.start(this.client, this.clock, this.settings.sessionTtl, this.sessionEvents, () => this.options()).then(
      (session) => {
        if (this.closed) {
          session.revoke().catch(() => {});
          session.end('closed');
          throw closedError('acquire');
        }
        if (this.session === starting) this.live = session;
        return session;
      },
      (error: unknown) => {
        if (this.session === starting) this.session = undefined;
        throw error; // named with the lock that asked, in `place`
      },
    );
    this.session = starting;
    return starting;
  }

  private sessionEnded(session: Session): void {
    if (this.live === session) {
      this.live = undefined;
      this.session = undefined;
    }
    this.held.sessionEnded(session);
    for (const waiter of [...this.waiters]) if (waiter.session === session) waiter.lost();
  }

  /** Every keepalive: retry deletions etcd missed, and audit the lease's keys (one audit at a time, off the acquire path). */
  private beat(session: Session): void {
    for (const orphan of this.orphans.values()) void this.discard(orphan);
    if (this.auditing) return;
    this.auditing = true;
    this.audit(session)
      .catch(() => {}) // etcd unreachable: the session deadline decides, and the next keepalive audits again
      .finally(() => (this.auditing = false));
  }

  /**
   * Compares the keys etcd holds under the session's lease with the ones the
   * store uses: a lock or waiting acquisition whose key left the lease was
   * deleted (or taken over) by someone else, and a key no acquisition uses
   * is a stray.
   *
   * **The list is older than its revision.** etcd reads the lease's key list
   * first and stamps the answer with the revision it is at afterwards: 3.4
   * leaves the header to its gRPC layer, which fills it in once the list is
   * built, and a follower forwards the call to the leader and stamps the
   * leader's list with its own revision when it comes back. A key created in
   * between has a revision no later than the answer's and is missing from
   * its list. Taken at its word, a lock acquired while the audit was under
   * way (or a waiter that joined then) was reported lost (`not-owner`), and
   * its name freed while its key still stood, for the next audit to delete
   * as a stray. Nothing here bounds that window: it grows with the lease's
   * key list and, on a follower, with the round trip to the leader. So the
   * list only names suspects, and a linearizable read of each, sent once the
   * list is back, decides: only a key that read does not find on the lease
   * is lost. Suspects are few (acquisitions during one audit), and none of
   * this is on the acquire or release path.
   *
   * Strays need no such read: their names are taken as the list arrives, and
   * a name is in use from before its key is written until after it is known
   * deleted, so a listed key whose name is free belongs to no acquisition.
   */
  private async audit(session: Session): Promise<void> {
    const found = await session.keys();
    if (!found) return;
    for (const text of found.keys) {
      const stray = session.names.claim(text);
      if (stray) void this.discardStray(session, stray, found.revision);
    }
    const unlisted = (key: Buffer, revision: number) => revision <= found.revision && !found.keys.has(key.toString('latin1'));
    // Copies of each waiter's key: a waiter that joins again meanwhile has a new one, which this audit knows nothing about.
    const waiters = [...this.waiters]
      .filter((waiter) => waiter.session === session && unlisted(waiter.key, waiter.revision))
      .map((waiter) => ({ waiter, key: waiter.key, revision: waiter.revision }));
    const locks = this.held.unlisted(session, found.revision, found.keys);
    const gone = async (suspect: { key: Buffer; revision: number }) =>
      !(await onLease(this.client.kv, suspect.key, suspect.revision, session.leaseId, this.options()));
    const [locksGone, waitersGone] = await Promise.all([Promise.all(locks.map(gone)), Promise.all(waiters.map(gone))]);
    locks.forEach((lock, i) => {
      // A lock released meanwhile is no longer held: lose() leaves it, and its name (perhaps taken again), alone.
      if (locksGone[i] && this.held.lose(lock, 'not-owner')) session.names.free(lock.key);
    });
    waiters.forEach(({ waiter, key, revision }, i) => {
      if (!waitersGone[i] || waiter.session !== session || waiter.key !== key || waiter.revision !== revision) return;
      // Only the waiter's first notice frees the name: on a later one the name may carry its next key.
      if (waiter.lost()) session.names.free(key);
    });
  }

  /**
   * Deletes a key of the lease whose name no acquisition held at the audit
   * (`revision`): a late copy of a join, applied after its acquisition ended
   * (etcd.retry.ts), which would otherwise stand first in its lock's queue
   * until the session ends. The name is taken for the while: a new
   * acquisition under it would take the key over as its own (etcd.queue.ts),
   * and the delete would then land on a live lock. If etcd cannot be asked,
   * a copy of the delete may still land, so the name stays taken for good
   * and the key is deleted by name at a later keepalive.
   */
  private async discardStray(session: Session, key: Buffer, revision: number): Promise<void> {
    try {
      await removeStray(this.client.kv, key, revision, this.options());
      session.names.free(key);
    } catch {
      if (!this.closed) this.orphans.set(key.toString('latin1'), { key, session });
    }
  }

  /**
   * Deletes a key nobody uses any more and frees its name; if etcd cannot be
   * asked now, remembers it for the next keepalive. A key of an ended
   * session went with its lease.
   */
  private async discard(orphan: Orphan): Promise<void> {
    const text = orphan.key.toString('latin1');
    this.orphans.delete(text);
    if (orphan.session.ended) return;
    try {
      if (orphan.revision === undefined) {
        await removeName(this.client.kv, orphan.key, this.options());
      } else {
        await remove(this.client.kv, orphan.key, orphan.revision, this.options());
        orphan.session.names.free(orphan.key);
      }
    } catch {
      if (!this.closed) this.orphans.set(text, orphan);
    }
  }

  private options(): RequestOptions {
    return { deadline: Date.now() + this.settings.dialTimeout };
  }

  /** `key`: the lock the call was for, named in the error (built only when closed: acquire and release are hot). */
  private assertOpen(what: string, key?: string): void {
    if (this.closed) throw closedError(key === undefined ? what : `${what} lock ${describeValue(key)}`);
  }

  private failure(what: string, error: unknown): LockStoreError {
    if (error instanceof LockStoreError) return error;
    const detail = error instanceof Error ? error.message : String(error);
    return new LockStoreError(`The etcd lock store could not ${what} at ${this.target}: ${detail}${hint(error, this.settings)}`, {
      cause: error,
    });
  }
}

/**
 * A key to delete: with its create revision, or without, when the revision
 * is unknown or a request that may still land was sent for the key (a join
 * whose answer was lost, a plain delete that failed); its name then stays
 * taken for good.
 */
interface Orphan {
  readonly key: Buffer;
  readonly revision?: number;
  readonly session: Session;
}

function closedError(what: string): LockStoreError {
  return new LockStoreError(`The etcd lock store is closed and cannot ${what}; create a new EtcdLockStore or stop using this one after close()`);
}

/** What to do about the usual failures. */
function hint(error: unknown, settings: Settings): string {
  const name = error instanceof Error ? error.constructor.name : '';
  // grpc reports a certificate it cannot verify as "unavailable", with the reason in the message only.
  if (error instanceof Error && /certificate/i.test(error.message)) {
    return "; pass credentials: { rootCertificate } with the CA that signed etcd's certificate, and use its name or IP in hosts";
  }
  // MemberSkippedError: the member's breaker is open after failures like these (etcd.host-breaker.ts).
  if (name === 'GRPCUnavailableError' || name === 'GRPCDeadlineExceededError' || name === 'MemberSkippedError') {
    return `; check that etcd is running and reachable from here (dialTimeout ${settings.dialTimeout}ms)`;
  }
  if (name === 'EtcdPermissionDeniedError') {
    // etcd has no permission for leases: a lease call is checked against the keys attached to it, all under the prefix.
    return (
      `; give the etcd user's role readwrite on the key prefix ` +
      `(etcdctl role grant-permission <role> readwrite --prefix=true ${settings.keyPrefix})`
    );
  }
  if (name === 'EtcdAuthenticationFailedError' || name === 'GRPCUnauthenticatedError') return '; check the auth option (user name and password)';
  return '';
}
