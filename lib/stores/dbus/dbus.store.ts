import type { Clock } from '../../clock.js';
import { LockStoreError, describeValue } from '../../errors.js';
import type {
  AcquireRequest,
  AcquireResult,
  LockStore,
  LockStoreTraits,
  RenewRequest,
  RenewResult,
} from '../../store/lock-store.js';
import { lockBusName } from './bus-name.js';
import { ConnectionPool } from './connection-pool.js';
import { resolveDbusSettings, type DbusLockStoreOptions, type DbusSettings } from './dbus.options.js';
import { describeBusFailure } from './dbus.errors.js';
import { FencingTokens } from './fencing-token.js';
import { LeaseExpiry } from './lease-expiry.js';
import { NameClaim, type ClaimHost } from './name-claim.js';

const NAME_CACHE_SIZE = 1_024;

/**
 * Host-wide locks from D-Bus name ownership, through dbus-next: every process
 * on the same bus (Node cluster workers, PM2 instances, containers sharing a
 * host bus) excludes the others, without running a lock server.
 *
 * **A lock is a well-known bus name** (see {@link lockBusName}). The bus
 * daemon arbitrates ownership atomically: `RequestName` with `DO_NOT_QUEUE`
 * is a try-lock; without it the daemon queues the requester in FIFO order and
 * sends it `NameAcquired` when the owner lets go; `ReleaseName` is the
 * release, or leaves the queue. When an owner's connection closes (its
 * process crashed or was killed) the daemon frees its names at once and
 * passes each to the next in its queue. Nobody polls.
 *
 * **Connections.** The daemon keeps one owner-or-queue entry per connection
 * and name, so two callers of one process cannot queue for one key on the
 * same connection. The store gives each concurrent claim on a key its own
 * connection (the oldest one without a claim on that key, opened on first
 * need, up to `maxConnections`, default 8), so every caller has its own
 * place in the daemon's queue and FIFO order holds across processes, not
 * just between them. One connection serves any number of different keys.
 * Past `maxConnections` callers for one key, the rest wait in this process in
 * FIFO order and join the bus queue as places free up. The alternative, one
 * connection with an in-process queue in front of it, saves sockets but
 * serves processes round-robin instead of callers in order.
 *
 * **Leases.** Ownership lasts as long as the connection, so `renew` answers
 * from the store's own state, without a round trip: a name is still held
 * unless the daemon said `NameLost` or the connection closed, and either is
 * reported through `onLost` when it happens. With `enforceTtl` (the default)
 * the store also ends every lease nobody renewed within its ttl by releasing
 * the name, as Redis expires a key; `validFrom` is the reading taken before
 * `RequestName` for an immediate grant, and the reading at `NameAcquired`
 * for a queued one, and the store counts its own expiry from the same
 * reading, so the holder's deadline is never later than the moment the
 * store lets the name go. `close()` keeps a held name until its lease ends
 * rather than hand it on while its code may still run (see {@link close}).
 * The one thing no lease can bound is the bus itself
 * dropping the connection (the daemon stopped): the names are free at once,
 * and the store reports `session-lost` as soon as the socket closes.
 *
 * **Fencing: none.** The bus keeps no counter. Tokens are readings of the
 * host's monotonic clock taken at each grant (see {@link FencingTokens}): they
 * grow from one holder to the next in normal operation, which is useful in
 * logs, but a reboot, processes with different clocks, or a dropped
 * connection can break the order. Do not use this store where a resource
 * must refuse a stale holder's writes; use the etcd store for that.
 *
 * @example
 * LockModule.forRoot({ store: new DbusLockStore() })   // the session bus
 * LockModule.forRoot({ store: new DbusLockStore({ address: 'unix:path=/run/app/bus.sock', namePrefix: 'com.example.Locks' }) })
 */
