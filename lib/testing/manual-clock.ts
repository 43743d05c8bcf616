import type { Clock, Timer } from '../clock.js';

/**
 * A clock that moves only when told to, for tests of leases, renewals and
 * waits without sleeping. Timers fire in order of their due time, each with
 * the clock set to that time, and timers they set fire in the same advance
 * if they fall due within it.
 *
 * @example
 * const clock = new ManualClock();
 * const store = new MemoryLockStore({ clock });
 * await clock.advance(30_000); // the lease runs out, waiters are served
 */
export class ManualClock implements Clock {
  private current: number;
  private readonly timers = new Set<{ at: number; seq: number; fn: () => void }>();
  private seq = 0;

  constructor(start = 0) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimer(fn: () => void, ms: number): Timer {
    const timer = { at: this.current + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.add(timer);
    return { cancel: () => this.timers.delete(timer) };
  }

  /** Timers not yet fired or cancelled. */
  get pending(): number {
    return this.timers.size;
  }

  /**
   * Moves time forward by `ms`, firing every timer that falls due, and lets
   * promise callbacks run between timers so async work they start proceeds.
   */
  async advance(ms: number): Promise<void> {
    const until = this.current + ms;
    await settle();
    for (;;) {
      let next: { at: number; seq: number; fn: () => void } | undefined;
      for (const timer of this.timers) {
        if (timer.at <= until && (!next || timer.at < next.at || (timer.at === next.at && timer.seq < next.seq))) next = timer;
      }
      if (!next) break;
      this.timers.delete(next);
      this.current = Math.max(this.current, next.at);
      next.fn();
      await settle();
    }
    this.current = until;
    await settle();
  }
}

/** Lets pending promise callbacks (several hops deep) run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
  await new Promise<void>((resolve) => setImmediate(resolve));
}
