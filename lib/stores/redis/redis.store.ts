import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
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
import { lockKeys, lockName, type LockKeys } from './redis.keys.js';
import {
  DEFAULT_CONNECT_TIMEOUT,
  DEFAULT_KEY_PREFIX,
  connect,
  validateOptions,
  type RedisLockStoreOptions,
} from './redis.options.js';
import { renewAll } from './redis.renewal.js';
import { ACQUIRE, LEAVE, RELEASE } from './redis.scripts.js';
import { Waiter, type AcquireReply, type LeaveReply, type WaitBackend } from './redis.waiter.js';
import { WakeChannel } from './wake-channel.js';

/**
 * Locks in Redis (standalone, Sentinel or Cluster) through ioredis, shared by
 * every process that uses the same Redis.
 *
 * - **One round trip per operation.** Acquire, release, renewal and leaving a
 *   queue are each one Lua script (see redis.scripts.ts), sent by EVALSHA.
 *   Acquire sets the lock with its owner and a millisecond expiry only if it
 *   is free and nobody waits ahead, and draws the fencing token in the same
 *   step; release and renewal are compare-and-set on the owner.
 * - **Fair push wake-up.** A waiter joins a per-key FIFO queue in Redis; a
 *   release hands the lock straight to the longest live waiter (so a caller
 *   that releases and retries cannot grab it back) and publishes the token
 *   on that waiter's store channel. The hand-off costs no round trip. See
 *   redis.waiter.ts for how the new holder counts its lease safely, and
 *   wake-channel.ts for the single subscription per store.
 * - **Batched renewal.** `renew` sends one script call per 1,000 locks (on
 *   a Cluster, per 1,000 locks on one primary).
 * - **Fencing** tokens come from a per-key counter that is never deleted, so
 *   they increase as long as Redis keeps its data (`until-data-loss`): with
 *   persistence off, a restart starts them again at 1; with asynchronous
 *   replication, a fail-over can lose the latest grants (see
 *   `waitForReplicas`).
 * - **Clock drift.** The holder counts a lease of `ttl` as `ttl - 1% - 2ms`,
 *   so it gives up before Redis lets the key go even if the two clocks run
 *   at slightly different rates.
 *
 * @example
 * import { RedisLockStore } from 'nestjs-distributed-lock/redis';
 *
 * LockModule.forRoot({ store: new RedisLockStore({ client: redis }) })     // a client the app already has
 * LockModule.forRoot({ store: new RedisLockStore({ url: process.env.REDIS_URL }), closeStore: true })
 */
export class RedisLockStore implements LockStore {
  readonly traits: LockStoreTraits = { name: 'redis', fencing: 'until-data-loss', fair: true, waits: true };
  readonly clock: Clock;
  private readonly client: Redis | Cluster;
  /** True for the url form: the store made its client, and closes it. */
  readonly ownsConnection: boolean;
  /** Where Redis is, for errors; never with a password. */
  private readonly target: string;
  private readonly prefix: string;
  private readonly timeout: number;
  private readonly replicas?: { readonly replicas: number; readonly timeout: number };
  private readonly wake: WakeChannel;
  private readonly waiters = new Set<Waiter>();
  private readonly backend: WaitBackend;
  /** The owned client's latest connection error, to say why a command timed out. */
  private lastError?: Error;
  private closed = false;

  constructor(options: RedisLockStoreOptions) {
    validateOptions(options);
    this.clock = options.clock ?? systemClock;
    this.prefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX;
    this.timeout = options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT;
    this.replicas = options.waitForReplicas;
    const connection = connect(options, this.timeout);
    this.client = connection.client;
    this.ownsConnection = connection.owned;
    this.target = connection.target;
    if (this.ownsConnection) {
      // Keeps ioredis from printing each reconnect failure; the error is
      // reported by the operations that fail because of it.
      this.client.on('error', (error: Error) => (this.lastError = error));
      this.client.on('ready', () => (this.lastError = undefined));
    }
    this.wake = new WakeChannel(this.client, `${this.prefix}wake:${randomUUID()}`);
    this.backend = {
      clock: this.clock,
      wake: this.wake,
      tryAcquire: (keys, request, life) => this.tryAcquire(keys, request, life),
      leave: (keys, request, keep) => this.leave(keys, request, keep),
      granted: async (request, token, validFrom, byThisCall) => this.granted(request, token, validFrom, byThisCall),
      settled: (waiter) => this.waiters.delete(waiter),
    };
  }

