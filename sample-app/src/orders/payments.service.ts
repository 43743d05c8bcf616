import { setTimeout as sleep } from 'node:timers/promises';
import { Inject, Injectable } from '@nestjs/common';
import { LockService } from 'nestjs-distributed-lock';
import { INSTANCE_NAME } from '../instance-name.js';
import { Journal } from '../journal.js';
import { InventoryService } from './inventory.service.js';

export interface Receipt {
  readonly orderId: string;
  readonly instance: string;
  readonly fencingToken: number;
}

@Injectable()
export class PaymentsService {
  constructor(
    private readonly locks: LockService,
    private readonly inventory: InventoryService,
    private readonly journal: Journal,
    @Inject(INSTANCE_NAME) private readonly instance: string,
  ) {}

  /** Charges an order. Runs under the caller's lock on the order. */
  async pay(orderId: string): Promise<Receipt> {
    const lock = this.locks.current();
    if (!lock) throw new Error(`Paying order ${orderId} needs the order's lock; call pay() from a @WithLock method`);
    const startedAt = performance.now();
    await this.inventory.reserve();
    // The gateway call: the fencing token lets the gateway refuse a holder
    // whose lock has passed on, and the signal stops it if the lock is lost.
    await sleep(100 + Math.random() * 100, undefined, { signal: lock.signal });
    this.journal.payment({ orderId, fencingToken: lock.fencingToken, startedAt, finishedAt: performance.now() });
    return { orderId, instance: this.instance, fencingToken: lock.fencingToken };
  }
}
