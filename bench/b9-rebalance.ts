/**
 * B9: rebalance of 10,000 resident actors (10 events each) from 3 to 4 nodes, under a
 * steady load of deposits from clients of the first three. Measured: time from the 4th
 * node's start until the plan is done (one map on every node, no migration running),
 * and throughput during the rebalance vs before it. Targets: <= 3 s embedded, <= 10 s
 * over NATS; throughput during >= 0.8 of before; 0 lost, 0 duplicated (checked against
 * every actor's state and history).
 *
 * The throughput ratio of one run varies by ±0.1 to ±0.2 on this 2-core machine: the
 * same steady load runs at one rate or at about 1.6 times it for seconds at a time, and a
 * window that catches the faster phase moves the ratio by a third. So the embedded
 * figures are the median of five runs, each on a fresh cluster and all reported; a small
 * rebalance first warms up the migration code (the first one in a process otherwise runs
 * partly unoptimised). Over NATS a run takes about two minutes (the check reads 10,000
 * streams) and single runs of the same build read from 0.63 to 0.81, so it is the median
 * of three.
 *
 * Control: the same protocol on three fresh embedded clusters with no fourth node, the
 * "during" window lasting as long as the median plan. Its ratios show how far this
 * measurement moves with no rebalance at all (reported, not part of the target). Over
 * NATS the same, on two fresh clusters: there the steady rate of one run fell by a
 * sixth from one 2 s window to the next, and by more than a quarter over two, with no
 * node joining (ARCHITECTURE.md, "A twelfth look").
 */
import { connect, type NodeConnectionOptions } from '@nats-io/transport-node';
import { createMemoryCluster, createNode, JetStreamEventStore, type NatstateNode, type EventStore, type RecordedEvent } from '../lib/index.js';
import { actors } from '../examples/bank/actors.js';
import { gc, round, type Benchmark, type BenchContext } from './harness.js';

type Bank = typeof actors;
const ACTORS = 10_000;
const EVENTS = 10;
const IN_FLIGHT = 256;
/** Streams read at once when verifying (hundreds of concurrent JetStream consumers can time out on 2 cores). */
const VERIFY_BATCH = 100;
const CLUSTER = { shards: 128, heartbeatMs: 100, failureTimeoutMs: 2000, leaseMs: 2000, planIntervalMs: 100 };

interface Rig {
  nodes: NatstateNode<Bank>[];
  add(): Promise<NatstateNode<Bank>>;
  store(): Promise<EventStore>;
  close(): Promise<void>;
}

async function memoryRig(): Promise<Rig> {
  const cluster = await createMemoryCluster({ actors, namespace: 'b9', nodes: 3, cluster: CLUSTER, snapshotEvery: 0, passivateAfterMs: 0 });
  return { nodes: cluster.nodes as NatstateNode<Bank>[], add: () => cluster.addNode(), store: async () => cluster.network.store('b9'), close: () => cluster.close() };
}

async function natsRig(context: BenchContext): Promise<Rig> {
  const servers = await context.natsUrl();
  const namespace = `b9-${Date.now()}`;
  const nodes: NatstateNode<Bank>[] = [];
  const add = async () => {
    const node = await createNode({ actors, namespace, nodeId: `n${nodes.length + 1}`, nats: { servers } as NodeConnectionOptions, cluster: CLUSTER, snapshotEvery: 0, passivateAfterMs: 0 });
    nodes.push(node);
    return node;
  };
  for (let i = 0; i < 3; i++) await add();
  const nc = await connect({ servers });
  return {
    nodes,
    add,
    store: () => JetStreamEventStore.create(nc, { namespace }),
    close: async () => {
      await Promise.all(nodes.map((n) => n.close()));
      await nc.close();
    },
  };
}

