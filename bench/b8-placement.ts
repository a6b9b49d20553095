/**
 * B8: time of one rebalanceShards call for a join from 63 to 64 nodes, at 1,024, 4,096
 * and 16,384 shards. Target: going from 1,024 to 16,384 shards costs at most 1.5× what
 * S·log S growth allows (ratio = measured growth ÷ S·log S growth <= 1.5).
 */
import { initialOwners, rebalanceShards } from '../lib/cluster/placement.js';
import { gc, round, type Benchmark } from './harness.js';

const NODES = 64;
const TARGET = 1.5;
const SAMPLES = 41;
/** Each sample runs long enough that timer resolution and scheduling jitter wash out. */
const SAMPLE_NS = 5_000_000n;
const WARMUP_NS = 200_000_000n;

const nodes = Array.from({ length: NODES }, (_, i) => `node-${String(i).padStart(2, '0')}`);

/** A 63 → 64 node join over `shards` shards, batched so that one batch takes about SAMPLE_NS. */
function joinBatch(shards: number): () => number {
  const before = initialOwners(shards, nodes.slice(0, NODES - 1));
  const join = () => rebalanceShards(before, nodes);
  let calls = 1;
  for (let start = process.hrtime.bigint(); process.hrtime.bigint() - start < WARMUP_NS; ) join();
  for (;;) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) join();
    if (process.hrtime.bigint() - start >= SAMPLE_NS) break;
    calls *= 2;
  }
  /** Milliseconds per call over one batch. */
  return () => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) join();
    return Number(process.hrtime.bigint() - start) / 1e6 / calls;
  };
}

/** Median ms per call of each size, samples interleaved so that drift hits all sizes alike. */
function medianMs(sizes: readonly number[]): number[] {
  const batches = sizes.map(joinBatch);
  const samples = sizes.map((): number[] => []);
  gc();
  for (let sample = 0; sample < SAMPLES; sample++) {
    batches.forEach((batch, i) => samples[i].push(batch()));
  }
  return samples.map((ms) => ms.sort((a, b) => a - b)[SAMPLES >> 1]);
}

const sLogS = (s: number): number => s * Math.log2(s);

export const b8: Benchmark = {
  id: 'B8',
  title: 'rebalanceShards time, 4096 shards × 64 nodes',
  goal: 'grows no faster than S·log S',
  async run() {
    const [ms1024, ms4096x64, ms16384] = medianMs([1024, 4096, 16384]);
    const ratio = ms16384 / ms1024 / (sLogS(16384) / sLogS(1024));
    return {
      ratio: round(ratio),
      target: TARGET,
      pass: ratio <= TARGET,
      ms4096x64: round(ms4096x64, 4),
      ms1024: round(ms1024, 4),
      ms16384: round(ms16384, 4),
    };
  },
};
