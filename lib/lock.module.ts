import { ConfigurableModuleBuilder, Module, type DynamicModule } from '@nestjs/common';
import { APP_INTERCEPTOR, DiscoveryModule } from '@nestjs/core';
import { LockExplorer } from './lock.explorer.js';
import { LockConflictInterceptor, LockInterceptor } from './lock.interceptor.js';
import { resolveSettings, type LockModuleOptions } from './lock.options.js';
import { LockService } from './lock.service.js';
import { LOCK_SETTINGS } from './lock.tokens.js';

const { ConfigurableModuleClass, MODULE_OPTIONS_TOKEN, OPTIONS_TYPE } = new ConfigurableModuleBuilder<LockModuleOptions>()
  .setClassMethodName('forRoot')
  .setExtras({ isGlobal: true }, (definition, extras) => ({ ...definition, global: extras.isGlobal }))
  .build();

/**
 * Registers one lock store and the `LockService` for the application.
 * Global by default (`isGlobal: false` to import it per module).
 *
 * @example
 * @Module({ imports: [LockModule.forRoot({ ttl: '30s' })] })
 * export class AppModule {}
 *
 * LockModule.forRootAsync({
 *   inject: [ConfigService],
 *   useFactory: (config: ConfigService) => ({ store: new RedisLockStore({ url: config.get('REDIS_URL') }), closeStore: true }),
 * })
 */
@Module({
  imports: [DiscoveryModule],
  providers: [
    { provide: LOCK_SETTINGS, useFactory: resolveSettings, inject: [MODULE_OPTIONS_TOKEN] },
    LockService,
    LockExplorer,
    LockInterceptor,
    { provide: APP_INTERCEPTOR, useClass: LockConflictInterceptor },
  ],
  exports: [LockService, LockInterceptor],
})
export class LockModule extends ConfigurableModuleClass {
  /** Registers the module; with no options, a `MemoryLockStore` and the defaults. */
  static override forRoot(options: typeof OPTIONS_TYPE = {}): DynamicModule {
    return super.forRoot(options);
  }
}
