export { LockModule } from './lock.module.js';
export type { LockModuleOptions } from './lock.options.js';
export { LockService, type AcquireOptions, type LockLostListener } from './lock.service.js';
export type { Lock } from './lock.js';
export { WithLock, type WithLockOptions, type LockKeyFactory } from './with-lock.decorator.js';
export {
  LockRoute,
  LockInterceptor,
  fromParam,
  fromHeader,
  type LockRouteOptions,
  type RequestKeyFactory,
} from './lock.interceptor.js';
export {
  LockError,
  LockUnavailableError,
  LockLostError,
  InvalidLockKeyError,
  InvalidLockOptionError,
  LockStoreError,
  LockModuleMissingError,
  LockShutdownError,
  LockReentryError,
  type LockLostReason,
} from './errors.js';
export type { Duration } from './duration.js';
export { MAX_KEY_LENGTH } from './key.js';
export type { Clock, Timer } from './clock.js';
export type {
  LockStore,
  LockStoreTraits,
  AcquireRequest,
  AcquireResult,
  RenewRequest,
  RenewResult,
  Validity,
} from './store/lock-store.js';
export { MemoryLockStore, type MemoryLockStoreOptions } from './stores/memory/memory.store.js';