export class DbusLockStore implements LockStore {
  readonly traits: LockStoreTraits = { name: 'dbus', fencing: 'none', fair: true, waits: true };
  readonly clock: Clock;
  /** The store always opens its own bus connections: `LockModule` closes it with its last application. */
  readonly ownsConnection = true;
  private readonly settings: DbusSettings;
  private readonly pool: ConnectionPool;
  /** What the claims see of the store; kept off the public surface. */
  private readonly host: ClaimHost;
  /** The claim holding each key, at most one per key: the bus grants a name to one connection. */
  private readonly holders = new Map<string, NameClaim>();
  /** Every claim not yet over, so `close()` can answer them. */
  private readonly claims = new Set<NameClaim>();
  /** Per bus name, callers of this process waiting for a connection without a claim on it, in FIFO order. */
  private readonly waitingHere = new Map<string, NameClaim[]>();
  private readonly expiry: LeaseExpiry<NameClaim>;
  private readonly tokens = new FencingTokens();
  /** Bus names of recently used keys: hashing a key costs more than everything else the store does per call. */
  private readonly names = new Map<string, string>();
  private closed = false;

  constructor(options: DbusLockStoreOptions = {}) {
    this.settings = resolveDbusSettings(options);
    this.clock = this.settings.clock;
    this.pool = new ConnectionPool(this.settings, () => this.connectionEnded());
    this.expiry = new LeaseExpiry(this.clock, (claim) => claim.expire());
    this.host = {
      clock: this.clock,
      pool: this.pool,
      held: (claim) => this.held(claim),
      unheld: (claim) => this.unheld(claim),
      ended: (claim) => this.ended(claim),
      waitHere: (claim, first) => this.waitHere(claim, first),
      leaveHere: (claim) => this.leaveHere(claim),
      failure: (what, claim, error) => describeBusFailure(what, claim.key, claim.name, this.settings.address, error),
    };
  }

  acquire(request: AcquireRequest): Promise<AcquireResult> {
    if (this.closed) return Promise.reject(this.closedError('acquire', request.key));
    const holder = this.holders.get(request.key);
    // A key this process holds is busy for a try, without asking the bus.
    if (holder && request.wait === 0) return Promise.resolve({ acquired: false, ...this.retryAfter(holder) });
    if (request.wait > 0 && request.signal?.aborted) return Promise.resolve({ acquired: false });
    const name = this.busName(request.key);
    const behind = this.waitingHere.get(name);
    if (behind && request.wait === 0) return Promise.resolve({ acquired: false });
    return new Promise((resolve, reject) => {
      const claim = new NameClaim(this.host, request, name, resolve, reject);
      this.claims.add(claim);
      claim.start(behind !== undefined);
    });
  }

  renew(requests: readonly RenewRequest[]): Promise<readonly RenewResult[]> {
    if (this.closed) return Promise.reject(this.closedError('renew', requests[0]?.key ?? ''));
    const now = this.clock.now();
    return Promise.resolve(
      requests.map(({ key, owner, ttl }): RenewResult => {
        const claim = this.holders.get(key);
        if (!claim || claim.owner !== owner || !claim.renew(ttl, now, this.settings.enforceTtl)) return { renewed: false };
        if (this.settings.enforceTtl) this.expiry.track(claim); // a shorter ttl (lockAtLeastFor) moves the end earlier
        return { renewed: true, validFrom: now, validFor: ttl };
      }),
    );
  }

  async release(key: string, owner: string): Promise<boolean> {
    if (this.closed) throw this.closedError('release', key);
    const claim = this.holders.get(key);
    if (!claim || claim.owner !== owner) return false;
    const live = !this.settings.enforceTtl || claim.expiresAt > this.clock.now();
    await claim.release();
    return live;
  }

