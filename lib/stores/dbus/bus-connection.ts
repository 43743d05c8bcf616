import type { Socket } from 'node:net';
import { Message, NameFlag, sessionBus, type MessageBus } from 'dbus-next';

/** How a connection tells the claim on one of its names what the bus did with that name. */
export interface NameWatcher {
  /** `NameAcquired`: the bus made this connection the name's owner. */
  acquired(): void;
  /** `NameLost`: this connection no longer owns the name. */
  lost(): void;
  /** The connection closed: every name it owned is free, every queue place gone. */
  dropped(error: Error): void;
}

/** A call the bus did not answer within the timeout. `late` settles if the answer still comes, and fails if the connection ends first. */
export class BusTimeoutError extends Error {
  constructor(
    message: string,
    readonly late: Promise<number>,
  ) {
    super(message);
    this.name = 'BusTimeoutError';
  }
}

/** The bus took the socket but did not finish the handshake (authentication and `Hello`) in time. */
export class HandshakeTimeoutError extends Error {
  constructor(timeout: number) {
    super(`the bus did not complete the connection's handshake within ${timeout}ms`);
    this.name = 'HandshakeTimeoutError';
  }
}

/** A call to the bus waiting for its answer. */
interface PendingCall {
  /** The call and the name it is about, for the timeout error (formatted only then). */
  readonly member: string;
  readonly name: unknown;
  /** When it fails with a timeout, on `performance.now()`. */
  readonly deadline: number;
  /** dbus-next's promise of the answer; it never settles if the connection ends first. */
  readonly sent: Promise<Message | null>;
  readonly reject: (error: Error) => void;
}

const DRIVER = 'org.freedesktop.DBus';
const DRIVER_PATH = '/org/freedesktop/DBus';
const SIGNAL = 4;

/**
 * One connection to the bus daemon, and the names claimed on it. The daemon
 * keeps ownership and queue places per connection: a connection owns or
 * queues for a name at most once, and all of them end when it closes. So
 * the connection routes the daemon's `NameAcquired`/`NameLost` signals to
 * the one claim per name, and reports its own end to every claim.
 *
 * The socket keeps the process alive only while a call is in flight or a
 * claim waits in a queue: held names alone do not, just as the core's
 * renewal timers do not, so an application that shut down without closing
 * the store still exits (and the daemon frees the names when it does).
 */
export class BusConnection {
  private readonly watchers = new Map<string, NameWatcher>();
  /** Calls not yet answered, oldest first. */
  private readonly pending = new Set<PendingCall>();
  /** Answers of calls that timed out, failed when the connection ends. */
  private readonly late = new Set<(error: Error) => void>();
  /** One timer for the timeouts of all calls. */
  private watchdog?: NodeJS.Timeout;
  private state: 'open' | 'dropped' | 'closed' = 'open';
  private endError?: Error;
  private holds = 0;
  /** Claims that hit the bus's name limit; while it has this many, it takes no new name. */
  private fullAt = Infinity;
  /** A claim on it keeps its name past the store's close (see {@link outlastStore}). */
  private outlasting = false;
  /** The store closed while a claim kept its name here: the connection closes when its last claim ends. */
  private retiring = false;

  private constructor(
    private readonly bus: MessageBus,
    private readonly stream: Socket,
    private readonly timeout: number,
    private readonly onEnd: (connection: BusConnection) => void,
  ) {
    bus.on('message', (message: Message) => this.route(message));
    // Errors after the handshake come before the stream closes; the close reports them.
    bus.on('error', (error: unknown) => (this.endError ??= asError(error)));
    stream.once('close', () => this.drop(this.endError ?? new Error('the bus closed the connection')));
    stream.unref();
  }

