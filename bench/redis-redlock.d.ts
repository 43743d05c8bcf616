/**
 * Types for the part of redlock 5 (beta) the Redis benchmark uses.
 *
 * redlock 5.0.0-beta.2 ships dist/index.d.ts, but its package.json "exports"
 * has no "types" condition, so TypeScript's nodenext resolution cannot find
 * it (TS7016; upstream: mike-marcacci/node-redlock#216 merged, not released,
 * #290 open). Declared here for the benchmark only, after that file.
 */
declare module 'redlock' {
  import { EventEmitter } from 'node:events';
  import type { Cluster, Redis } from 'ioredis';

  export interface Settings {
    readonly driftFactor: number;
    /** Retries after the first attempt before `acquire` gives up with ExecutionError; default 10 (-1: forever). */
    readonly retryCount: number;
    /** ms between attempts; default 200. */
    readonly retryDelay: number;
    /** ± ms of random jitter on each delay; default 100. */
    readonly retryJitter: number;
    readonly automaticExtensionThreshold: number;
  }

  /** One client's vote against: the resource was already locked. Emitted as 'error' for every failed attempt. */
  export class ResourceLockedError extends Error {}

  /** The operation found no quorum within its retries: for `acquire`, the caller gave up. */
  export class ExecutionError extends Error {}

  export class Lock {
    readonly resources: string[];
    readonly value: string;
    expiration: number;
    release(): Promise<unknown>;
  }

  export default class Redlock extends EventEmitter {
    readonly settings: Settings;
    constructor(clients: Iterable<Redis | Cluster>, settings?: Partial<Settings>);
    acquire(resources: string[], duration: number, settings?: Partial<Settings>): Promise<Lock>;
    release(lock: Lock, settings?: Partial<Settings>): Promise<unknown>;
    quit(): Promise<void>;
  }
}
