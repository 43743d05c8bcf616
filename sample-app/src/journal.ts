import { Inject, Injectable } from '@nestjs/common';
import { INSTANCE_NAME } from './instance-name.js';

/** A payment as it ran; times are `performance.now()` readings. */
export interface PaymentRecord {
  readonly instance: string;
  readonly orderId: string;
  readonly fencingToken: number;
  readonly startedAt: number;
  readonly finishedAt: number;
}

/** A run of the report job. */
export interface ReportRecord {
  readonly instance: string;
  /** The cron tick, in whole seconds since the epoch. */
  readonly second: number;
  readonly fencingToken: number;
}

/**
 * What this instance did, kept in memory. A real app would write an audit
 * table; here it lets the demo see, from outside, who ran what and when.
 */
@Injectable()
export class Journal {
  readonly payments: PaymentRecord[] = [];
  readonly reports: ReportRecord[] = [];

  constructor(@Inject(INSTANCE_NAME) readonly instance: string) {}

  payment(record: Omit<PaymentRecord, 'instance'>): void {
    this.payments.push({ instance: this.instance, ...record });
  }

  report(record: Omit<ReportRecord, 'instance'>): void {
    this.reports.push({ instance: this.instance, ...record });
  }
}
