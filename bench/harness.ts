/** Shared shape and helpers of the benchmarks run by `npm run bench`. */

export interface BenchResult {
  /** Measured ratio (natstate ÷ baseline), or absent for a reported value. */
  readonly ratio?: number;
  readonly value?: number;
  readonly unit?: string;
  readonly target: number;
  readonly pass: boolean;
  readonly [figure: string]: unknown;
}

export interface Benchmark {
  readonly id: string;
  readonly title: string;
  /** How the target reads, e.g. ">= 0.5" (shown in the table). */
  readonly goal: string;
  readonly needsNats?: boolean;
  run(context: BenchContext): Promise<BenchResult>;
}

export interface BenchContext {
  /** URL of a nats-server with JetStream (spawned by the runner unless NATS_URL is set). */
  readonly natsUrl: () => Promise<string>;
}

/** Best of `rounds` runs of `fn`, in operations per second. */
export async function opsPerSecond(ops: number, fn: () => Promise<void> | void, rounds = 3): Promise<number> {
  let best = 0;
  for (let i = 0; i < rounds; i++) {
    const start = process.hrtime.bigint();
    await fn();
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    best = Math.max(best, ops / seconds);
  }
  return best;
}

/**
 * Measures two contenders side by side: rounds alternate between them so both see the
 * same machine load, and each keeps its best round. Returns operations per second.
 */
export async function sideBySide(
  ops: number,
  contenders: { readonly baseline: () => Promise<void> | void; readonly natstate: () => Promise<void> | void },
  rounds = 5,
): Promise<{ baseline: number; natstate: number }> {
  const best = { baseline: 0, natstate: 0 };
  for (let i = 0; i < rounds; i++) {
    for (const side of ['baseline', 'natstate'] as const) {
      // Each round starts from a collected heap, so neither side pays for the other's garbage.
      collectGarbage();
      const start = process.hrtime.bigint();
      await contenders[side]();
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      best[side] = Math.max(best[side], ops / seconds);
    }
  }
  return best;
}

/** Collects garbage when the benchmark runs with --expose-gc (npm run bench does); otherwise nothing. */
function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

export function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (!collect) throw new Error('run the benchmarks with node --expose-gc (npm run bench does)');
  collect();
  collect();
}

export const round = (n: number, digits = 2): number => Number(n.toFixed(digits));
