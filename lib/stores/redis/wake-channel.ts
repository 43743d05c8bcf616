import type { Cluster, Redis } from 'ioredis';

/** A waiting acquisition, as the wake channel sees it. */
export interface Wakeable {
  /** The lock was handed to this waiter with fencing token `token`. */
  woken(token: number): void;
  /** Hand-off messages may have been missed (the subscription was re-established): ask Redis now. */
  recheck(): void;
}

/**
 * The store's single subscription: one extra connection (a duplicate of the
 * store's client) subscribed to one channel that belongs to this store
 * instance alone. A release that hands a lock to one of this store's waiters
 * publishes `token:owner` there, and the channel routes it by owner.
 *
 * One channel per store rather than per key means the store subscribes once,
 * before its first waiter joins a queue, and never again: a waiter cannot
 * miss its wake-up because its subscription was still on the way. What can
 * still be missed (messages published while the subscriber was reconnecting)
 * is caught by asking every waiter to re-check once it is back, and by each
 * waiter's own bounded re-check.
 */
export class WakeChannel {
  private readonly waiters = new Map<string, Wakeable>();
  private subscriber?: Redis | Cluster;
  private subscribed?: Promise<void>;

  constructor(
    private readonly client: Redis | Cluster,
    /** The channel's name: the store's key prefix and a random id. */
    readonly name: string,
  ) {}

  /**
   * Resolves once subscribed: the first call subscribes, later calls share
   * the result; after a failure the next call tries again.
   */
  ready(): Promise<void> {
    this.subscribed ??= this.subscribe().catch((error: unknown) => {
      this.subscribed = undefined;
      this.disconnect();
      throw error;
    });
    return this.subscribed;
  }

  add(owner: string, waiter: Wakeable): void {
    this.waiters.set(owner, waiter);
  }

  delete(owner: string): void {
    this.waiters.delete(owner);
  }

  /** Drops the subscription's connection; the next `ready()` subscribes again. */
  close(): void {
    this.subscribed = undefined;
    this.disconnect();
  }

  private async subscribe(): Promise<void> {
    // Offline queue and resubscription on, whatever the application chose
    // for its own client: the subscription must survive reconnects.
    const subscriber: Redis | Cluster = this.client.isCluster
      ? (this.client as Cluster).duplicate(undefined, { enableOfflineQueue: true })
      : (this.client as Redis).duplicate({ enableOfflineQueue: true, autoResubscribe: true });
    this.subscriber = subscriber;
    // Connection errors are retried by ioredis and reach each waiter through
    // its own requests; listening keeps ioredis from printing them.
    subscriber.on('error', () => {});
    subscriber.on('message', (_channel: string, message: string) => this.route(message));
    let connectedBefore = false;
    subscriber.on('ready', () => {
      if (connectedBefore) for (const waiter of this.waiters.values()) waiter.recheck();
      connectedBefore = true;
    });
    await subscriber.subscribe(this.name);
  }

  private route(message: string): void {
    const colon = message.indexOf(':');
    const token = Number(message.slice(0, colon));
    this.waiters.get(message.slice(colon + 1))?.woken(token);
  }

  private disconnect(): void {
    this.subscriber?.disconnect();
    this.subscriber = undefined;
  }
}
