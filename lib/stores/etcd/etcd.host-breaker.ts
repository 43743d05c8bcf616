import { isRecoverableError, type IOptions } from 'etcd3';

type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions['faultHandling']>['host']>>;

/** Thrown instead of calling a member whose breaker is open; etcd3 then tries the next member. */
class MemberSkippedError extends Error {}

/**
 * etcd3 never passes a signal and its calls ignore the one they get; one
 * shared signal that never aborts saves building an AbortController per
 * request (several microseconds each, on every acquire and release).
 */
const neverAborted = new AbortController().signal;

/**
 * The per-member circuit breaker for clients the store creates.
 *
 * etcd3's default opens a member's breaker after three failures in a row
 * and keeps it open for 5 s. During a leader election every member fails
 * requests for a moment ("no leader"), so every breaker opens and the whole
 * client refuses to talk to a healthy cluster for 5 s after the election,
 * long after locks could pass on again. This breaker opens for `openFor`
 * (one second by default): a dead member is still skipped almost always,
 * and the store is back at most a second after etcd is.
 *
 * etcd3 calls only `execute` on a host policy; the rest of cockatiel's
 * policy interface is never used, hence the cast.
 */
export function hostBreaker(openFor = 1_000): HostPolicy {
  let failures = 0;
  let openUntil = 0;
  // Repeated when skipping: with a single member the skip is often the only error the caller sees.
  let lastFailure = '';
  const policy = {
    async execute<T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
      if (Date.now() < openUntil) {
        throw new MemberSkippedError(`this etcd member failed ${failures} requests in a row, the last with "${lastFailure}"; skipped for ${openFor}ms`);
      }
      try {
        const result = await fn({ signal: signal ?? neverAborted });
        failures = 0;
        return result;
      } catch (error) {
        if (error instanceof Error && isRecoverableError(error)) {
          lastFailure = error.message;
          if (++failures >= 3) openUntil = Date.now() + openFor;
        }
        throw error;
      }
    },
  };
  return policy as unknown as HostPolicy;
}
