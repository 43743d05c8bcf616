import type { Etcd3, IDuplexStream, IEvent, IWatchRequest, IWatchResponse } from 'etcd3';
import type { Clock, Timer } from '../../clock.js';
import { closeStream } from './etcd.session.js';

type WatchStream = IDuplexStream<IWatchRequest, IWatchResponse>;

/** Who a watch reports to. */
export interface WatchListener {
  /** An event on the watched key. Events already seen may come again, and a hedge's may come late: act on each by its revisions alone. */
  event(event: IEvent): void;
  /** The watch stopped (stream failed, etcd cancelled it); events may have been missed. Called once, instead of further events. */
  broken(): void;
}

/** How long a watch nobody listens to is kept for the next listener: a busy queue re-watches the same names within milliseconds. */
const LINGER_MS = 1_000;
/** At most this many watches kept without listeners; the longest idle goes first. */
const MAX_IDLE = 64;
/** Events kept per watch for listeners that join later: three make one acquisition of a name (put, owner mark, delete). */
const RECENT = 8;

/** The etcd watch (or two, once hedged) on one key, shared by every listener of this store on that key. */
interface KeyWatch {
  readonly key: Buffer;
  readonly text: string;
  readonly ids: string[];
  readonly listeners: Set<WatchListener>;
  /** Settles once etcd confirmed (or refused) the first watch. */
  readonly confirmed: Promise<void>;
  settle?: { resolve(): void; reject(error: Error): void };
  /** Every event after this revision is in `recent` or still to come (set once confirmed). */
  complete: number;
  /** The latest events, oldest first. */
  readonly recent: IEvent[];
  /** When the last listener left (while in `idle`). */
  idleSince: number;
  /** True once a second watch was asked for. */
  hedged: boolean;
}

/**
 * Every watch the store needs, on one watch stream, one etcd watch per key.
 *
 * **Watches start now, never in the past.** etcd serves a watch whose start
 * revision is behind the store's current revision as "unsynced", and catches
 * such watches up on a timer that runs every 100 ms, so even a deletion that
 * happens after the watch was created can reach it up to 100 ms late. Every
 * watch here starts at the current revision (start_revision 0); a listener
 * learns the revision from which it sees every event (`watch` resolves it)
 * and reads once to cover anything before (see etcd.waiter.ts).
 *
 * **Kept, and shared.** Even from now, etcd 3.4 registers a new watch as
 * lagging when a write lands while it is being set up, which under contention
 * is often enough to put 100 ms waits in the tail. A watch that has been
 * running is past that. So a key's watch is shared by every waiter of the
 * store that watches the key, and kept for {@link LINGER_MS} after the last
 * one stops: in a busy queue each name comes round again within
 * milliseconds (names are reused, etcd.keys.ts), and its waiter finds a
 * running watch. The watch keeps its last few events, so a listener that
 * joins late still sees everything after the revision `watch` resolves.
 *
 * **Pipelined creation.** The store numbers its watches itself (etcd ≥ 3.4
 * accepts a client-chosen `watch_id`), so creating one never waits for the
 * previous one to be confirmed, unlike etcd3's own watch manager, which
 * attaches one watcher at a time.
 *
 * **A stream that goes quiet.** A stream can stay open through a network cut
 * and simply deliver nothing. While watches exist, the hub asks etcd for a
 * progress report every `pingEvery` ms; a stream that has answered nothing
 * (report, confirmation or event) for `pingEvery` after a request is treated
 * as failed: it is cancelled and every watch on it reports `broken`, so its
 * owner re-reads and watches again on a fresh stream.
 */
export class WatchHub {
  private stream?: Promise<WatchStream>;
  private readonly byKey = new Map<string, KeyWatch>();
  private readonly byId = new Map<string, KeyWatch>();
  /** Watches nobody listens to, the longest idle first. */
  private readonly idle = new Set<KeyWatch>();
  /** Ids of watches whose confirmation is outstanding, in the order requested (etcd answers in order). */
  private readonly creating: string[] = [];
  private nextId = 1;
  private pingTimer?: Timer;
  private sweepTimer?: Timer;
  /** When the oldest request still unanswered was sent. */
  private waitingSince?: number;
  private closed = false;

  constructor(
    private readonly client: Etcd3,
    private readonly clock: Clock,
    private readonly pingEvery: number,
  ) {}

