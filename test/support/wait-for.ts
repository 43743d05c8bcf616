/** Re-checks `condition` every few milliseconds until it holds, failing after `within` ms. Never a blind sleep. */
export async function waitFor(condition: () => boolean, within = 2_000, what = 'condition'): Promise<void> {
  const until = performance.now() + within;
  while (!condition()) {
    if (performance.now() > until) throw new Error(`${what} not met within ${within}ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
