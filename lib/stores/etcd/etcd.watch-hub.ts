import type { Etcd3, IDuplexStream, IEvent, IWatchRequest, IWatchResponse } from 'etcd3';
import type { Clock, Timer } from '../../clock.js';
import { closeStream } from './etcd.session.js';

type WatchStream = IDuplexStream<IWatchRequest, IWatchResponse>;

/** Who a watch reports to. */
export interface WatchListener {
  /** An event on the watched key, in revision order. */
  event(event: IEvent): void;
  /** The watch stopped (stream failed, etcd cancelled it); events may have been missed. Called once, instead of further events. */
  broken(): void;
}

interface Watch {
  readonly listener: WatchListener;
  /** Set until etcd confirms the watch. */
  created?: { resolve(revision: number): void; reject(error: Error): void };
}

/**
 * Every watch the store needs, on one watch stream.
 *
 * **Watches start now, never in the past.** etcd serves a watch whose start
 * revision is behind the store's current revision as "unsynced", and catches
 * such watches up on a timer that runs every 100 ms, so even a deletion that
 * happens after the watch was created can reach it up to 100 ms late. Every
 * watch here starts at the current revision (start_revision 0); the caller
 * learns the revision it started at (`create` resolves it) and reads once to
 * cover anything before (see etcd.waiter.ts).
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
  private readonly watches = new Map<string, Watch>();
  /** Ids of watches whose confirmation is outstanding, in the order requested (etcd answers in order). */
  private readonly creating: string[] = [];
  private nextId = 1;
  private pingTimer?: Timer;
  /** When the oldest request still unanswered was sent. */
  private waitingSince?: number;
  private closed = false;

  constructor(
    private readonly client: Etcd3,
    private readonly clock: Clock,
    private readonly pingEvery: number,
  ) {}

  /** Watches `key` from now on; resolves the revision the watch starts after once etcd confirms it. */
  async create(key: Buffer, listener: WatchListener): Promise<{ id: string; revision: number }> {
    if (this.closed) throw new Error('the watch stream is closed');
    const id = String(this.nextId++);
    const stream = await this.open();
    return new Promise((resolve, reject) => {
      this.watches.set(id, { listener, created: { resolve: (revision) => resolve({ id, revision }), reject } });
      this.creating.push(id);
      this.send(stream, { create_request: { key, watch_id: id } });
      this.armPing();
    });
  }

  /** Stops a watch; later events for it are dropped. */
  cancel(id: string): void {
    const watch = this.watches.get(id);
    if (!watch) return;
    this.watches.delete(id);
    if (watch.created) {
      // Not confirmed yet: `confirmed` cancels it in etcd once it knows the id.
      watch.created.reject(new Error('the watch was cancelled before etcd confirmed it'));
      return;
    }
    this.sendLater({ cancel_request: { watch_id: id } });
  }

  close(): void {
    this.closed = true;
    this.fail(new Error('the watch stream is closed'), false);
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
    const watch = this.watches.get(response.watch_id);
    if (!watch) return; // cancelled by us, or the progress report (watch_id -1)
    if (response.canceled) {
      this.watches.delete(response.watch_id);
      watch.listener.broken();
      return;
    }
    for (const event of response.events) watch.listener.event(event);
  }

  private confirmed(response: IWatchResponse): void {
    // A refused creation carries watch_id -1: it answers the oldest request.
    const id = this.creating.shift();
    if (id === undefined) return;
    const watch = this.watches.get(id);
    if (response.canceled) {
      this.watches.delete(id);
      watch?.created?.reject(new Error(`etcd refused the watch: ${response.cancel_reason || 'no reason given'}`));
      return;
    }
    if (!watch) {
      // Cancelled while being created: now that etcd knows the id, stop it.
      this.sendLater({ cancel_request: { watch_id: id } });
      return;
    }
    const created = watch.created;
    watch.created = undefined;
    created?.resolve(Number(response.header.revision));
  }

  /** The stream is gone: every watch on it is broken; the next `create` opens a new one. */
  private fail(error: Error, reset: boolean): void {
    const stream = this.stream;
    this.stream = undefined;
    this.waitingSince = undefined;
    this.creating.length = 0;
    this.pingTimer?.cancel();
    this.pingTimer = undefined;
    void stream?.then((s) => closeStream(s, reset), () => {});
    const watches = [...this.watches.values()];
    this.watches.clear();
    for (const watch of watches) {
      if (watch.created) watch.created.reject(error);
      else watch.listener.broken();
    }
  }

  private armPing(): void {
    if (this.pingTimer || this.closed) return;
    this.pingTimer = this.clock.setTimer(() => {
      this.pingTimer = undefined;
      if (this.watches.size === 0 || !this.stream) return;
      if (this.waitingSince !== undefined && this.clock.now() - this.waitingSince >= this.pingEvery) {
        this.fail(new Error(`the etcd watch stream answered nothing for ${this.pingEvery}ms`), true);
        return;
      }
      this.sendLater({ progress_request: {} });
      this.armPing();
    }, this.pingEvery);
  }
}
