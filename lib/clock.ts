/**
 * Time as the library sees it: a monotonic clock and timers. Deadlines are
 * never read from the wall clock, which can jump; tests swap in a
 * `ManualClock` (from `nestjs-distributed-lock/testing`) to drive time.
 */
export interface Clock {
  /** Monotonic milliseconds; only differences between readings mean anything. */
  now(): number;
  /**
   * Calls `fn` after `ms`. The timer must not keep the process alive: a
   * process that only took and released locks exits by itself.
   */
  setTimer(fn: () => void, ms: number): Timer;
}

export interface Timer {
  cancel(): void;
}

/** The real clock: `performance.now()` and unref'd Node timers. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(fn, ms) {
    const handle = setTimeout(fn, ms);
    handle.unref();
    return { cancel: () => clearTimeout(handle) };
  },
};
