/**
 * Probes until `ok(value)` holds, and resolves with that value; rejects after `timeoutMs`
 * naming `what` and the last value seen. A probe that throws (a node between states) is
 * probed again; if it never succeeded, its last error is in the rejection.
 */
export async function eventually<T>(probe: () => T | Promise<T>, ok: (value: T) => boolean, timeoutMs = 5_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: { value: T } | undefined;
  let failure: unknown;
  for (;;) {
    try {
      const value = await probe();
      last = { value };
      if (ok(value)) return value;
    } catch (error) {
      failure = error;
    }
    if (Date.now() > deadline) {
      const seen = last ? `last value: ${JSON.stringify(last.value)}` : `the probe failed: ${String(failure)}`;
      throw new Error(`${what}: not met in ${timeoutMs} ms; ${seen}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