async function settle(nodes: NatstateNode<Bank>[], timeoutMs: number, minEpoch: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const views = nodes.map((n) => n.cluster());
    const ids = nodes.map((n) => n.id).sort();
    if (
      views.every((v) => v.epoch >= minEpoch && v.epoch === views[0].epoch && v.migrations.running === 0 && JSON.stringify(v.members) === JSON.stringify(ids)) &&
      views.reduce((n, v) => n + v.ownedShards, 0) === CLUSTER.shards &&
      views.every((v) => v.ownedShards > 0) &&
      // The plan is done: the leader's supervisor committed it.
      views.some((v) => v.rebalance?.status === 'Idle' && (v.rebalance.lastEpoch ?? 0) >= minEpoch)
    ) {
      return true;
    }
    // Every 20 ms: the plan's time to within 20 ms of 3 s, and this check (four nodes'
    // status, their members compared as JSON) kept out of the throughput it measures: the
    // "before" window has no such polling.
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

/** A small rebalance (1,000 actors, 3 → 4 nodes), so the measured ones run optimised code. */
async function warmUp(): Promise<void> {
  const cluster = await createMemoryCluster({ actors, namespace: 'b9-warm-up', nodes: 3, cluster: CLUSTER, snapshotEvery: 0, passivateAfterMs: 0 });
  try {
    for (let e = 0; e < 3; e++) await Promise.all(Array.from({ length: 1000 }, (_, i) => cluster.nodes[i % 3].send('account', `w-${i}`, { type: 'DEPOSIT', amount: 1 })));
    const epoch = cluster.nodes[0].cluster().epoch;
    await cluster.addNode();
    await settle(cluster.nodes as NatstateNode<Bank>[], 30_000, epoch + 1);
  } finally {
    await cluster.close();
  }
}

type Trial = Awaited<ReturnType<typeof run>>;

/** Nothing lost, doubled, missing or applied beyond what was sent. */
const intact = (t: Trial) => t.lost === 0 && t.duplicated === 0 && t.gaps === 0 && t.overApplied === 0;

/**
 * `count` runs on fresh rigs: the one with the median throughput ratio, and every ratio
 * and time. With `controlMs`, no node joins (see `run`).
 */
async function trials(count: number, makeRig: () => Promise<Rig>, targetSeconds: number, controlMs?: number): Promise<{ median: Trial; all: Trial[]; pass: boolean }> {
  const all: Trial[] = [];
  for (let i = 0; i < count; i++) {
    const rig = await makeRig();
    all.push(await run(rig, targetSeconds, controlMs).finally(() => rig.close()));
  }
  const median = [...all].sort((a, b) => a.throughputRatio - b.throughputRatio)[Math.floor(count / 2)];
  const clean = all.every((t) => t.settled && t.seconds <= targetSeconds && intact(t));
  return { median, all, pass: clean && median.throughputRatio >= 0.8 };
}

const sum = (results: readonly Trial[], key: 'lost' | 'duplicated' | 'gaps' | 'overApplied' | 'erroredCommands' | 'failedMigrations') => results.reduce((n, r) => n + r[key], 0);

/** `controlMs`: no node joins; the "during" window is that long instead (the control). */
async function run(rig: Rig, targetSeconds: number, controlMs?: number) {
  const ids = Array.from({ length: ACTORS }, (_, i) => `acc-${i}`);
  const acknowledged = new Float64Array(ACTORS);
  // 10 events per actor, spread over the three nodes.
  for (let e = 0; e < EVENTS; e++) {
    for (let i = 0; i < ACTORS; i += 1000) {
      await Promise.all(ids.slice(i, i + 1000).map((id, j) => rig.nodes[(i + j + e) % 3].send('account', id, { type: 'DEPOSIT', amount: 1 }).then(() => (acknowledged[i + j] += 1))));
    }
  }

  // Steady load: IN_FLIGHT commands at all times, from the nodes there before the join,
  // to random actors. Each client stays on the node it started on: the fourth node shares
  // this process's one thread, so clients moved to it at the join would add no capacity,
  // only hops (ARCHITECTURE.md, "A thirteenth look"). Before and during then measure the
  // same clients.
  const senders = [...rig.nodes];
  let stop = false;
  let done = 0;
  let errors = 0;
  let seq = 0;
  const worker = async (w: number) => {
    const node = senders[w % senders.length];
    while (!stop) {
      // Embedded sends settle in microtasks: yield so that timers (heartbeats,
      // planning, migrations, this benchmark's own clock) get their turn after every command.
      await new Promise((r) => setImmediate(r));
      const i = (seq++ * 7919) % ACTORS;
      try {
        const r = await node.send('account', ids[i], { type: 'DEPOSIT', amount: 1 }, { commandId: `load-${w}-${seq}` });
        // Each command id is sent once; `duplicate` only says the router retried it (a
        // timeout) and the owner had applied it already: still one deposit.
        if (r.accepted) acknowledged[i] += 1;
        done++;
      } catch {
        errors++;
      }
    }
  };
  const load = Promise.all(Array.from({ length: IN_FLIGHT }, (_, w) => worker(w)));
  // Warm up for 3 s, then measure the steady rate over 4 s (1 s samples right after the
  // preload varied by a third from run to run; after a 1 s warm-up the control, with no
  // node joining, read 0.76-1.01, after 3 s 0.92-1.19; two consecutive 2 s windows
  // differed by up to a fifth, hence 4 s). Both windows start from a collected heap: a
  // major collection of this heap stops everything for 0.1-0.2 s, and whichever window
  // it fell in lost up to a tenth of its rate.
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /** Commands per second over `ms`, from a collected heap. */
  const rate = async (ms: number) => {
    gc();
    const [from, count] = [performance.now(), done];
    await sleep(ms);
    return ((done - count) / (performance.now() - from)) * 1000;
  };
  await sleep(3000);
  const beforePerSecond = await rate(4000);

  const epoch = rig.nodes[0].cluster().epoch;
  gc();
  const start = performance.now();
  const doneAtStart = done;
  let settled = true;
  if (controlMs === undefined) {
    await rig.add();
    settled = await settle(rig.nodes, 60_000, epoch + 1);
  } else {
    await sleep(controlMs);
  }
  const seconds = (performance.now() - start) / 1000;
  const duringPerSecond = ((done - doneAtStart) / (performance.now() - start)) * 1000;
  // For reference: the rate of the four nodes once the plan is done (all of them share this
  // process, so a fourth node adds work but no CPU).
  await sleep(500);
  const afterPerSecond = await rate(2000);
  stop = true;
  await load;

  // Verify: every balance equals its acknowledged deposits; every history gapless, no command twice.
  const store = await rig.store();
  let lost = 0;
  let duplicated = 0;
  let gaps = 0;
  let overApplied = 0;
  const check = rig.nodes[0];
  for (let i = 0; i < ACTORS; i += VERIFY_BATCH) {
    await Promise.all(
      ids.slice(i, i + VERIFY_BATCH).map(async (id, j) => {
        const s = await check.state('account', id);
        if (s.context.balance < acknowledged[i + j]) lost += acknowledged[i + j] - s.context.balance;
        const seen = new Set<string>();
        let version = 0;
        for await (const e of store.read({ type: 'account', id }) as AsyncIterable<RecordedEvent>) {
          if (e.version !== ++version) gaps++;
          if (seen.has(e.commandId)) duplicated++;
          seen.add(e.commandId);
        }
        // More deposits than were acknowledged: only those that failed with an error may be in.
        if (s.context.balance > acknowledged[i + j] + errors) overApplied++;
      }),
    );
  }
  const migrated = rig.nodes.reduce((n, node) => n + node.cluster().migrations.completed, 0);
  const failedMigrations = rig.nodes.reduce((n, node) => n + node.cluster().migrations.failed, 0);
  const throughputRatio = duringPerSecond / beforePerSecond;
  return {
    seconds: round(seconds),
    settled,
    pass: settled && seconds <= targetSeconds && throughputRatio >= 0.8 && lost === 0 && duplicated === 0 && gaps === 0 && overApplied === 0,
    throughputRatio: round(throughputRatio),
    beforePerSecond: Math.round(beforePerSecond),
    duringPerSecond: Math.round(duringPerSecond),
    afterPerSecond: Math.round(afterPerSecond),
    migrated,
    failedMigrations,
    lost,
    duplicated,
    gaps,
    overApplied,
    erroredCommands: errors,
  };
}

export const b9: Benchmark = {
  id: 'B9',
  title: 'rebalance 10,000 actors from 3 to 4 nodes under load',
  goal: '<= 3 s embedded, <= 10 s NATS; during/before >= 0.8; 0 lost/dup',
  needsNats: true,
  async run(context) {
    await warmUp();
    const embedded = await trials(5, memoryRig, 3);
    const control = await trials(3, memoryRig, 3, embedded.median.seconds * 1000);
    const overNats = await trials(3, () => natsRig(context), 10);
    const natsControl = await trials(2, () => natsRig(context), 10, overNats.median.seconds * 1000);
    const all = [...embedded.all, ...overNats.all];
    const e = embedded.median;
    const n = overNats.median;
    return {
      value: e.seconds,
      unit: 's embedded',
      target: 3,
      pass: embedded.pass && overNats.pass && control.all.every(intact) && natsControl.all.every(intact),
      natsSeconds: n.seconds,
      embeddedThroughputRatio: e.throughputRatio,
      natsThroughputRatio: n.throughputRatio,
      embeddedRuns: embedded.all.map((t) => `${t.throughputRatio}/${t.seconds}s`).join(' '),
      natsRuns: overNats.all.map((t) => `${t.throughputRatio}/${t.seconds}s`).join(' '),
      controlRatios: control.all.map((t) => t.throughputRatio).join(' '),
      natsControlRatios: natsControl.all.map((t) => t.throughputRatio).join(' '),
      embeddedMigrated: e.migrated,
      natsMigrated: n.migrated,
      failedMigrations: sum(all, 'failedMigrations'),
      lost: sum(all, 'lost'),
      duplicated: sum(all, 'duplicated'),
      gaps: sum(all, 'gaps'),
      overApplied: sum(all, 'overApplied'),
      erroredCommands: sum(all, 'erroredCommands'),
      embeddedPerSecondBefore: e.beforePerSecond,
      embeddedPerSecondDuring: e.duringPerSecond,
      embeddedPerSecondAfter: e.afterPerSecond,
      natsPerSecondBefore: n.beforePerSecond,
      natsPerSecondDuring: n.duringPerSecond,
      natsPerSecondAfter: n.afterPerSecond,
    };
  },
};