  /**
   * Stops the store: waits end at once (not acquired), later calls reject,
   * and its connections close, which frees every name they own and takes
   * every queue place of theirs off the bus.
   *
   * **Except a name still held whose lease has not ended**: it stays owned
   * until the lease ends, and is released then. The core closes the store at
   * application shutdown after it stopped renewing the locks whose code was
   * still running (their signal aborted with reason `shutdown`): those
   * leases are meant to run out in the store, because that code may still be
   * running. Closing their connection would make the bus hand each name to
   * the next waiter, in another process, at once: two holders at once. So
   * the connection that owns such a name stays open until its last kept
   * lease ended, then closes; the claims on it that only waited leave the
   * bus's queue at once. It keeps the process alive no more than a held name
   * did before the close: a process with nothing else to do exits, and the
   * bus frees the name then, which is safe, since the code that held it
   * ended with the process. `close()` does not wait for those leases.
   * `release` and `renew` of a kept name reject like any call after close.
   *
   * With `enforceTtl: false` a name has no lease, so nothing bounds how long
   * it would be kept: it is released at close, as before, and its holder
   * hears `session-lost` (the core ignores it for a lock it abandoned).
   * Keeping it would block the key on the whole bus for as long as the
   * process runs; an application that needs it kept while its code finishes
   * should wait for that code before closing, or use `enforceTtl: true`.
   *
   * @example
   * await store.close(); // a name whose lease ends in 2s is released then; everything else now
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const claims = [...this.claims];
    this.claims.clear();
    this.holders.clear();
    this.waitingHere.clear();
    this.expiry.stop();
    const now = this.clock.now();
    for (const claim of claims) {
      // The expiry that ends a lease before close ends a kept one after it too.
      if (this.settings.enforceTtl && claim.keepPastClose(now)) this.expiry.track(claim);
      else claim.close();
    }
    await this.pool.close();
  }

  private held(claim: NameClaim): number {
    this.holders.set(claim.key, claim);
    if (this.settings.enforceTtl) this.expiry.track(claim);
    return this.tokens.next();
  }

  private unheld(claim: NameClaim): void {
    if (this.holders.get(claim.key) === claim) this.holders.delete(claim.key);
    this.expiry.untrack(claim);
  }

  private ended(claim: NameClaim): void {
    this.claims.delete(claim);
    if (!this.closed) this.nextHere(claim.name);
  }

  private waitHere(claim: NameClaim, first: boolean): void {
    const queue = this.waitingHere.get(claim.name);
    if (!queue) this.waitingHere.set(claim.name, [claim]);
    else if (first) queue.unshift(claim);
    else queue.push(claim);
  }

  private leaveHere(claim: NameClaim): void {
    this.claims.delete(claim);
    const queue = this.waitingHere.get(claim.name);
    const index = queue?.indexOf(claim) ?? -1;
    if (!queue || index < 0) return;
    queue.splice(index, 1);
    if (queue.length === 0) this.waitingHere.delete(claim.name);
  }

  private busName(key: string): string {
    let name = this.names.get(key);
    if (name === undefined) {
      if (this.names.size >= NAME_CACHE_SIZE) this.names.clear();
      name = lockBusName(key, this.settings.namePrefix);
      this.names.set(key, name);
    }
    return name;
  }

  /** A claim on `name` ended: the longest caller of this process waiting for a connection for it goes next. */
  private nextHere(name: string): void {
    const queue = this.waitingHere.get(name);
    const next = queue?.shift();
    if (!queue || !next) return;
    if (queue.length === 0) this.waitingHere.delete(name);
    void next.takeConnection(true);
  }

  /** The bus dropped a connection: the pool has room for a new one, for each name someone waits for here. */
  private connectionEnded(): void {
    for (const name of [...this.waitingHere.keys()]) this.nextHere(name);
  }

  private retryAfter(holder: NameClaim): { retryAfter?: number } {
    return this.settings.enforceTtl ? { retryAfter: Math.max(0, Math.ceil(holder.expiresAt - this.clock.now())) } : {};
  }

  private closedError(what: string, key: string): LockStoreError {
    return new LockStoreError(
      `The D-Bus lock store is closed and cannot ${what} lock ${describeValue(key)}; create a new DbusLockStore or stop using this one after close()`,
    );
  }
}
