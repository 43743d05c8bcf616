/**
 * Re-checks `condition` (which may ask a server) every few milliseconds until
 * it holds, failing after `within` ms. Never a blind sleep. `what` names the
 * condition in the failure; as a function it is read at the failure, so it
 * can show output gathered meanwhile.
 */
export async function waitFor(condition: () => boolean | Promise<boolean>, within = 2_000, what: string | (() => string) = 'condition'): Promise<void> {
  const until = performance.now() + within;
  while (!(await condition())) {
    if (performance.now() > until) throw new Error(`${typeof what === 'function' ? what() : what} not met within ${within}ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
