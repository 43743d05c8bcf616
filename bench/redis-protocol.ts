/**
 * What redis.bench.ts and its worker processes (redis-worker.ts) tell each
 * other over IPC. Kept apart from the worker, which runs when imported.
 */
import type { ContenderId } from './redis-contenders.js';

export interface WorkerConfig {
  readonly id: ContenderId;
  readonly url: string;
  readonly key: string;
  /** This process's index; its loops are workers proc * workers + i. */
  readonly proc: number;
  /** Workers in this process, and in all processes. */
  readonly workers: number;
  readonly totalWorkers: number;
  readonly holdMs: number;
  readonly durationMs: number;
  readonly warmupPairs: number;
  readonly calibrationSamples: number;
  /**
   * Diagnostic: note when each pub/sub message reaches this process (a
   * wrapper on ioredis' emit), so the parent can split a hand-over into
   * "release to message" and "message to grant".
   */
  readonly trace?: boolean;
}

/** One acquisition: times in ms from the run's start (a shared instant on the monotonic clock). */
export const RECORD_FIELDS = ['worker', 'first', 'request', 'grant', 'release', 'released', 'giveUps', 'messageAt', 'releaseSent'] as const;

export type FromWorker =
  /** Calibration before the run: PING round trips back to back, and what setTimeout(holdMs) took. */
  | { type: 'ready'; rttMs: number[]; holdMs: number[] }
  | { type: 'done'; records: number[]; cpuMs: number; errors: string[]; sent: Record<string, number>; rttMs: number[] }
  | { type: 'failed'; error: string };
/** `at`: when to start, on monotonicNow(). */
export type ToWorker = { type: 'start'; at: number };

/**
 * Milliseconds on the system-wide monotonic clock (process.hrtime is
 * CLOCK_MONOTONIC on Linux), so readings from different processes compare
 * exactly. performance.timeOrigin + performance.now() need not: each
 * process derives its origin from start-up readings of two clocks, and one
 * run of redis-semaphore on a loaded machine showed 162 "overlapping"
 * critical sections (and twice the usual owner changes) with it: one
 * process's times shifted against the others', since SET NX with a 10 s
 * lease cannot let two holders in.
 */
export const monotonicNow = (): number => Number(process.hrtime.bigint()) / 1e6;