  async acquire(request: AcquireRequest): Promise<AcquireResult> {
    this.assertOpen('acquire');
    const keys = lockKeys(this.prefix, request.key);
    if (request.wait <= 0 || request.signal?.aborted) {
      const sentAt = this.clock.now();
      const reply = await this.tryAcquire(keys, request, 0);
      if (reply.kind === 'busy') return { acquired: false, retryAfter: Math.max(0, reply.pttl) };
      // A fresh owner cannot have been handed the lock before: granted by this call.
      return this.granted(request, reply.token, sentAt, true);
    }
    // Subscribed before joining the queue, so no hand-off message can be missed.
    try {
      await this.call(this.wake.ready(), 'subscribe to hand-off messages for', request.key);
    } catch (error) {
      if (this.closed) return { acquired: false }; // closed while subscribing: a pending wait
      throw error;
    }
    // Closed, or aborted while subscribing: the abort event has fired already,
    // so a waiter listening from now on would wait its whole wait.
    if (this.closed || request.signal?.aborted) return { acquired: false };
    return new Promise((resolve, reject) => {
      const waiter = new Waiter(this.backend, keys, request, resolve, reject);
      this.waiters.add(waiter);
      waiter.start();
    });
  }

  async renew(requests: readonly RenewRequest[]): Promise<readonly RenewResult[]> {
    this.assertOpen('renew');
    if (requests.length === 0) return [];
    const items = requests.map(({ key, owner, ttl }) => ({ name: lockName(this.prefix, key), owner, ttl: leaseArg(ttl) }));
    const sentAt = this.clock.now();
    const renewed = await this.call(renewAll(this.client, items), `renew ${requests.length} lock(s) including`, requests[0]?.key);
    return requests.map(({ ttl }, i) => (renewed[i] ? { renewed: true, validFrom: sentAt, validFor: validFor(ttl) } : { renewed: false }));
  }

  async release(key: string, owner: string): Promise<boolean> {
    this.assertOpen('release');
    return (await this.call(RELEASE.run(this.client, lockKeys(this.prefix, key), [owner]), 'release', key)) === 1;
  }

  /**
   * Closes the store's own subscriber connection (opened once anything
   * waited), so a process whose application passed in its client can exit;
   * the next wait opens it again. Nothing changes while a wait is in
   * progress, and the client stays open.
   */
  async suspend(): Promise<void> {
    if (!this.closed && this.waiters.size === 0) this.wake.close();
  }

  /**
   * Stops the store: waiting acquisitions resolve `{ acquired: false }` and
   * leave their queues (a lock handed to one of them meanwhile is passed on),
   * the wake-up subscription closes, and so does the client when the store
   * created it. Locks still held stay in Redis until released by their
   * owners' leases running out.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.waiters].map((waiter) => waiter.abandon()));
    this.wake.close();
    if (this.ownsConnection) await this.quit();
  }

  private async tryAcquire(keys: LockKeys, request: AcquireRequest, life: number): Promise<AcquireReply> {
    const ttl = leaseArg(request.ttl);
    const args = life > 0 ? [request.owner, ttl, life, this.wake.name] : [request.owner, ttl, 0];
    const work = ACQUIRE.run(this.client, keys, args);
    let reply;
    try {
      reply = (await this.call(work, 'acquire', request.key)) as number | number[];
    } catch (error) {
      // Timed out or cut off, the script may still have run or run later:
      // once it has, leave, so a lock granted to nobody is passed on at once.
      const leave = () => this.leave(keys, request, false);
      work.then(leave, leave).catch(() => {});
      throw error;
    }
    if (typeof reply === 'number') return { kind: 'granted', token: reply };
    const [kind = 0, value = 0, fence = 0] = reply;
    if (kind === 1) return { kind: 'granted', token: value };
    if (kind === 2) return { kind: 'held', token: value };
    return { kind: 'busy', pttl: value, fence };
  }

  private async leave(keys: LockKeys, request: AcquireRequest, keep: boolean): Promise<LeaveReply> {
    const work = LEAVE.run(this.client, keys, [request.owner, keep ? '1' : '0']);
    const reply = (await this.call(work, 'leave the queue of', request.key)) as number[];
    const [held = 0, value = 0] = reply;
    return held === 1 ? { held: true, token: value } : { held: false, pttl: value };
  }

  private granted(request: AcquireRequest, token: number, validFrom: number, byThisCall: boolean): AcquireResult | Promise<AcquireResult> {
    const result: AcquireResult = { acquired: true, fencingToken: token, validFrom, validFor: validFor(request.ttl) };
    return this.replicas ? this.confirmReplicas(request, result, byThisCall, this.replicas) : result;
  }

  /** `waitForReplicas`: the grant counts only once enough replicas have it. */
  private async confirmReplicas(
    request: AcquireRequest,
    result: AcquireResult & { acquired: true },
    byThisCall: boolean,
    { replicas, timeout }: { readonly replicas: number; readonly timeout: number },
  ): Promise<AcquireResult> {
    let confirmed = result;
    if (!byThisCall) {
      // Handed over by another client's script: WAIT covers only writes made
      // through this connection, so write once more (renew the lease) first.
      const [renewal] = await this.renew([{ key: request.key, owner: request.owner, ttl: request.ttl }]);
      if (!renewal?.renewed) return { acquired: false };
      confirmed = { ...result, validFrom: renewal.validFrom };
    }
    // WAIT counts only the writes made over the connection it runs on. If
    // that connection drops before WAIT answers, ioredis sends WAIT again over
    // a new one (after a Sentinel fail-over, to the new primary), where it
    // confirms nothing about this grant yet answers "all replicas": measured,
    // a grant made on the old primary was confirmed this way and its token
    // handed out again after the fail-over. So the answer counts only if it
    // came over the socket the grant was written on. Only microtasks ran
    // since that write's reply, so ioredis cannot have reconnected yet here.
    const socket = (this.client as Redis).stream;
    const acked = Number(await this.call(this.client.wait(replicas, timeout), 'wait for replicas of', request.key, timeout));
    if (acked >= replicas && (this.client as Redis).stream === socket) return confirmed;
    await this.release(request.key, request.owner).catch(() => false);
    if (acked >= replicas) {
      throw new LockStoreError(
        `Lock ${describeValue(request.key)} was granted by ${this.target}, but the connection was re-established (a fail-over or a ` +
          'network fault) before the replicas confirmed it, so whether they have it is unknown and it was released again; ' +
          'acquire it again, now over the new connection',
      );
    }
    throw new LockStoreError(
      `Lock ${describeValue(request.key)} was granted by ${this.target}, but only ${acked} of ${replicas} replica(s) confirmed it ` +
        `within ${timeout}ms, so it was released again; check the replicas' health and lag, or lower waitForReplicas`,
    );
  }

