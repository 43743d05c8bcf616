import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** An answer the relay holds back (see {@link TcpProxy.holdAnswerTo}). */
export interface HeldAnswer {
  /** Resolves once the server has begun to answer: it has handled the request. */
  readonly answering: Promise<void>;
  /** Passes the answer on, and everything the server sends after it on that connection. */
  release(): void;
}

/** What the server sent on a connection whose answer is held, and whom to tell when it starts. */
interface Hold {
  readonly chunks: Buffer[];
  readonly answering: () => void;
}

/** A relayed connection. */
interface Pair {
  readonly client: Socket;
  readonly server: Socket;
  hold?: Hold;
}

/**
 * A TCP relay on loopback to a server on loopback, which a test can cut in
 * the one way a retry needs (a request reaches the server, its answer never
 * comes back, and the connection breaks), or slow down for one request (its
 * answer comes back when the test says).
 */
export class TcpProxy {
  private readonly pairs = new Set<Pair>();
  private withholding = false;
  /** The request whose answer to hold next, and the hold to give the connection it comes on. */
  private armed?: { readonly request: string; readonly hold: Hold };

  private constructor(private readonly listener: Server) {}

  /** A relay to the server at `target` (a URL on loopback, such as `http://127.0.0.1:2379`). */
  static async start(target: string): Promise<TcpProxy> {
    const targetPort = Number(new URL(target).port);
    let proxy: TcpProxy | undefined;
    const listener = createServer((client) => proxy?.relay(client, targetPort));
    proxy = new TcpProxy(listener);
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(0, '127.0.0.1', resolve);
    });
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.listener.address() as AddressInfo).port}`;
  }

  /**
   * From now on, passes on what clients send but keeps the server's answers
   * from them; after `ms`, breaks every connection. New connections work
   * normally again.
   */
  async withholdAnswersThenCut(ms: number): Promise<void> {
    this.withholding = true;
    await sleep(ms);
    this.withholding = false;
    this.cutAll();
  }

  /**
   * Holds back the answer to the next request whose first bytes are
   * `request`: an HTTP/1.1 request line such as `POST /leases/internal `,
   * which starts a chunk of its own, since a client sends a request on a
   * kept-alive connection only once the previous one is answered. Other
   * requests and connections pass as before.
   */
  holdAnswerTo(request: string): HeldAnswer {
    let answering!: () => void;
    const started = new Promise<void>((resolve) => (answering = resolve));
    const hold: Hold = { chunks: [], answering };
    this.armed = { request, hold };
    return {
      answering: started,
      release: () => {
        if (this.armed?.hold === hold) this.armed = undefined;
        for (const pair of this.pairs) {
          if (pair.hold !== hold) continue;
          pair.hold = undefined;
          for (const chunk of hold.chunks) pair.client.write(chunk);
        }
      },
    };
  }

  async stop(): Promise<void> {
    this.cutAll();
    await new Promise<void>((resolve) => this.listener.close(() => resolve()));
  }

  private cutAll(): void {
    for (const { client, server } of this.pairs) {
      client.destroy();
      server.destroy();
    }
    this.pairs.clear();
  }

  private relay(client: Socket, targetPort: number): void {
    const server = connect(targetPort, '127.0.0.1');
    const pair: Pair = { client, server };
    this.pairs.add(pair);
    client.on('data', (chunk: Buffer) => {
      const armed = this.armed;
      if (armed && chunk.toString('latin1', 0, armed.request.length) === armed.request) {
        this.armed = undefined;
        pair.hold = armed.hold;
      }
      server.write(chunk);
    });
    server.on('data', (chunk: Buffer) => {
      if (pair.hold) {
        pair.hold.chunks.push(chunk);
        pair.hold.answering();
      } else if (!this.withholding) {
        client.write(chunk);
      }
    });
    const close = () => {
      this.pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    client.on('close', close).on('error', close);
    server.on('close', close).on('error', close);
  }
}
