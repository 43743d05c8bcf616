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
 * name goes to the oldest connection that has none on it yet, so a process
 * that holds many different keys uses one connection, and N callers of the
 * process waiting for the same key use N connections, each with its own
 * place in the daemon's FIFO queue, up to `maxConnections`.
 */
export class ConnectionPool {
  private readonly connections: BusConnection[] = [];
  private opening = 0;
  private closed = false;

  constructor(
    private readonly settings: PoolSettings,
    /** Called when a connection ended by itself (the bus dropped it): room for a new one. */
    private readonly onDrop: () => void,
  ) {}

  /**
   * Registers `watcher` as the claim on `name` on a connection that has no
   * claim on it: at once when one is open, once it is open when a new one is
   * needed. {@link BUSY} when every connection the store may have already
   * claims `name`.
   */
  claim(name: string, watcher: NameWatcher): BusConnection | typeof BUSY | Promise<BusConnection> {
    let full = 0;
    for (const connection of this.connections) {
      if (connection.has(name)) continue;
      if (connection.accepting) {
        connection.watch(name, watcher);
        return connection;
      }
      full++;
    }
    if (this.connections.length + this.opening >= this.settings.maxConnections) {
      if (full === this.connections.length && this.opening === 0) throw new ConnectionsFullError(full);
      return BUSY;
    }
    return this.open(name, watcher);
  }

  private async open(name: string, watcher: NameWatcher): Promise<BusConnection> {
    this.opening++;
    let connection: BusConnection;
    try {
      connection = await BusConnection.open(this.settings.address, this.settings.timeout, (ended) => this.ended(ended));
    } finally {
      this.opening--;
    }
    if (this.closed) {
      await connection.close();
      throw new Error('the store was closed');
    }
    this.connections.push(connection);
    connection.watch(name, watcher);
    return connection;
  }

  /** Closes every connection; the daemon frees the names they owned. */
  async close(): Promise<void> {
    this.closed = true;
    const connections = this.connections.splice(0);
    await Promise.all(connections.map((connection) => connection.close()));
  }

  private ended(connection: BusConnection): void {
    const index = this.connections.indexOf(connection);
    if (index >= 0) this.connections.splice(index, 1);
    this.onDrop();
  }
}
