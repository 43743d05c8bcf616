import type { IEvent } from 'etcd3';
import type { Clock, Timer } from '../../clock.js';
import type { AcquireRequest, AcquireResult } from '../../store/lock-store.js';
import type { LockPath } from './etcd.keys.js';
import { OWNER_MARK, type Position } from './etcd.queue.js';
import type { Session } from './etcd.session.js';
import type { WatchHub, WatchListener } from './etcd.watch-hub.js';

/** A place in a lock's queue: the key, the session whose lease carries it, and what is known about the keys ahead. */
export interface Place {
  readonly session: Session;
  readonly key: Buffer;
  readonly position: Position;
}

/** What a waiter needs from its store. */
export interface WaiterBackend {
  readonly clock: Clock;
  readonly hub: WatchHub;
  /** Joins the queue again with a new key on the current session, after the previous key was lost. */
  join(waiter: Waiter): Promise<Place>;
  /** Reads which keys ahead of `revision` still exist. */
  check(path: LockPath, revision: number): Promise<Position>;
  /** The waiter owns the lock: registers it and answers the acquire; `undefined` when its session cannot back it any more. */
  granted(waiter: Waiter): AcquireResult | undefined;
  /** Deletes the key of a waiter that gave up (or remembers to, if etcd cannot be reached now). */
  leave(waiter: Waiter): Promise<void>;
  /** The waiter is done, whichever way. */
  settled(waiter: Waiter): void;
}

type State = 'waiting' | 'leaving' | 'done';

/** The watch on the predecessor (see {@link Waiter}). */
interface Watching {
  readonly key: string;
  listener?: WatchListener;
  /** The revision after which every event of the key reaches the listener; 0 until etcd confirmed the watch. */
  since: number;
}

/**
 * One acquisition waiting in a lock's queue, from its first answer (not
 * first in line) to owning the lock or giving up.
 *
 * **What it knows.** The transaction that put the key also listed the keys
 * ahead of it (`ahead`): exact at that revision, and never to grow, because
 * etcd gives every later key a higher create revision. The waiter only ever
 * removes keys from `ahead`: on a deletion it sees, on a re-read, or on its
 * predecessor's owner mark (below). So `ahead` always contains every key
 * still ahead, and when it is empty the waiter owns the lock.
 *
 * **Whom it watches.** Only its predecessor, the key just before its own:
 * a release wakes one waiter, in FIFO order, and nobody else.
 *
 * **Hand-off without a round trip.** When the predecessor is deleted and it
 * was the last key in `ahead`, the waiter owns the lock on that event and
 * starts at once. To make that the usual case, an acquisition that came to
 * own the lock after waiting writes {@link OWNER_MARK} into its own key
 * (without waiting for the write); its successor sees the mark on the
 * predecessor it watches and keeps only that key in `ahead`, since nothing
 * before an owner exists and nothing with a lower revision can appear. When
 * the mark did not arrive first (a very short critical section), the waiter
 * re-reads the keys ahead: one round trip, never a wrong answer.
 *
 * **Watching from now.** A watch starts at the revision etcd is at when it
 * is created (see etcd.watch-hub.ts for why never in the past), or earlier
 * when the store already watches that name. If that is later than the
 * revision `ahead` is exact at, the predecessor may have gone in between,
 * so the waiter re-reads once.
 *
 * **A lagging watch.** etcd 3.4 turns start revision 0 into "the revision
 * it read + 1" and then registers the watch; if a write lands in between,
 * the watch starts behind and is caught up by a loop that runs every 100 ms
 * (etcdserver/api/v3rpc/watch.go, mvcc/watchable_store.go), delaying the
 * hand-off by up to that much. When the watch started after a write the
 * waiter has not seen (the case that makes it re-read), it asks for a second
 * watch on the predecessor alongside the re-read, a round trip after the
 * first; both lagging is rare, and events from either count. A watch the
 * store already had running is past that risk, which is why the hub keeps
 * watches a while for the next waiter on the same name.
 *
 * **Losing its key.** If the session ends, or the key disappears (found by
 * the store's audit), the waiter joins again at the back with a new key.
 */
export class Waiter {
  private state: State = 'waiting';
  session: Session;
  key: Buffer;
  revision = 0;
  private ahead = new Map<string, number>();
  private knownAt = 0;
  private watching?: Watching;
  private needCheck = false;
  private rejoin = false;
  private running = false;
  private failures = 0;
  private timer?: Timer;
  private retryTimer?: Timer;
  private readonly onAbort = () => void this.giveUp();

  constructor(
    private readonly backend: WaiterBackend,
    readonly request: AcquireRequest,
    readonly path: LockPath,
    place: Place,
    private readonly resolve: (result: AcquireResult) => void,
  ) {
    this.session = place.session;
    this.key = place.key;
    this.take(place.position);
  }

  /** Starts waiting: the wait's timer, the signal, and the predecessor's watch. */
  start(): void {
    this.timer = this.backend.clock.setTimer(() => void this.giveUp(), this.request.wait, true);
    // The signal may have aborted while the key was being queued; a listener
    // added now would never be called, and the wait would run its full length.
    if (this.request.signal?.aborted) {
      void this.giveUp();
      return;
    }
    this.request.signal?.addEventListener('abort', this.onAbort, { once: true });
    this.kick();
  }

  /**
   * The key is gone (its session ended, or the audit did not find it): join
   * again at the back. Returns true when this is news: the waiter was waiting
   * on that key, not already leaving it or joining again.
   */
  lost(): boolean {
    if (this.state !== 'waiting') return false;
    const news = !this.rejoin;
    this.rejoin = true;
    this.stopWatching();
    this.kick();
    return news;
  }

