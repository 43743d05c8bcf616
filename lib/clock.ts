/**
 * Time as the library sees it: a monotonic clock and timers. Deadlines are
 * never read from the wall clock, which can jump; tests swap in a
 * `ManualClock` (from `nestjs-distributed-lock/testing`) to drive time.
 */
export interface Clock {
  /** Monotonic milliseconds; only differences between readings mean anything. */
  now(): number;
  /**
   * Calls `fn` after `ms`. Background timers (renewal, lease expiry) must not
   * keep the process alive, so a process that only took and released locks
   * exits by itself; `keepAlive` is for timers that end a wait someone is
   * awaiting, which must not be cut short by the process exiting.
   */
  setTimer(fn: () => void, ms: number, keepAlive?: boolean): Timer;
}

export interface Timer {
  cancel(): void;
}

/** The real clock: `performance.now()` and Node timers. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(fn, ms, keepAlive = false) {
    const handle = setTimeout(fn, ms);
    if (!keepAlive) handle.unref();
    return { cancel: () => clearTimeout(handle) };
  },
};
