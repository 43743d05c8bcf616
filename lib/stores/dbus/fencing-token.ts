/**
 * Fencing tokens for bus-name locks, which the bus cannot count itself: the
 * daemon keeps no counter, and a name it frees leaves nothing behind.
 *
 * A token is a reading of the host's monotonic clock (`CLOCK_MONOTONIC`, in
 * microseconds since boot) taken when the store learns of the grant, and
 * above every token this store gave before. The bus hands a name to the next
 * owner only after the previous one released it, which that holder does
 * after it took its own reading; so in normal operation each holder of a key
 * reads the clock later than the one before it, across processes and
 * containers that share the kernel's clock, and across bus daemon restarts.
 *
 * It is not a guarantee, which is why the store's `traits.fencing` is
 * `'none'`:
 * - a host reboot restarts the clock, so tokens go back;
 * - processes whose clocks differ (a `tcp:` bus reached from another host,
 *   a container in its own time namespace) are not ordered at all;
 * - when the bus drops a holder's connection (the daemon stops, or
 *   disconnects a client over its limits) just after granting it a name,
 *   before the holder has read the grant, the next holder can read the clock
 *   first, and the dropped one reads a larger token before it sees that its
 *   connection closed.
 */
export class FencingTokens {
  private last = 0;

  next(): number {
    const now = Number(process.hrtime.bigint() / 1_000n);
    this.last = now > this.last ? now : this.last + 1;
    return this.last;
  }
}
