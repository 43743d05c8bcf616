import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner } from '@nestjs/core';
import { LockService } from './lock.service.js';
import { bindService, checkPlan, lockPlanOf } from './with-lock.decorator.js';

/**
 * At bootstrap, finds every controller and provider with `@WithLock`
 * methods, checks their options against the module's settings (so a bad
 * `lockAtLeastFor` stops the app instead of failing at the first call), and
 * pins this application's `LockService` to the instance. Pinning is what lets
 * several applications in one process each lock through their own module.
 */
@Injectable()
export class LockExplorer implements OnModuleInit {
  constructor(
    @Inject(DiscoveryService) private readonly discovery: DiscoveryService,
    @Inject(MetadataScanner) private readonly scanner: MetadataScanner,
    @Inject(LockService) private readonly locks: LockService,
  ) {}

  onModuleInit(): void {
    for (const wrapper of [...this.discovery.getControllers(), ...this.discovery.getProviders()]) {
      const instance: unknown = wrapper.instance;
      if (!instance || typeof instance !== 'object') continue;
      const prototype: object | null = Object.getPrototypeOf(instance);
      if (!prototype) continue;
      let locked = false;
      for (const name of this.scanner.getAllMethodNames(prototype)) {
        const plan = lockPlanOf((instance as Record<string, unknown>)[name]);
        if (!plan) continue;
        checkPlan(plan, this.locks.settings.ttl);
        locked = true;
      }
      if (locked) bindService(instance, this.locks);
    }
  }
}
