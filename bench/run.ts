/**
 * `npm run bench [-- B1 B3 ...] [-- --json]`: runs the benchmarks side by side in one
 * process and prints a table; with --json the last line is one JSON object keyed by id.
 */
import { b1 } from './b1-command-throughput.js';
import { b2 } from './b2-replay.js';
import { b3 } from './b3-jetstream-commands.js';
import { b4 } from './b4-hot-actor.js';
import { b5 } from './b5-memory.js';
import { b6 } from './b6-routed-ask.js';
import { b7 } from './b7-local-routing.js';
import { b8 } from './b8-placement.js';
import { b9 } from './b9-rebalance.js';
import { b10 } from './b10-warm-migration.js';
import type { Benchmark, BenchResult } from './harness.js';
import { NatsServer } from '../spec/support/nats-server.js';

const all: Benchmark[] = [b1, b2, b3, b4, b5, b6, b7, b8, b9, b10];

const args = process.argv.slice(2);
const json = args.includes('--json');
const wanted = args.filter((a) => /^B\d+$/i.test(a)).map((a) => a.toUpperCase());
const unknown = wanted.filter((id) => !all.some((b) => b.id === id));
if (unknown.length) {
  console.error(`unknown benchmark(s): ${unknown.join(', ')}; known: ${all.map((b) => b.id).join(', ')}`);
  process.exit(2);
}
const selected = wanted.length ? all.filter((b) => wanted.includes(b.id)) : all;

let server: NatsServer | undefined;
const natsUrl = async (): Promise<string> => {
  if (process.env.NATS_URL) return process.env.NATS_URL;
  server ??= await NatsServer.start();
  return server.url;
};

const results: Record<string, BenchResult> = {};
try {
  for (const bench of selected) {
    if (!json) process.stdout.write(`${bench.id} ${bench.title} ... `);
    const result = await bench.run({ natsUrl });
    results[bench.id] = result;
    if (!json) console.log(result.pass ? 'pass' : 'FAIL');
  }
} finally {
  await server?.stop();
}

if (json) {
  console.log(JSON.stringify(results));
} else {
  const rows = selected.map((b) => {
    const r = results[b.id];
    const measured = r.ratio !== undefined ? `ratio ${r.ratio}` : `${r.value} ${r.unit}`;
    const figures = Object.entries(r)
      .filter(([k]) => !['ratio', 'value', 'unit', 'target', 'pass'].includes(k))
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    return [b.id, b.title, measured, b.goal, r.pass ? 'pass' : 'FAIL', figures];
  });
  const header = ['id', 'benchmark', 'measured', 'target', 'result', 'figures'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join(' | ');
  console.log('\n' + line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
  for (const r of rows) console.log(line(r));
}
