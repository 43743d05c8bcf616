import { Logger } from '@nestjs/common';
import { isObservable } from 'rxjs';
import { toMilliseconds, type Duration } from './duration.js';
import {
  InvalidLockKeyError,
  InvalidLockOptionError,
  LockModuleMissingError,
  LockShutdownError,
  LockUnavailableError,
  describeValue,
} from './errors.js';
import { validateKey } from './key.js';
import type { LockHandle } from './lock.js';
import { holdWhileSubscribed } from './lock-stream.js';
import { activeServices, type LockService } from './lock.service.js';

/** Options of {@link WithLock}. */
export interface WithLockOptions {
  /** Lease length; default the module's `ttl`. */
  ttl?: Duration;
  /** How long to wait for a busy lock; default the module's `wait` (0: one try). */
  wait?: Duration;
  /**
   * What a call does when the lock stays busy: `'throw'` a
   * `LockUnavailableError` (HTTP 409), or `'skip'` the call (it resolves
   * `undefined`, with a debug log). Default `'throw'`, and `'skip'` on
   * `@Cron`, `@Interval` and `@Timeout` methods, so a busy tick is never an
   * error.
   */
  onBusy?: 'throw' | 'skip';
  /**
   * Keep the lock after the method returns until this long after it was
   * taken, then let it run out in the store (not released), so an instance
   * whose clock or schedule runs a little behind cannot run the same job
   * again. At most `ttl`.
   */
  lockAtLeastFor?: Duration;
}

/**
 * A key, or a function of the method's arguments (as the method receives
 * them, after pipes) called with the instance as `this`.
 *
 * The `any` here is deliberate: it is only a constraint, so that a key
 * function with annotated parameters (`(id: string) => ...`) or a `this`
 * type fits; `WithLock` then checks it against the decorated method.
 */
export type LockKeyFactory = string | ((this: any, ...args: any[]) => string);

/** Makes a decorator application fail to compile when the key function cannot take the method's arguments. */
type KeyFits<K, M> = K extends string
  ? unknown
  : M extends (...args: infer A) => unknown
    ? K extends (this: never, ...args: A) => string
      ? unknown
      : { 'the key function must accept the method\'s arguments': never }
    : never;

/** What the decorator resolved at decoration time. @internal */
export interface LockPlan {
  readonly where: string;
  readonly key: LockKeyFactory;
  readonly ttl?: number;
  readonly wait?: number;
  readonly onBusy?: 'throw' | 'skip';
  readonly lockAtLeastFor?: number;
}

const PLAN = Symbol('nestjs-distributed-lock:plan');
/** Where the explorer pins the service of the application that created an instance. */
const BOUND_SERVICE = Symbol('nestjs-distributed-lock:service');
/** @nestjs/schedule's marker on @Cron, @Interval and @Timeout methods. */
const SCHEDULER_TYPE = 'SCHEDULER_TYPE';
const OPTION_NAMES = new Set(['ttl', 'wait', 'onBusy', 'lockAtLeastFor']);
const logger = new Logger('WithLock');

/**
 * Runs the method while holding a lock: acquire, run, release (also when the
 * method throws). Works on controller handlers, provider methods and
 * `@nestjs/schedule` jobs, above or below their decorators; the method keeps
 * its name, `length` and all its metadata. The method returns a Promise.
 *
 * @example
 * @Post(':id/pay')
 * @WithLock((id: string) => `orders:${id}`, { wait: '5s' })
 * pay(@Param('id') id: string) { ... }
 *
 * @Cron('0 * * * * *')
 * @WithLock('reports:minutely', { lockAtLeastFor: '10s' })  // onBusy defaults to 'skip' here
 * buildReport() { ... }
 */
export function WithLock<K extends LockKeyFactory>(
  key: K,
  options: WithLockOptions = {},
): <M extends (...args: any[]) => unknown>(
  target: object,
  property: string | symbol,
  descriptor: TypedPropertyDescriptor<M> & KeyFits<K, M>,
) => void {
  return (target, property, descriptor) => {
    const owner = typeof target === 'function' ? target.name : target.constructor.name;
    const where = `@WithLock on ${owner}.${String(property)}`;
    const original = descriptor.value;
    if (typeof original !== 'function') {
      throw new InvalidLockOptionError(where, original, 'apply @WithLock to a method');
    }
    const plan = resolvePlan(where, key, options);
    const wrapped = function (this: unknown, ...args: unknown[]): Promise<unknown> {
      return runLocked(plan, this, args, original, wrapped);
    };
    for (const metadataKey of Reflect.getMetadataKeys(original)) {
      Reflect.defineMetadata(metadataKey, Reflect.getMetadata(metadataKey, original), wrapped);
    }
    Reflect.defineMetadata(PLAN, plan, wrapped);
    Object.defineProperty(wrapped, 'name', { value: original.name });
    Object.defineProperty(wrapped, 'length', { value: original.length });
    descriptor.value = wrapped as typeof original;
  };
}

/** The plan of a `@WithLock` method, or undefined. @internal */
export function lockPlanOf(method: unknown): LockPlan | undefined {
  return typeof method === 'function' ? (Reflect.getMetadata(PLAN, method) as LockPlan | undefined) : undefined;
}

/** Pins `service` to `instance`, so its `@WithLock` methods lock through its application's module. @internal */
export function bindService(instance: object, service: LockService): void {
  Object.defineProperty(instance, BOUND_SERVICE, { value: service, configurable: true });
}

