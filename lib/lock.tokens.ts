/** Injection token of the validated {@link LockSettings}. */
export const LOCK_SETTINGS = Symbol('LOCK_SETTINGS');
