import { BusConnection, type NameWatcher } from './bus-connection.js';

/** Every connection may already claim this name: wait for one of those claims to end. */
export const BUSY = 'busy';

export interface PoolSettings {
  readonly address: string;
  readonly timeout: number;
  readonly maxConnections: number;
}

/** Every connection reached the bus's limit of names per connection, and no more may be opened. */
export class ConnectionsFullError extends Error {
  constructor(count: number) {
    super(
      `all ${count} bus connections of the store reached the bus's limit of names per connection ` +
        '(max_names_per_connection in the bus configuration, counting the connection\'s own unique name: 512 unless ' +
        'the configuration says otherwise, 50000 on a standard session bus); raise the store\'s maxConnections or that limit, ' +
        'or hold fewer locks at once',
    );
    this.name = 'ConnectionsFullError';
  }
}

/**
 * The store's connections to the bus, opened when first needed. A claim on a
 * name goes to the oldest connection that has none on it yet, open or still
 * opening, so a process that holds many different keys uses one connection,
 * and N callers of the process waiting for the same key use N connections,
 * each with its own place in the daemon's FIFO queue, up to `maxConnections`.
 */
export class ConnectionPool {
  private readonly connections: BusConnection[] = [];
  /** Connections being opened, each with the claims to register on it once open (one per name), and its opening. */
  private readonly opening = new Map<Map<string, NameWatcher>, Promise<BusConnection>>();
  private closed = false;

  constructor(
    private readonly settings: PoolSettings,
    /** Called when a connection ended by itself (the bus dropped it): room for a new one. */
    private readonly onDrop: () => void,
  ) {}

  /**
   * Registers `watcher` as the claim on `name` on a connection that has no
   * claim on it: at once when one is open, once it is open when it is still
   * opening or a new one is needed. {@link BUSY} only when every connection
   * the store may have, open or opening, already claims `name`: then a claim
   * on `name` ends before one of them has room, and the caller waits for
   * that.
   */
  claim(name: string, watcher: NameWatcher): BusConnection | typeof BUSY | Promise<BusConnection> {
    if (this.closed) throw new Error('the store was closed');
    let full = 0;
    for (const connection of this.connections) {
      if (connection.has(name)) continue;
      if (connection.accepting) {
        connection.watch(name, watcher);
        return connection;
      }
      full++;
    }
    // A connection on its way takes any name not yet claimed on it. Counting
    // it as busy for every name would leave a claim on another key waiting
    // for a claim on its own key to end, which may never come: a burst of
    // callers on one key opens every connection the store may have at once.
    for (const [claims, ready] of this.opening) {
      if (claims.has(name)) continue;
      claims.set(name, watcher);
      return ready;
    }
    if (this.connections.length + this.opening.size >= this.settings.maxConnections) {
      if (full === this.connections.length && this.opening.size === 0) throw new ConnectionsFullError(full);
      return BUSY;
    }
    const claims = new Map([[name, watcher]]);
    // open() removes the entry after its first await, so always after it was added here.
    const ready = this.open(claims);
    this.opening.set(claims, ready);
    return ready;
  }

  /** Opens a connection and registers on it the claims that were given it meanwhile. */
  private async open(claims: Map<string, NameWatcher>): Promise<BusConnection> {
    let connection: BusConnection;
    try {
      connection = await BusConnection.open(this.settings.address, this.settings.timeout, (ended) => this.ended(ended));
    } finally {
      this.opening.delete(claims);
    }
    if (this.closed) {
      await connection.close();
      throw new Error('the store was closed');
    }
    this.connections.push(connection);
    for (const [name, watcher] of claims) connection.watch(name, watcher);
    return connection;
  }

  /**
   * Closes every connection; the daemon frees the names they owned. One that
   * carries a name kept past the store's close stays open until its last
   * claim ended (see {@link BusConnection.retire}); this does not wait for it.
   */
  async close(): Promise<void> {
    this.closed = true;
    const connections = this.connections.splice(0);
    await Promise.all(connections.map((connection) => connection.retire()));
  }

  private ended(connection: BusConnection): void {
    const index = this.connections.indexOf(connection);
    if (index >= 0) this.connections.splice(index, 1);
    this.onDrop();
  }
}
