import {
  applyDecorators,
  ConflictException,
  ServiceUnavailableException,
  Inject,
  Injectable,
  Optional,
  SetMetadata,
  UseInterceptors,
  BadRequestException,
  type CallHandler,
  type ExecutionContext,
  type NestInterceptor,
} from '@nestjs/common';
import { HttpAdapterHost, Reflector } from '@nestjs/core';
import { Observable, catchError, defer, mergeMap, throwError } from 'rxjs';
import { clientSignal, runForClient } from './client-scope.js';
import { holdWhileSubscribed } from './lock-stream.js';
import { toMilliseconds, type Duration } from './duration.js';
import { InvalidLockKeyError, LockShutdownError, LockUnavailableError, describeValue } from './errors.js';
import { MAX_KEY_LENGTH, validateKey } from './key.js';
import type { LockHandle } from './lock.js';
import { LockService } from './lock.service.js';

/** Computes a lock key from the request of any transport (HTTP, RPC, WebSocket, GraphQL). */
export type RequestKeyFactory = (context: ExecutionContext) => string;

/** Options of {@link LockRoute}. */
export interface LockRouteOptions {
  /** Lease length; default the module's `ttl`. */
  ttl?: Duration;
  /** How long a request waits for a busy lock; default the module's `wait`. */
  wait?: Duration;
}

interface RouteLock {
  readonly key: RequestKeyFactory;
  readonly ttl?: number;
  readonly wait?: number;
}

const ROUTE_LOCK = Symbol('nestjs-distributed-lock:route');

/**
 * Locks a route handler (or every handler of a controller) for the whole
 * request, with a key taken from the request. The lock is held until the
 * handler's result is sent: for an Observable or stream, until it completes,
 * errors or the client goes away. If the lock is lost first, the stream errors
 * with `LockLostError`. A busy lock answers 409 Conflict.
 *
 * @example
 * @Post()
 * @LockRoute(fromHeader('Idempotency-Key', 'payments:'), { wait: '2s' })
 * create(@Body() dto: PaymentDto) { ... }
 */
export function LockRoute(key: string | RequestKeyFactory, options: LockRouteOptions = {}): MethodDecorator & ClassDecorator {
  const where = '@LockRoute';
  if (typeof key === 'string') validateKey(key, where);
  else if (typeof key !== 'function') {
    throw new InvalidLockKeyError(`${where}: the key is ${describeValue(key)}; pass a string or a function of the ExecutionContext`);
  }
  const route: RouteLock = {
    key: typeof key === 'string' ? () => key : key,
    ttl: options.ttl === undefined ? undefined : toMilliseconds(options.ttl, `${where}: ttl`),
    wait: options.wait === undefined ? undefined : toMilliseconds(options.wait, `${where}: wait`, true),
  };
  return applyDecorators(SetMetadata(ROUTE_LOCK, route), UseInterceptors(LockInterceptor));
}

/**
 * A key from an HTTP route parameter: `fromParam('id', 'orders:')` locks
 * `orders:42` for `/orders/42`. A missing parameter, or one that cannot be
 * part of a lock key, answers 400.
 */
export function fromParam(name: string, prefix = ''): RequestKeyFactory {
  return (context) => {
    const value: unknown = context.switchToHttp().getRequest<{ params?: Record<string, unknown> }>().params?.[name];
    return requestKey(value, prefix, `The route parameter "${name}"`);
  };
}

/**
 * A key from an HTTP request header (case-insensitive):
 * `fromHeader('Idempotency-Key', 'payments:')`. A missing header, or one
 * that cannot be part of a lock key, answers 400.
 */
export function fromHeader(name: string, prefix = ''): RequestKeyFactory {
  const header = name.toLowerCase();
  return (context) => {
    const value: unknown = context.switchToHttp().getRequest<{ headers?: Record<string, unknown> }>().headers?.[header];
    return requestKey(value, prefix, `The ${name} header`);
  };
}

