/**
 * B6: `ask` routed from node A to the owner node B over NATS vs raw `nc.request` of
 * payloads of the same sizes between the same two connections, both pipelined with the
 * same number in flight. Targets: throughput ratio >= 0.8, p50 latency ratio <= 1.3.
 *
 * The asked command is one the machine refuses (an overdraft), so nothing is written to
 * JetStream: the figure is the cost of routing (encode, request, ownership check,
 * mailbox, pure step, reply with state), not of storage.
 */
import { connect } from '@nats-io/transport-node';
import { createNode } from '../lib/index.js';
import { encode } from '../lib/codec/codec.js';
import { NatsKV } from '../lib/cluster/kv/nats.js';
import { ShardMapStore } from '../lib/cluster/shard-map.js';
import { shardOf } from '../lib/cluster/placement.js';
import { Subjects } from '../lib/subjects.js';
import { account } from '../examples/bank/account.machine.js';
import { round, type Benchmark } from './harness.js';

const REQUESTS = 4_000;
const IN_FLIGHT = 64;

interface Run {
  perSecond: number;
  p50: number;
}

async function pipelined(count: number, inFlight: number, one: (i: number) => Promise<unknown>): Promise<Run> {
  const latencies: number[] = new Array(count);
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < count) {
        const i = next++;
        const t = performance.now();
        await one(i);
        latencies[i] = performance.now() - t;
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return { perSecond: count / seconds, p50: latencies[Math.floor(count / 2)] };
}

export const b6: Benchmark = {
  id: 'B6',
  title: 'routed ask over NATS vs raw nc.request',
  goal: 'throughput >= 0.8, p50 <= 1.3',
  needsNats: true,
  async run({ natsUrl }) {
    const servers = await natsUrl();
    const namespace = `bench-b6-${Date.now()}`;
    const [ncA, ncB, ncMap] = await Promise.all([connect({ servers }), connect({ servers }), connect({ servers })]);
    const cluster = { shards: 64, planIntervalMs: 100 };
    const b = await createNode({ actors: { account }, namespace, nodeId: 'b', nats: ncB, cluster });
    const a = await createNode({ actors: { account }, namespace, nodeId: 'a', nats: ncA, cluster });
    const subjects = new Subjects(namespace);
    const kv = await NatsKV.create(ncMap, { namespace });
    const map = new ShardMapStore({ kv, subjects });
    await map.start();
    try {
      await map.waitFor((m) => m.owners.includes('a') && m.owners.includes('b'), 10_000);
      await new Promise((r) => setTimeout(r, 300)); // every node on the same epoch
      const current = map.current!;
      const ids = Array.from({ length: 2_000 }, (_, i) => `acc-${i}`).filter((id) => current.owners[shardOf(id, current.shardCount)] === 'b').slice(0, 100);
      const overdraft = { type: 'WITHDRAW', amount: 1_000_000 } as const;
      for (const id of ids) await a.ask('account', id, overdraft);

      // Raw: the same payload sizes a routed ask puts on the wire, echoed by B's connection.
      const requestBytes = encode({ type: 'account', id: ids[0], event: overdraft, commandId: `${crypto.randomUUID()}:1a2b`, epoch: current.epoch, wantState: true });
      const replyBytes = encode({ kind: 'ok', accepted: false, version: 0, commandId: `${crypto.randomUUID()}:1a2b`, duplicate: false, state: { value: 'open', context: { id: ids[0], balance: 0, deposits: 0 }, status: 'active' } });
      const echo = ncB.subscribe(`bench.${namespace}.echo`, { callback: (_e, msg) => void msg.respond(replyBytes) });
      await ncB.flush();

      const rounds: { raw: Run; routed: Run }[] = [];
      for (let r = 0; r < 3; r++) {
        const raw = await pipelined(REQUESTS, IN_FLIGHT, () => ncA.request(`bench.${namespace}.echo`, requestBytes, { timeout: 5000 }));
        const routed = await pipelined(REQUESTS, IN_FLIGHT, (i) => a.ask('account', ids[i % ids.length], overdraft));
        rounds.push({ raw, routed });
      }
      echo.unsubscribe();
      const best = (pick: (x: { raw: Run; routed: Run }) => Run) => rounds.map(pick).reduce((x, y) => (y.perSecond > x.perSecond ? y : x));
      const raw = best((x) => x.raw);
      const routed = best((x) => x.routed);
      const ratio = routed.perSecond / raw.perSecond;
      const p50Ratio = routed.p50 / raw.p50;
      return {
        ratio: round(ratio),
        target: 0.8,
        pass: ratio >= 0.8 && p50Ratio <= 1.3,
        p50Ratio: round(p50Ratio),
        p50Target: 1.3,
        routedPerSecond: Math.round(routed.perSecond),
        rawPerSecond: Math.round(raw.perSecond),
        routedP50Ms: round(routed.p50, 3),
        rawP50Ms: round(raw.p50, 3),
        requestBytes: requestBytes.length,
        replyBytes: replyBytes.length,
      };
    } finally {
      map.close();
      await kv.close();
      await a.close();
      await b.close();
      await Promise.all([ncA.close(), ncB.close(), ncMap.close()]);
    }
  },
};
