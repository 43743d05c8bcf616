import { setTimeout as sleep } from 'node:timers/promises';
import { Injectable } from '@nestjs/common';
import { Cron, CronExpression } from '@nestjs/schedule';
import { LockService, WithLock } from 'nestjs-distributed-lock';
import { Journal } from '../journal.js';

@Injectable()
export class ReportJob {
  constructor(
    private readonly locks: LockService,
    private readonly journal: Journal,
  ) {}

  /**
   * Every instance schedules it; one runs each tick and the rest skip.
   * Holding the lock at least 800ms keeps an instance whose tick fires a
   * little late from running the same tick again.
   */
  @Cron(CronExpression.EVERY_SECOND)
  @WithLock('reports:tick', { onBusy: 'skip', lockAtLeastFor: '800ms' })
  async build(): Promise<void> {
    const second = Math.floor(Date.now() / 1000);
    const { fencingToken } = this.locks.current()!;
    await sleep(50); // building the report
    this.journal.report({ second, fencingToken });
  }
}
