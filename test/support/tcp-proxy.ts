import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A TCP relay on loopback to a server on loopback, which a test can cut in
 * the one way a retry needs: a request reaches the server, its answer never
 * comes back, and the connection breaks.
 */
export class TcpProxy {
  private readonly pairs = new Set<{ client: Socket; server: Socket }>();
  private withholding = false;

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
    const pair = { client, server };
    this.pairs.add(pair);
    client.on('data', (chunk) => server.write(chunk));
    server.on('data', (chunk) => this.withholding || client.write(chunk));
    const close = () => {
      this.pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    client.on('close', close).on('error', close);
    server.on('close', close).on('error', close);
  }
}
