/**
 * Controllers that abort when a signal does, with one listener on the signal
 * however many follow it: an application that passes one AbortSignal to
 * hundreds of waiting acquires would otherwise get Node's
 * MaxListenersExceededWarning at the eleventh.
 */
const followers = new WeakMap<AbortSignal, Set<AbortController>>();

/** Aborts `controller` with `source`'s reason when `source` aborts; returns the way to stop following. */
export function follow(source: AbortSignal, controller: AbortController): () => void {
  if (source.aborted) {
    controller.abort(source.reason);
    return () => {};
  }
  let set = followers.get(source);
  if (!set) {
    const created = (set = new Set());
    followers.set(source, created);
    source.addEventListener(
      'abort',
      () => {
        followers.delete(source);
        for (const follower of created) follower.abort(source.reason);
      },
      { once: true },
    );
  }
  set.add(controller);
  const joined = set;
  return () => joined.delete(controller);
}