  /** Awaits `work`, failing with a LockStoreError that names the operation, the key and the server after the timeout. */
  private call<T>(work: Promise<T>, what: string, key: string | undefined, extraTime = 0): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(this.failure(what, key, undefined)), this.timeout + extraTime);
      work.then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(this.failure(what, key, error));
        },
      );
    });
  }

  private failure(what: string, key: string | undefined, cause: unknown): LockStoreError {
    const subject = key === undefined ? what : `${what} lock ${describeValue(key)}`;
    if (cause === undefined) {
      const last = this.lastError ? ` (last connection error: ${this.lastError.message})` : '';
      return new LockStoreError(
        `The redis lock store could not ${subject}: ${this.target} did not answer within ${this.timeout}ms${last}; ` +
          'check that Redis is running and reachable, or raise connectTimeout',
      );
    }
    if (cause instanceof LockStoreError) return cause;
    const detail = cause instanceof Error ? cause.message : String(cause);
    const advice = /^(NOPERM|WRONGPASS|NOAUTH)/.test(detail)
      ? "check the user name, password and the ACL user's permissions (the store needs EVAL, EVALSHA, SUBSCRIBE, PUBLISH and, with waitForReplicas, WAIT)"
      : 'check that Redis is running and reachable';
    return new LockStoreError(`The redis lock store could not ${subject} at ${this.target}: ${detail}; ${advice}`, { cause });
  }

  private async quit(): Promise<void> {
    const { client } = this;
    // Not connected (never used, or reconnecting): nothing to say goodbye to.
    if (client.status !== 'ready') return client.disconnect();
    try {
      await this.call(client.quit(), 'close the connection to', undefined);
    } catch {
      // The connection is dropped below either way.
    } finally {
      client.disconnect();
    }
  }

  private assertOpen(what: string): void {
    if (this.closed) {
      throw new LockStoreError(`The redis lock store is closed and cannot ${what}; create a new RedisLockStore or stop using this one after close()`);
    }
  }
}

/** The lease length Redis applies: a whole number of milliseconds, never shorter than asked. */
function leaseArg(ttl: number): number {
  return Math.max(1, Math.ceil(ttl));
}

/** What the holder counts of a `ttl` lease: 1% and 2ms less, for clock drift between it and Redis. */
function validFor(ttl: number): number {
  return Math.max(1, ttl - Math.ceil(ttl / 100) - 2);
}
