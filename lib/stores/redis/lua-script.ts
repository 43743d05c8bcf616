import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';

/**
 * A Lua script sent by its SHA1 (EVALSHA), and in full (EVAL) only when the
 * server answers NOSCRIPT: after a restart, a fail-over to a replica, or a
 * SCRIPT FLUSH. EVAL also caches it again, so the next call is short again.
 * Done here rather than with ioredis' `defineCommand`, which would add
 * methods to a client the application passed in.
 */
export class LuaScript {
  readonly sha: string;

  constructor(
    /** Names the script in errors. */
    readonly name: string,
    readonly source: string,
  ) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  async run(client: Redis | Cluster, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return client.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}