/**
 * The key for a request value. The value is the client's input, so a value
 * no key can hold (too long, or not well-formed text) is the client's
 * mistake: 400, not a server error. The answer does not echo the value.
 */
function requestKey(value: unknown, prefix: string, what: string): string {
  if (typeof value !== 'string' || value === '') throw new BadRequestException(`${what} is required`);
  const key = prefix + value;
  if (key.length > MAX_KEY_LENGTH) {
    throw new BadRequestException(`${what} is too long; at most ${MAX_KEY_LENGTH - prefix.length} characters`);
  }
  if (!key.isWellFormed()) throw new BadRequestException(`${what} is not well-formed text`);
  return key;
}

/**
 * The interceptor behind {@link LockRoute}. It acts only on handlers marked
 * with `@LockRoute`, so it can also be bound globally.
 */
@Injectable()
export class LockInterceptor implements NestInterceptor {
  constructor(
    @Inject(LockService) private readonly locks: LockService,
    @Inject(Reflector) private readonly reflector: Reflector,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const route = this.reflector.getAllAndOverride<RouteLock | undefined>(ROUTE_LOCK, [context.getHandler(), context.getClass()]);
    if (!route) return next.handle();
    // Read now: the lock is taken when the result is subscribed to, outside
    // the async context of the request.
    const client = clientSignal();
    return defer(() => this.take(context, route, client)).pipe(
      // next.handle() captures the async context when it is called, so the
      // handler sees this lock through LockService.current().
      mergeMap((lock) => holdWhileSubscribed(this.locks, lock, () => next.handle(), () => this.locks.releaseQuietly(lock))),
    );
  }

  private async take(context: ExecutionContext, route: RouteLock, client: AbortSignal | undefined): Promise<LockHandle> {
    const where = `@LockRoute on ${context.getClass().name}.${context.getHandler().name}`;
    let key: unknown;
    try {
      key = route.key(context);
    } catch (error) {
      if (error instanceof Error && 'getStatus' in error) throw error;
      throw new InvalidLockKeyError(`${where}: the key function threw: ${error instanceof Error ? error.message : String(error)}`, {
        cause: error,
      });
    }
    const taken = await this.locks.take(validateKey(key, where), { ttl: route.ttl, wait: route.wait, signal: client }, where);
    if (taken instanceof LockUnavailableError) throw taken;
    return taken;
  }
}

/**
 * Registered globally by `LockModule`. A lock wait in an HTTP request ends
 * when the client goes away (see client-scope.ts). It turns a
 * `LockUnavailableError` that reaches an HTTP response into 409 Conflict, with `Retry-After` when the
 * store could estimate it, and a `LockShutdownError` into 503 Service
 * Unavailable (this instance is going away; another one can serve the
 * request). The body does not name the lock key, which is an internal name;
 * other transports receive the error as it is.
 */
@Injectable()
export class LockConflictInterceptor implements NestInterceptor {
  constructor(@Optional() @Inject(HttpAdapterHost) private readonly adapterHost?: HttpAdapterHost) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    // next.handle() captures the async context when called: the handler, its
    // @WithLock methods and @LockRoute all see the client it runs for.
    return runForClient(context.switchToHttp().getResponse(), () => next.handle()).pipe(
      catchError((error: unknown) => {
        if (error instanceof LockShutdownError) {
          return throwError(
            () => new ServiceUnavailableException('This instance is shutting down; retry the request', { cause: error }),
          );
        }
        if (!(error instanceof LockUnavailableError)) return throwError(() => error);
        const adapter = this.adapterHost?.httpAdapter;
        if (error.retryAfter !== undefined && adapter) {
          adapter.setHeader(context.switchToHttp().getResponse(), 'Retry-After', String(Math.max(1, Math.ceil(error.retryAfter / 1000))));
        }
        return throwError(
          () =>
            new ConflictException('This resource is locked by another operation; retry later', {
              cause: error,
              description: 'Conflict',
            }),
        );
      }),
    );
  }
}
