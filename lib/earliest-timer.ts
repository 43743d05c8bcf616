import type { Clock, Timer } from './clock.js';

/**
 * One timer for many deadlines: it fires at the earliest time it was armed
 * for, and a later `arm` only moves it when the new time is sooner. Its owner
 * re-scans what is due when it fires and arms it again for the next earliest,
 * so 10,000 leases cost one (unref'd) timer instead of 10,000.
 */
export class EarliestTimer {
  private timer?: Timer;
  private at = Infinity;

  constructor(
    private readonly clock: Clock,
    private readonly fire: () => void,
  ) {}

  /** Makes the timer fire at `at` (a clock reading), unless it already fires sooner. */
  arm(at: number): void {
    if (at >= this.at) return;
    this.timer?.cancel();
    this.at = at;
    this.timer = this.clock.setTimer(() => {
      this.timer = undefined;
      this.at = Infinity;
      this.fire();
    }, Math.max(0, at - this.clock.now()));
  }

  cancel(): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.at = Infinity;
  }
}
