import { AsyncLocalStorage } from 'node:async_hooks';
import { HttpException } from '@nestjs/common';

/** What an HTTP response object (Express's, or Fastify's `reply.raw`) tells about its client. */
interface ResponseLike {
  readonly destroyed: boolean;
  readonly writableFinished: boolean;
  once(event: 'close', listener: () => void): unknown;
}

/**
 * The HTTP request a lock call runs for, set by the module's global
 * interceptor, so a caller waiting for a lock stops waiting when its client
 * goes away: the handler of an abandoned request never runs, and does not
 * take a place in the queue from a client still there. Nothing is set up
 * until a call actually waits.
 */
class ClientScope {
  private controller?: AbortController;

  constructor(private readonly response: ResponseLike) {}

  /** Aborts once the client has gone before its response was sent. */
  get signal(): AbortSignal {
    if (!this.controller) {
      const controller = (this.controller = new AbortController());
      const gone = () => {
        // 499, nginx's "client closed request": an HttpException, so Nest
        // does not log it as a server error; nobody is left to read it.
        if (!this.response.writableFinished) controller.abort(new HttpException('The client closed the request while it waited for a lock', 499));
      };
      if (this.response.destroyed) gone();
      else this.response.once('close', gone);
    }
    return this.controller.signal;
  }
}

const scopes = new AsyncLocalStorage<ClientScope>();

/** Runs `fn` (which calls the handler) on behalf of the HTTP response `response`. */
export function runForClient<T>(response: unknown, fn: () => T): T {
  const raw = (response as { raw?: unknown } | undefined)?.raw ?? response;
  if (!isResponse(raw)) return fn();
  return scopes.run(new ClientScope(raw), fn);
}

/** The signal of the HTTP client the current call runs for, if any. */
export function clientSignal(): AbortSignal | undefined {
  return scopes.getStore()?.signal;
}

function isResponse(value: unknown): value is ResponseLike {
  return typeof value === 'object' && value !== null && typeof (value as ResponseLike).once === 'function' && 'writableFinished' in value;
}
