import { createServer, type IncomingMessage, type Server } from 'node:http';
import { hostNow } from './random.js';
import type { ResourceOp } from './protocol.js';

/**
 * The shared resource every critical section reads, increments and writes:
 * one counter per key, behind HTTP on loopback. It fences every access, reads
 * included: an operation with a token lower than the highest it has seen for
 * the key is refused. (Fencing writes alone is not enough: a stale holder's
 * write can land after the new holder read the old value and before it wrote,
 * and the new holder's write then loses the stale one's update.) With
 * `fencing: false` (a store whose tokens are not ordered) it only records.
 */
export class FencedResource {
  readonly ops: ResourceOp[] = [];
  private readonly values = new Map<string, number>();
  private readonly highest = new Map<string, number>();
  private server?: Server;

  constructor(private readonly fencing: boolean) {}

  async start(): Promise<string> {
    this.server = createServer((request, response) => {
      void this.handle(request).then(
        ([status, body]) => response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body)),
        (error: unknown) => response.writeHead(400).end(String(error)),
      );
    });
    this.server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as { port: number };
    return `http://127.0.0.1:${port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }

  value(key: string): number {
    return this.values.get(key) ?? 0;
  }

  private async handle(request: IncomingMessage): Promise<[number, unknown]> {
    let raw = '';
    for await (const chunk of request) raw += chunk;
    const { op, key, token, read } = JSON.parse(raw) as { op: 'read' | 'write'; key: string; token: number; read?: number };
    const at = hostNow();
    const highest = this.highest.get(key) ?? -Infinity;
    const accepted = !this.fencing || token >= highest;
    if (accepted && this.fencing) this.highest.set(key, token);
    const current = this.value(key);
    if (op === 'read') {
      this.ops.push({ kind: 'read', key, token, at, accepted });
      return accepted ? [200, { value: current }] : [409, { stale: true }];
    }
    this.ops.push({ kind: 'write', key, token, at, read, current, accepted });
    if (!accepted) return [409, { stale: true }];
    this.values.set(key, (read ?? 0) + 1);
    return [200, { value: (read ?? 0) + 1 }];
  }
}