  /**
   * Reports the events of `key` to `listener` until {@link unwatch};
   * resolves, once etcd confirmed the watch, the revision after which the
   * listener sees every event of the key.
   */
  async watch(key: Buffer, listener: WatchListener): Promise<number> {
    if (this.closed) throw new Error('the watch stream is closed');
    const text = key.toString('latin1');
    const watch = this.byKey.get(text) ?? (await this.start(key, text));
    this.idle.delete(watch);
    watch.listeners.add(listener);
    this.armPing();
    if (watch.settle) await watch.confirmed;
    else for (const event of [...watch.recent]) listener.event(event);
    return watch.complete;
  }

  /** The listener stops; the watch stays for the next one a while (see "Kept, and shared"). */
  unwatch(key: string, listener: WatchListener): void {
    const watch = this.byKey.get(key);
    if (watch?.listeners.delete(listener) && watch.listeners.size === 0 && !watch.settle) this.rest(watch);
  }

  /**
   * Adds a second etcd watch on `key`, for a first one that may be lagging
   * (see etcd.waiter.ts); events of both reach the listeners. Nothing when
   * the key is not watched, or already hedged.
   */
  hedge(key: string): void {
    const watch = this.byKey.get(key);
    if (!watch || watch.hedged) return;
    watch.hedged = true;
    void this.open().then((stream) => this.byKey.get(key) === watch && this.request(stream, watch), () => {});
  }

  close(): void {
    this.closed = true;
    this.suspend();
  }

  /**
   * Ends the stream and every watch kept for later listeners, so an open
   * gRPC stream no longer keeps the process alive; the next `watch` opens a
   * new one. Only for when nobody listens (the store's `suspend`).
   */
  suspend(): void {
    this.sweepTimer?.cancel();
    this.sweepTimer = undefined;
    this.fail(new Error('the watch stream is closed'), false);
  }

  private async start(key: Buffer, text: string): Promise<KeyWatch> {
    const stream = await this.open();
    const existing = this.byKey.get(text); // started by another listener meanwhile
    if (existing) return existing;
    let settle: KeyWatch['settle'];
    const confirmed = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    confirmed.catch(() => {}); // a watch whose listeners all left may be refused with nobody awaiting it
    const watch: KeyWatch = { key, text, ids: [], listeners: new Set(), confirmed, settle, complete: 0, recent: [], idleSince: 0, hedged: false };
    this.byKey.set(text, watch);
    this.request(stream, watch);
    return watch;
  }

  private request(stream: WatchStream, watch: KeyWatch): void {
    const id = String(this.nextId++);
    watch.ids.push(id);
    this.byId.set(id, watch);
    this.creating.push(id);
    this.send(stream, { create_request: { key: watch.key, watch_id: id } });
  }

  /** Stops a watch in etcd (but for `gone`, which etcd already dropped) and here; its listeners (if any) are told it broke. */
  private cancel(watch: KeyWatch, reason?: Error, gone?: string): void {
    if (this.byKey.get(watch.text) !== watch) return;
    this.byKey.delete(watch.text);
    this.idle.delete(watch);
    for (const id of watch.ids) {
      this.byId.delete(id);
      // An id not confirmed yet is cancelled by `confirmed` once etcd knows it.
      if (id !== gone && !this.creating.includes(id)) this.sendLater({ cancel_request: { watch_id: id } });
    }
    this.broken(watch, reason ?? new Error('the watch was cancelled'));
  }

  /** Unconfirmed, its listeners are awaiting `watch`, which rejects; confirmed, they are told. */
  private broken(watch: KeyWatch, error: Error): void {
    const listeners = [...watch.listeners];
    watch.listeners.clear();
    if (watch.settle) {
      watch.settle.reject(error);
      watch.settle = undefined;
      return;
    }
    for (const listener of listeners) listener.broken();
  }

  /** Nobody listens any more: keep the watch a while, within MAX_IDLE. */
  private rest(watch: KeyWatch): void {
    watch.idleSince = this.clock.now();
    this.idle.add(watch);
    if (this.idle.size > MAX_IDLE) this.cancel(this.idle.values().next().value as KeyWatch);
    this.armSweep();
  }