  /**
   * Connects and says hello (which gives the connection its unique name).
   * Rejects within `timeout` ms when the bus cannot be reached or does not
   * answer.
   */
  static open(address: string, timeout: number, onEnd: (connection: BusConnection) => void): Promise<BusConnection> {
    return new Promise((resolve, reject) => {
      let bus: MessageBus;
      try {
        bus = sessionBus({ busAddress: address });
      } catch (error) {
        reject(asError(error));
        return;
      }
      const stream = streamOf(bus);
      const fail = (error: unknown) => {
        clearTimeout(timer);
        bus.removeAllListeners();
        stream.destroy();
        reject(asError(error));
      };
      const timer = setTimeout(() => fail(new HandshakeTimeoutError(timeout)), timeout);
      bus.on('error', fail);
      stream.once('close', () => fail(new Error('the bus closed the connection during the handshake')));
      bus.once('connect', () => {
        clearTimeout(timer);
        bus.removeListener('error', fail);
        stream.removeAllListeners('close');
        resolve(new BusConnection(bus, stream, timeout, onEnd));
      });
    });
  }

  /** True until the connection closed or was dropped. */
  get open(): boolean {
    return this.state === 'open';
  }

  /** Whether a claim on `name` lives on this connection (held, queued or on its way). */
  has(name: string): boolean {
    return this.watchers.has(name);
  }

  /** Whether the connection can take a claim on a name it has none on. */
  get accepting(): boolean {
    return this.state === 'open' && this.watchers.size < this.fullAt;
  }

  /** Registers the one claim on `name`; the caller checked {@link has}. */
  watch(name: string, watcher: NameWatcher): void {
    this.watchers.set(name, watcher);
  }

  /** Ends the claim on `name`, once the bus has answered its last call about it. */
  unwatch(name: string, watcher: NameWatcher): void {
    if (this.watchers.get(name) === watcher) this.watchers.delete(name);
    if (this.retiring && this.watchers.size === 0) void this.close();
  }

  /** A claim on this connection keeps its name after the store closed, until its lease ends: {@link retire} leaves the connection open for it. */
  outlastStore(): void {
    this.outlasting = true;
  }

  /**
   * The store closed: closes the connection now, or, when a claim on it keeps
   * its name past the close, once its last claim ended (the kept names are
   * released at the end of their leases, and the claims that only waited
   * leave the bus's queue). Resolves once closed, or at once when it stays
   * open: it keeps the process alive no more than before (see {@link hold}).
   */
  retire(): Promise<void> {
    if (!this.outlasting || this.watchers.size === 0) return this.close();
    this.retiring = true;
    return Promise.resolve();
  }

  /** The bus refused one more name: take none until a claim ends. */
  markFull(): void {
    this.fullAt = this.watchers.size - 1;
  }

  /** Keeps the process alive while someone waits on this connection (a queued claim). */
  hold(): void {
    if (this.holds++ === 0) this.stream.ref();
  }

  unhold(): void {
    if (--this.holds === 0) this.stream.unref();
  }

  /**
   * `RequestName`: resolves the daemon's reply code (1 owner, 2 queued,
   * 3 taken and not queued, 4 already owner). With `queue` false the request
   * is a try-lock (`DO_NOT_QUEUE`). The store only asks for names it made
   * valid, so dbus-next's per-call check is skipped.
   */
  request(name: string, queue: boolean): Promise<number> {
    return this.call('RequestName', 'su', [name, queue ? 0 : NameFlag.DO_NOT_QUEUE]);
  }

  /** `ReleaseName`: gives up ownership of `name`, or its place in the queue. Resolves the reply code (1 released). */
  release(name: string): Promise<number> {
    return this.call('ReleaseName', 's', [name]);
  }

  /**
   * Closes the connection; the daemon frees every name it owned. Pending
   * calls reject. Resolves once the socket closed (at most `timeout` ms).
   */
  async close(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'closed';
    this.endError = new Error('the store was closed');
    this.failCalls(this.endError);
    this.watchers.clear();
    if (this.stream.closed) return;
    const closed = new Promise((resolve) => this.stream.once('close', resolve));
    const timer = setTimeout(() => this.stream.destroy(), this.timeout);
    this.bus.disconnect();
    await closed;
    clearTimeout(timer);
  }