/** Checks what only the module's settings can tell (the default ttl). @internal */
export function checkPlan(plan: LockPlan, ttl: number): void {
  if (plan.lockAtLeastFor !== undefined && plan.lockAtLeastFor > (plan.ttl ?? ttl)) {
    throw new InvalidLockOptionError(
      `${plan.where}: lockAtLeastFor`,
      plan.lockAtLeastFor,
      `it is longer than the lock's ttl (${plan.ttl ?? ttl}ms); raise ttl or shorten lockAtLeastFor`,
    );
  }
}

function resolvePlan(where: string, key: LockKeyFactory, options: WithLockOptions): LockPlan {
  if (typeof key === 'string') validateKey(key, where);
  else if (typeof key !== 'function') {
    throw new InvalidLockKeyError(`${where}: the key is ${describeValue(key)}; pass a string or a function of the method's arguments`);
  }
  if (typeof options !== 'object' || options === null) {
    throw new InvalidLockOptionError(`${where} options`, options, 'pass an object such as { wait: "5s" }');
  }
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.has(name)) {
      throw new InvalidLockOptionError(
        `${where}: option "${name}"`,
        (options as Record<string, unknown>)[name],
        `remove it; the options are ${[...OPTION_NAMES].join(', ')}`,
      );
    }
  }
  if (options.onBusy !== undefined && options.onBusy !== 'throw' && options.onBusy !== 'skip') {
    throw new InvalidLockOptionError(`${where}: onBusy`, options.onBusy, `use 'throw' or 'skip'`);
  }
  const plan: LockPlan = {
    where,
    key,
    ttl: options.ttl === undefined ? undefined : toMilliseconds(options.ttl, `${where}: ttl`),
    wait: options.wait === undefined ? undefined : toMilliseconds(options.wait, `${where}: wait`, true),
    onBusy: options.onBusy,
    lockAtLeastFor:
      options.lockAtLeastFor === undefined ? undefined : toMilliseconds(options.lockAtLeastFor, `${where}: lockAtLeastFor`),
  };
  if (plan.ttl !== undefined) checkPlan(plan, plan.ttl);
  return plan;
}

function serviceFor(instance: unknown, where: string): LockService {
  const bound = (instance as { [BOUND_SERVICE]?: LockService } | null | undefined)?.[BOUND_SERVICE];
  if (bound) return bound;
  if (activeServices.size === 1) return activeServices.values().next().value as LockService;
  throw new LockModuleMissingError(
    activeServices.size === 0
      ? `${where} ran, but no LockModule is running; import LockModule.forRoot() (or forRootAsync()) in your application's root module`
      : `${where} ran on an instance Nest did not create, while ${activeServices.size} applications with LockModule run in this process; ` +
          'let Nest create the instance (register it as a provider) so it locks through its own application',
  );
}

function lockKey(plan: LockPlan, instance: unknown, args: unknown[]): string {
  if (typeof plan.key === 'string') return plan.key;
  let key: unknown;
  try {
    key = plan.key.apply(instance, args);
  } catch (error) {
    throw new InvalidLockKeyError(
      `${plan.where}: the key function threw for arguments ${describeArgs(args)}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  if (typeof key !== 'string' || key.length === 0) {
    throw new InvalidLockKeyError(
      `${plan.where}: the key function returned ${describeValue(key)} for arguments ${describeArgs(args)}; return a non-empty string`,
    );
  }
  return validateKey(key, plan.where);
}

async function runLocked(
  plan: LockPlan,
  instance: unknown,
  args: unknown[],
  original: (...args: never[]) => unknown,
  wrapped: object,
): Promise<unknown> {
  const service = serviceFor(instance, plan.where);
  const onBusy = plan.onBusy ?? (Reflect.getMetadata(SCHEDULER_TYPE, wrapped) === undefined ? 'throw' : 'skip');
  const method = plan.where.slice('@WithLock on '.length);
  // The scheduler stops its jobs only after the module released its locks;
  // a tick in between is a skipped run, not an error.
  if (service.stopped && onBusy === 'skip') {
    logger.debug(`Skipped ${method}: the application is shutting down`);
    return undefined;
  }
  const key = lockKey(plan, instance, args);
  if (plan.lockAtLeastFor !== undefined) checkPlan(plan, service.settings.ttl);
  let taken;
  try {
    taken = await service.take(key, { ttl: plan.ttl, wait: plan.wait }, plan.where);
  } catch (error) {
    if (!(error instanceof LockShutdownError) || onBusy === 'throw') throw error;
    logger.debug(`Skipped ${method}: the application is shutting down`);
    return undefined;
  }
  if (taken instanceof LockUnavailableError) {
    if (onBusy === 'throw') throw taken;
    logger.debug(`Skipped ${method}: lock ${describeValue(key)} is held elsewhere`);
    return undefined;
  }
  const lock = taken;
  const end = () =>
    plan.lockAtLeastFor === undefined ? service.releaseQuietly(lock) : holdAtLeast(service, lock, plan.lockAtLeastFor);
  let result: unknown;
  try {
    result = await service.runWith(lock, () => original.apply(instance as never, args as never[]));
  } catch (error) {
    await end();
    throw error;
  }
  // A stream does its work while subscribed: the lock is held until it ends.
  if (isObservable(result)) return holdWhileSubscribed(service, lock, () => result, end);
  await end();
  return result;
}

async function holdAtLeast(service: LockService, lock: LockHandle, atLeast: number): Promise<void> {
  try {
    await lock.holdUntil(lock.acquiredAt + atLeast);
  } catch (error) {
    logger.warn(
      `Keeping lock ${describeValue(lock.key)} for lockAtLeastFor failed (${error instanceof Error ? error.message : String(error)}); releasing it`,
    );
    await service.releaseQuietly(lock);
  }
}

function describeArgs(args: unknown[]): string {
  return `[${args.map((arg) => describeValue(arg)).join(', ')}]`;
}
