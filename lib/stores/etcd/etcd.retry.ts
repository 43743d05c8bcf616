import { isRecoverableError, type IOptions } from 'etcd3';

type GlobalPolicy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

/** etcd3's default (cockatiel's `maxAttempts: 3` counts retries): a first attempt and up to three more. */
const ATTEMPTS = 4;

/**
 * The retry policy of clients the store creates, and how the store knows
 * whether a request it sent may reach etcd twice.
 *
 * etcd3 sends a request again when an attempt fails on the network (up to
 * three times, at once, as etcd3's own default policy does). An attempt that
 * failed may still have been applied, or may still be applied later: the
 * connection broke after etcd read it, or etcd proposed it just before
 * noticing. So a request sent again may take effect twice, the second time
 * arbitrarily late. A request answered on its only attempt took effect
 * exactly once, when it was answered: etcd applies a proposal once, and
 * gRPC re-sends on its own only requests the server never read.
 *
 * `resent` counts the attempts after a first one, for every request of the
 * client. A request sent while `resent` stays the same, and answered, was
 * sent once. The store relies on this to release with a plain delete and
 * reuse the name at once (see `EtcdLockStore.release`). With a client
 * passed in, or `etcdOptions` of the application's (a policy, an interceptor
 * or a service config of its own may send a request again unseen), it
 * cannot know, and releases with a compare-and-delete instead.
 *
 * etcd3 calls only `execute` on a global policy, and ignores the context
 * it passes; the rest of cockatiel's policy interface is never used, hence
 * the cast.
 */
export class CountedRetry {
  resent = 0;

  readonly policy: GlobalPolicy = {
    execute: async <T>(fn: (context: { attempt: number }) => PromiseLike<T> | T): Promise<T> => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await fn({ attempt });
        } catch (error) {
          if (attempt >= ATTEMPTS || !(error instanceof Error && isRecoverableError(error))) throw error;
          this.resent++;
        }
      }
    },
  } as unknown as GlobalPolicy;
}
