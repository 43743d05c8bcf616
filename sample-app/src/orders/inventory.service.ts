import { setTimeout as sleep } from 'node:timers/promises';
import { Injectable } from '@nestjs/common';
import { LockService } from 'nestjs-distributed-lock';

/**
 * Reserves stock for an order. All orders draw from one stock, so the
 * read-modify-write takes a short lock of its own, whichever order lock the
 * caller already holds.
 */
@Injectable()
export class InventoryService {
  // Stands in for a stock table every instance would share.
  private stock = 1_000;

  constructor(private readonly locks: LockService) {}

  /** Takes one item off the stock and resolves the stock left. */
  reserve(): Promise<number> {
    return this.locks.withLock(
      'inventory:stock',
      async () => {
        const left = this.stock;
        await sleep(2); // the round trip of reading the row
        this.stock = left - 1;
        return this.stock;
      },
      { wait: '2s' },
    );
  }
}
