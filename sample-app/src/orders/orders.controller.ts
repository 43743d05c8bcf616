import { Controller, Param, Post } from '@nestjs/common';
import { WithLock } from 'nestjs-distributed-lock';
import { PaymentsService, type Receipt } from './payments.service.js';

@Controller('orders')
export class OrdersController {
  constructor(private readonly payments: PaymentsService) {}

  /** One payment per order at a time, on whichever instance it lands; a second one waits its turn. */
  @Post(':id/pay')
  @WithLock((id: string) => `orders:${id}`, { wait: '5s' })
  pay(@Param('id') id: string): Promise<Receipt> {
    return this.payments.pay(id);
  }
}