  private open(): Promise<WatchStream> {
    if (this.stream) return this.stream;
    const opening = this.client.watchClient.watch().then((stream) => {
      if (this.stream !== opening) {
        closeStream(stream, false);
        throw new Error('the watch stream was replaced while opening');
      }
      stream.on('data', (response) => this.stream === opening && this.received(response));
      stream.on('error', (error) => this.stream === opening && this.fail(error, false));
      stream.on('end', () => this.stream === opening && this.fail(new Error('etcd ended the watch stream'), false));
      return stream;
    });
    this.stream = opening;
    opening.catch((error: unknown) => this.stream === opening && this.fail(error as Error, false));
    return opening;
  }

  /** Sends on the current stream once it is open; nothing if there is none, or it fails to open (its watches are then broken anyway). */
  private sendLater(request: IWatchRequest): void {
    void this.stream?.then((stream) => this.send(stream, request), () => {});
  }

  private send(stream: WatchStream, request: IWatchRequest): void {
    this.waitingSince ??= this.clock.now();
    stream.write(request);
  }

  private received(response: IWatchResponse): void {
    this.waitingSince = undefined;
    if (response.created) {
      this.confirmed(response);
      return;
    }
    const watch = this.byId.get(response.watch_id);
    if (!watch) return; // cancelled by us, or the progress report (watch_id -1)
    if (response.canceled) {
      this.cancel(watch, new Error(`etcd cancelled the watch: ${response.cancel_reason || 'no reason given'}`), response.watch_id);
      return;
    }
    for (const event of response.events) {
      // A hedged key's two watches both report most events: keep and pass on one copy, so `complete` moves only for real news.
      if (watch.ids.length > 1 && watch.recent.some((seen) => seen.kv.mod_revision === event.kv.mod_revision)) continue;
      if (watch.recent.push(event) > RECENT) {
        const forgotten = watch.recent.shift() as IEvent;
        watch.complete = Math.max(watch.complete, Number(forgotten.kv.mod_revision));
      }
      for (const listener of watch.listeners) listener.event(event);
    }
  }

  private confirmed(response: IWatchResponse): void {
    // A refused creation carries watch_id -1: it answers the oldest request.
    const id = this.creating.shift();
    if (id === undefined) return;
    const watch = this.byId.get(id);
    if (!watch) {
      // Cancelled while being created: now that etcd knows the id, stop it.
      if (!response.canceled) this.sendLater({ cancel_request: { watch_id: id } });
      return;
    }
    if (response.canceled) {
      if (watch.ids[0] === id) {
        this.cancel(watch, new Error(`etcd refused the watch: ${response.cancel_reason || 'no reason given'}`), id);
      } else {
        this.byId.delete(id); // a hedge: the first watch still serves
        watch.ids.splice(watch.ids.indexOf(id), 1);
      }
      return;
    }
    if (watch.ids[0] !== id) return; // a hedge: it only adds events
    watch.complete = Number(response.header.revision);
    watch.settle?.resolve();
    watch.settle = undefined;
    if (watch.listeners.size === 0) this.rest(watch);
  }

  /** The stream is gone: every watch on it is broken; the next `watch` opens a new one. */
  private fail(error: Error, reset: boolean): void {
    const stream = this.stream;
    this.stream = undefined;
    this.waitingSince = undefined;
    this.creating.length = 0;
    this.pingTimer?.cancel();
    this.pingTimer = undefined;
    void stream?.then((s) => closeStream(s, reset), () => {});
    const watches = [...this.byKey.values()];
    this.byKey.clear();
    this.byId.clear();
    this.idle.clear();
    for (const watch of watches) this.broken(watch, error);
  }

  /** Cancels the watches idle for LINGER_MS; runs while any watch is idle. */
  private armSweep(): void {
    if (this.sweepTimer || this.closed) return;
    this.sweepTimer = this.clock.setTimer(
      () => {
        this.sweepTimer = undefined;
        const now = this.clock.now();
        for (const watch of this.idle) {
          if (now - watch.idleSince < LINGER_MS) break;
          this.cancel(watch);
        }
        if (this.idle.size > 0) this.armSweep();
      },
      LINGER_MS,
    );
  }

  private armPing(): void {
    if (this.pingTimer || this.closed) return;
    this.pingTimer = this.clock.setTimer(() => {
      this.pingTimer = undefined;
      if (this.byKey.size === 0 || !this.stream) return;
      if (this.waitingSince !== undefined && this.clock.now() - this.waitingSince >= this.pingEvery) {
        this.fail(new Error(`the etcd watch stream answered nothing for ${this.pingEvery}ms`), true);
        return;
      }
      this.sendLater({ progress_request: {} });
      this.armPing();
    }, this.pingEvery);
  }
}
