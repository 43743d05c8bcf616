import { Observable } from 'rxjs';
import { LockLostError, describeValue } from './errors.js';
import type { LockHandle } from './lock.js';
import type { LockService } from './lock.service.js';

/**
 * An Observable that runs `source` under `lock` and calls `end` once, when
 * its subscription ends (complete, error or unsubscribe): a stream's work
 * happens while it is subscribed, not when the method that made it returned,
 * so releasing any earlier would leave the stream unprotected. If the lock is
 * lost first, the stream errors with the `LockLostError` rather than running
 * on. The lock covers one subscription; a second subscriber is refused, since
 * that lock is the first one's (or already gone).
 */
export function holdWhileSubscribed<T>(
  service: LockService,
  lock: LockHandle,
  source: () => Observable<T>,
  end: () => Promise<void>,
): Observable<T> {
  let subscribed = false;
  return new Observable<T>((subscriber) => {
    if (subscribed) {
      subscriber.error(
        new Error(
          `The Observable returned under lock ${describeValue(lock.key)} by ${lock.section ?? 'a locked method'} was subscribed twice; ` +
            'its lock covers one subscription: call the method again for another, or share() the stream',
        ),
      );
      return;
    }
    subscribed = true;
    const onLost = () => {
      const reason: unknown = lock.signal.reason;
      if (reason instanceof LockLostError && reason.reason !== 'released') subscriber.error(reason);
    };
    lock.signal.addEventListener('abort', onLost, { once: true });
    // Subscribed with the lock as the current lock, so the stream's own
    // callbacks see it through LockService.current().
    const subscription = service.runWith(lock, () => source().subscribe(subscriber));
    return () => {
      lock.signal.removeEventListener('abort', onLost);
      subscription.unsubscribe();
      void end();
    };
  });
}
