import { Controller, Get, Inject } from '@nestjs/common';
import { INSTANCE_NAME } from './instance-name.js';

/** For load balancers and orchestrators: answers once the app serves requests. */
@Controller('health')
export class HealthController {
  constructor(@Inject(INSTANCE_NAME) private readonly instance: string) {}

  @Get()
  check(): { status: 'ok'; instance: string } {
    return { status: 'ok', instance: this.instance };
  }
}