  /** The store is closing: answer "not acquired" now; the session's revocation removes the key. */
  abandon(): void {
    if (this.state === 'done') return;
    this.settle({ acquired: false });
  }

  private take(position: Position): void {
    this.revision = position.revision;
    this.ahead = position.ahead;
    this.knownAt = position.knownAt;
  }

  private kick(): void {
    if (this.running || this.state !== 'waiting') return;
    this.running = true;
    void this.run();
  }

  /** The only place that talks to etcd while waiting, so its steps never overlap; events only shrink `ahead` and set flags. */
  private async run(): Promise<void> {
    try {
      while (this.state === 'waiting') {
        if (this.rejoin) {
          const place = await this.backend.join(this);
          this.session = place.session;
          this.key = place.key;
          this.take(place.position);
          // Gave up (or the store closed) meanwhile: the key left behind is this new one.
          if (this.state !== 'waiting') {
            void this.backend.leave(this);
            return;
          }
          this.rejoin = false;
          this.needCheck = false;
          continue;
        }
        if (this.needCheck) {
          this.needCheck = false;
          this.hedge();
          const revision = this.revision;
          const position = await this.backend.check(this.path, revision);
          if (this.state !== 'waiting') return;
          if (this.rejoin || revision !== this.revision) continue;
          for (const [key, created] of this.ahead) if (position.ahead.get(key) !== created) this.ahead.delete(key);
          this.knownAt = Math.max(this.knownAt, position.knownAt);
        }
        if (this.ahead.size === 0) {
          this.grant();
          return;
        }
        const predecessor = this.predecessor();
        if (this.watching?.key !== predecessor) {
          this.stopWatching();
          const watching: Watching = { key: predecessor, since: 0 };
          const listener = this.listener(watching);
          watching.listener = listener;
          this.watching = watching;
          const revision = await this.backend.hub.watch(Buffer.from(predecessor, 'latin1'), listener);
          if (this.watching !== watching) {
            this.backend.hub.unwatch(predecessor, listener); // stopped while the watch started
            continue;
          }
          watching.since = revision;
          if (this.state !== 'waiting') return;
          // Events on the predecessor before `revision` were not watched.
          if (revision > this.knownAt) this.needCheck = true;
          continue;
        }
        if (!this.needCheck && !this.rejoin) {
          this.failures = 0;
          return;
        }
      }
    } catch (error) {
      if (this.state !== 'waiting') return;
      // etcd could not be asked (or the watch broke while being created):
      // keep the place, try again shortly, and re-read once it answers.
      this.stopWatching();
      this.needCheck = !this.rejoin;
      const delay = Math.min(1_000, 25 * 2 ** this.failures++);
      this.retryTimer = this.backend.clock.setTimer(() => this.kick(), delay);
    } finally {
      this.running = false;
    }
  }

  /**
   * Adds a second watch on the predecessor, alongside the re-read, when the
   * first one started after a write `ahead` does not reflect: etcd may have
   * registered it as lagging (see "A lagging watch").
   */
  private hedge(): void {
    const watching = this.watching;
    if (!watching || watching.since === 0 || watching.since <= this.knownAt || !this.ahead.has(watching.key)) return;
    this.backend.hub.hedge(watching.key); // at most once per watch
  }

  private listener(watching: Watching): WatchListener {
    return {
      event: (event: IEvent) => {
        if (this.watching !== watching || this.state !== 'waiting') return;
        const created = this.ahead.get(watching.key);
        if (created === undefined) return;
        // A name carries one key after another (etcd.keys.ts): only events of the key in `ahead` count.
        if (event.type === 'Delete' && Number(event.kv.mod_revision) > created) {
          this.ahead.delete(watching.key);
          if (this.ahead.size === 0 && !this.rejoin) {
            this.grant(); // the predecessor was the last key ahead: no round trip
            return;
          }
          this.needCheck = true;
          this.kick();
        } else if (event.type === 'Put' && Number(event.kv.create_revision) === created && event.kv.value.equals(OWNER_MARK)) {
          // The predecessor owns the lock: nothing before it is left.
          for (const [key, revision] of this.ahead) if (revision < created) this.ahead.delete(key);
        }
      },
      broken: () => {
        if (this.watching !== watching || this.state !== 'waiting') return;
        this.stopWatching();
        this.kick();
      },
    };
  }

  private predecessor(): string {
    let best = '';
    let bestRevision = -1;
    for (const [key, created] of this.ahead) {
      if (created > bestRevision) {
        best = key;
        bestRevision = created;
      }
    }
    return best;
  }

  private grant(): void {
    if (this.state !== 'waiting') return;
    const result = this.backend.granted(this);
    if (result) this.settle(result);
    else this.lost();
  }

  private async giveUp(): Promise<void> {
    if (this.state !== 'waiting') return;
    this.state = 'leaving';
    this.stopWatching();
    await this.backend.leave(this);
    if (this.state === 'leaving') this.settle({ acquired: false });
  }

  private settle(result: AcquireResult): void {
    this.state = 'done';
    this.stopWatching();
    this.timer?.cancel();
    this.retryTimer?.cancel();
    this.request.signal?.removeEventListener('abort', this.onAbort);
    this.backend.settled(this);
    this.resolve(result);
  }

  private stopWatching(): void {
    const watching = this.watching;
    this.watching = undefined;
    if (watching?.listener) this.backend.hub.unwatch(watching.key, watching.listener);
  }
}