  /**
   * Sends a call to the bus driver and resolves the first value of its
   * answer. Rejects when the connection ends (dbus-next would wait forever)
   * and, with a {@link BusTimeoutError}, when the bus has not answered within
   * `timeout`.
   */
  private call(member: 'RequestName' | 'ReleaseName', signature: string, body: unknown[]): Promise<number> {
    if (this.state !== 'open') return Promise.reject(this.endError ?? new Error('the connection is closed'));
    const message = new Message({ destination: DRIVER, path: DRIVER_PATH, interface: DRIVER, member, signature, body });
    return new Promise<number>((resolve, reject) => {
      const call: PendingCall = {
        member,
        name: body[0],
        deadline: performance.now() + this.timeout,
        sent: this.bus.call(message),
        reject,
      };
      this.pending.add(call);
      this.hold();
      this.watchdog ??= setTimeout(() => this.expireCalls(), this.timeout).unref();
      call.sent.then(
        (reply) => {
          if (!this.settle(call)) return;
          resolve(Number(reply?.body[0]));
        },
        (error: unknown) => {
          if (this.settle(call)) reject(asError(error));
        },
      );
    });
  }

  /** Takes an answered or failed call off the list; false when it was already off (timed out or failed). */
  private settle(call: PendingCall): boolean {
    if (!this.pending.delete(call)) return false;
    this.unhold();
    return true;
  }

  /**
   * Fails the calls the bus has not answered in time. One timer for all
   * calls rather than one per call: the bus answers in the order it was
   * asked, so the oldest call sets the next check.
   */
  private expireCalls(): void {
    this.watchdog = undefined;
    const now = performance.now();
    for (const call of this.pending) {
      if (call.deadline > now) {
        this.watchdog = setTimeout(() => this.expireCalls(), call.deadline - now).unref();
        return;
      }
      this.settle(call);
      let failLate!: (error: Error) => void;
      const late = new Promise<number>((resolve, reject) => {
        failLate = reject;
        call.sent.then((reply) => resolve(Number(reply?.body[0])), (error: unknown) => reject(asError(error)));
      });
      this.late.add(failLate);
      const forget = () => this.late.delete(failLate);
      late.then(forget, forget);
      call.reject(new BusTimeoutError(`the bus did not answer ${call.member} ${String(call.name)} within ${this.timeout}ms`, late));
    }
  }

  /** Hands the daemon's news about a claimed name to its claim. Signals of the bus driver only: nobody else can forge them. */
  private route(message: Message): void {
    if (message.type !== SIGNAL || message.sender !== DRIVER || message.interface !== DRIVER) return;
    if (message.member !== 'NameAcquired' && message.member !== 'NameLost') return;
    const watcher = this.watchers.get(String(message.body[0]));
    if (!watcher) return;
    if (message.member === 'NameAcquired') watcher.acquired();
    else watcher.lost();
  }

  private drop(error: Error): void {
    if (this.state !== 'open') return;
    this.state = 'dropped';
    this.endError = error;
    this.failCalls(error);
    const watchers = [...this.watchers.values()];
    this.watchers.clear();
    this.onEnd(this);
    for (const watcher of watchers) watcher.dropped(error);
  }

  private failCalls(error: Error): void {
    clearTimeout(this.watchdog);
    this.watchdog = undefined;
    for (const call of this.pending) call.reject(error);
    this.pending.clear();
    for (const fail of this.late) fail(error);
    this.late.clear();
  }
}

/**
 * The socket under a dbus-next bus. dbus-next 0.10 reports neither the end
 * of the connection nor lets a caller unref it; its stream does both.
 */
function streamOf(bus: MessageBus): Socket {
  return (bus as unknown as { _connection: { stream: Socket } })._connection.stream;
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
