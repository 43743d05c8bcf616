import { Module, type DynamicModule } from '@nestjs/common';
import { ScheduleModule } from '@nestjs/schedule';
import { LockModule, type LockStore } from 'nestjs-distributed-lock';
import { HealthController } from './health.controller.js';
import { INSTANCE_NAME } from './instance-name.js';
import { Journal } from './journal.js';
import { InventoryService } from './orders/inventory.service.js';
import { OrdersController } from './orders/orders.controller.js';
import { PaymentsService } from './orders/payments.service.js';
import { ReportJob } from './reports/report.job.js';

export interface AppOptions {
  /** Names this instance in what it records. */
  instance: string;
  /** Where the locks live; every instance that must exclude the others gets the same store. */
  store?: LockStore;
  /** Close the store with the app: for a store made for this app alone. */
  closeStore?: boolean;
  /** The tenant's namespace in a shared store. */
  keyPrefix?: string;
}

@Module({})
export class AppModule {
  static forRoot({ instance, store, closeStore, keyPrefix }: AppOptions): DynamicModule {
    return {
      module: AppModule,
      imports: [ScheduleModule.forRoot(), LockModule.forRoot({ store, closeStore, keyPrefix, ttl: '10s' })],
      controllers: [HealthController, OrdersController],
      providers: [{ provide: INSTANCE_NAME, useValue: instance }, Journal, InventoryService, PaymentsService, ReportJob],
    };
  }
}
