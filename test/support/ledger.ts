import { Inject, Injectable } from '@nestjs/common';
import { LockService, WithLock, type Duration } from 'nestjs-distributed-lock';

/**
 * A provider for the "two applications, one store" module tests: its
 * `@WithLock` method records, in `ledger`, state shared by every application
 * in the process, as a database would be by two instances: how many posts ran
 * at once, the order they finished in and the fencing token each ran with.
 */
export function ledgerProvider(wait: Duration) {
  const ledger = { active: 0, maxActive: 0, entries: [] as string[], fences: [] as number[] };

  @Injectable()
  class Ledger {
    constructor(@Inject(LockService) private readonly locks: LockService) {}

    @WithLock('ledger:post', { wait, ttl: '5s' })
    async post(entry: string): Promise<void> {
      ledger.active++;
      ledger.maxActive = Math.max(ledger.maxActive, ledger.active);
      ledger.fences.push(this.locks.current()?.fencingToken ?? -1);
      await new Promise((resolve) => setTimeout(resolve, 2));
      ledger.entries.push(entry);
      ledger.active--;
    }
  }

  return { Ledger, ledger };
}
