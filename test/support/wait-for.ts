/**
 * Re-checks `condition` (which may ask a server) every few milliseconds until
 * it holds, failing after `within` ms. Never a blind sleep.
 */
export async function waitFor(condition: () => boolean | Promise<boolean>, within = 2_000, what = 'condition'): Promise<void> {
  const until = performance.now() + within;
  while (!(await condition())) {
    if (performance.now() > until) throw new Error(`${what} not met within ${within}ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
