/**
 * Live migration against a real nats-server (spawned by the harness on a free port):
 * every node has its own NATS connection, events go to JetStream, commands and
 * migrations travel over NATS requests. Mirrors spec/cluster/migration.spec.ts (the
 * embedded cluster) with 1,000 accounts under continuous deposits from every node:
 *
 * 1. a 4th node joins under load;
 * 2. a node leaves gracefully under load;
 * 3. a node process joins and is SIGKILLed while migrations toward it may be in flight;
 * 4. a source process is SIGKILLed while it migrates actors away, then restarted under
 *    the same node id: it closes the migrations its journal shows unfinished.
 *
 * After each step: every balance equals the sum of the acknowledged deposits, every
 * stream is gapless with no command applied twice, and no migration is left running.
 * A send that fails during churn is retried with the same command id until it is
 * acknowledged (a retry of an applied command answers `duplicate: true`), so every
 * deposit sent ends acknowledged exactly once and the ledger stays exact.
 */
import { expect } from 'chai';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { connect } from '@nats-io/transport-node';
import { DeliverPolicy, jetstreamManager } from '@nats-io/jetstream';
import { createNode, JetStreamEventStore, type ActorMigration, type ClusterStatus, type NatstateNode } from '../../lib/index.js';
import { decode } from '../../lib/codec/codec.js';
import { isCommitRecord, type CommitRecord } from '../../lib/codec/messages.js';
import { Subjects } from '../../lib/subjects.js';
import { actors } from '../../examples/bank/actors.js';
import { NatsServer } from '../support/nats-server.js';
import { NodeProcess } from '../support/node-process.js';
import { eventually } from '../support/eventually.js';
import { journaledMigrations } from '../support/migration-journal.js';

type Bank = typeof actors;

/** Short timings (as in node-processes.spec.ts) so joins, leaves and failures settle within a spec. */
const CLUSTER = {
  shards: 64,
  heartbeatMs: 100,
  failureTimeoutMs: 1000,
  leaseMs: 1000,
  planIntervalMs: 100,
  routeDeadlineMs: 8000,
  requestTimeoutMs: 1000,
};
const MIGRATION = { transferTimeoutMs: 1000, holdMs: 3000 };
const ACCOUNTS = 1000;
/** Deposits in flight per sending node. */
const IN_FLIGHT = 100;
const IDS = Array.from({ length: ACCOUNTS }, (_, i) => `acc-${i}`);
const VERBOSE = process.env.NATSTATE_SPEC_VERBOSE === '1';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** What was acknowledged, per account: the sum of the deposits and how many there were. */
class Ledger {
  readonly accounts = new Map<string, { sum: number; count: number }>();
  add(id: string, amount: number): void {
    const entry = this.accounts.get(id) ?? { sum: 0, count: 0 };
    this.accounts.set(id, { sum: entry.sum + amount, count: entry.count + 1 });
  }
  get(id: string): { sum: number; count: number } {
    return this.accounts.get(id) ?? { sum: 0, count: 0 };
  }
}

/**
 * Continuous deposits from each node it runs on: IN_FLIGHT at a time, walking the accounts
 * round after round. A deposit that fails is retried, same command id, until acknowledged.
 */
class DepositLoad {
  private readonly loops = new Map<string, { stop: boolean; done: Promise<void> }>();
  /** Next position per node id, so command ids stay unique when a node's loop restarts. */
  private readonly positions = new Map<string, number>();
  readonly errors = new Map<string, number>();
  /** Replies `duplicate: true`: a retry (ours or the router's, after a lost reply) of a deposit already applied. */
  duplicates = 0;
  acknowledged = 0;
  private abandoned = false;
  /** Things that must never happen: a deposit refused, or never acknowledged. */
  readonly anomalies: string[] = [];

  constructor(private readonly ledger: Ledger) {}

  add(node: NatstateNode<Bank>): void {
    const loop = { stop: false, done: Promise.resolve() };
    loop.done = this.run(node, loop);
    this.loops.set(node.id, loop);
  }

  /** Stops one node's loop once its deposits in flight are acknowledged. */
  async remove(node: NatstateNode<Bank>): Promise<void> {
    const loop = this.loops.get(node.id);
    if (!loop) return;
    loop.stop = true;
    await loop.done;
    this.loops.delete(node.id);
  }

  /** Stops every loop; `abandon`: a failed deposit is not retried any more (teardown only). */
  async stop(abandon = false): Promise<void> {
    if (abandon) this.abandoned = true;
    for (const loop of this.loops.values()) loop.stop = true;
    await Promise.all([...this.loops.values()].map((l) => l.done));
    this.loops.clear();
  }

  private async run(node: NatstateNode<Bank>, loop: { stop: boolean }): Promise<void> {
    // IN_FLIGHT workers per node walk the accounts round after round; each deposit has
    // its own command id (node, round, account).
    let next = this.positions.get(node.id) ?? 0;
    const worker = async () => {
      while (!loop.stop) {
        const position = next++;
        const round = Math.floor(position / ACCOUNTS);
        const i = position % ACCOUNTS;
        // Let timers (heartbeats, planning, transfer timeouts) run between deposits.
        if (i % IN_FLIGHT === 0) await tick();
        await this.deposit(node, IDS[i], 1 + ((round + i) % 5), `${node.id}-r${round}-${i}`);
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    this.positions.set(node.id, next);
  }

  private async deposit(node: NatstateNode<Bank>, id: string, amount: number, commandId: string): Promise<void> {
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        const reply = await node.send('account', id, { type: 'DEPOSIT', amount }, { commandId });
        if (!reply.accepted) {
          this.anomalies.push(`${commandId} (${id}) was not accepted: ${JSON.stringify(reply)}`);
          return;
        }
        if (reply.duplicate) this.duplicates++;
        this.acknowledged++;
        this.ledger.add(id, amount);
        return;
      } catch (error) {
        const name = error instanceof Error ? error.name : String(error);
        this.errors.set(name, (this.errors.get(name) ?? 0) + 1);
        if (this.abandoned) return;
        if (Date.now() - started > 40_000) {
          this.anomalies.push(`${commandId} (${id}) never acknowledged after ${attempt} attempts: ${String(error)}`);
          return;
        }
        await sleep(Math.min(250, 20 * attempt));
      }
    }
  }
}

/**
 * Reads every commit of the namespace's event stream straight from JetStream (one ordered
 * consumer over the whole stream) and groups them by actor. Stricter than replaying through
 * the store, which skips a commit whose versions it has already seen.
 */
async function readAllCommits(url: string, namespace: string): Promise<Map<string, CommitRecord[]>> {
  const subjects = new Subjects(namespace);
  const bySubject = new Map(IDS.map((id) => [subjects.events({ type: 'account', id }), id]));
  // Streams of other types (e.g. the framework's own) share the event stream: only accounts count here.
  const accountSubject = subjects.events({ type: 'account', id: 'x' }).slice(0, -1);
  const byActor = new Map<string, CommitRecord[]>();
  const nc = await connect({ servers: url });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(subjects.eventStream);
    const last = info.state.last_seq;
    if (info.state.messages === 0) return byActor;
    const consumer = await jsm.jetstream().consumers.get(subjects.eventStream, { deliver_policy: DeliverPolicy.All });
    const messages = await consumer.consume({ max_messages: 1024 });
    try {
      for await (const msg of messages) {
        const id = bySubject.get(msg.subject);
        if (id === undefined && msg.subject.startsWith(accountSubject)) throw new Error(`a commit on an unexpected subject ${msg.subject}`);
        if (id !== undefined) {
          const list = byActor.get(id) ?? [];
          list.push(decode(msg.data, isCommitRecord, `commit at ${msg.seq}`));
          byActor.set(id, list);
        }
        if (msg.seq >= last) break;
      }
    } finally {
      messages.stop();
    }
  } finally {
    await nc.close();
  }
  return byActor;
}

function summarizeMoves(moves: readonly { from: string | null; to: string }[]): string {
  const counts = new Map<string, number>();
  for (const m of moves) counts.set(`${m.from}->${m.to}`, (counts.get(`${m.from}->${m.to}`) ?? 0) + 1);
  return [...counts].map(([k, n]) => `${k}:${n}`).join(' ');
}

/** Failed migrations, one line per source → destination and reason (numbers elided), with a count. */
function failures(migrations: readonly ActorMigration[]): string[] {
  const counts = new Map<string, number>();
  for (const m of migrations) {
    if (m.status !== 'Failed') continue;
    const line = `${m.from}->${m.to}: ${(m.error ?? '').replace(/\d+/g, '#')}`;
    counts.set(line, (counts.get(line) ?? 0) + 1);
  }
  return [...counts].map(([line, n]) => `${n}x ${line}`);
}

describe('live migration on a real nats-server', function () {
  this.timeout(60_000);
  let server: NatsServer;
  const namespace = `migration-${process.pid}`;
  /** In-process nodes still running, in the order they joined. */
  const nodes: NatstateNode<Bank>[] = [];
  /** In-process nodes that left (their migration counts still matter). */
  const departed: NatstateNode<Bank>[] = [];
  const processes: NodeProcess[] = [];
  const ledger = new Ledger();
  const load = new DepositLoad(ledger);
  /** Every migration that ended, on every in-process node, as `onMigration` reported it. */
  const ended: ActorMigration[] = [];
  let reported = 0;
  /** Every shard map the leaders published, for the verbose report. */
  const plans: string[] = [];

  const startNode = async (nodeId: string) => {
    const node = await createNode({
      actors,
      namespace,
      nodeId,
      nats: { servers: server.url },
      cluster: {
        ...CLUSTER,
        migration: { ...MIGRATION, onMigration: (m) => ended.push(m) },
        onPlan: (plan) => plans.push(`${Date.now() % 100_000} ${nodeId}: epoch ${plan.epoch} ${summarizeMoves(plan.moves)}`),
      },
      onError: () => {},
    });
    nodes.push(node);
    return node;
  };
  const liveProcesses = () => processes.filter((p) => p.running);

  /**
   * Settled: every live node routes with one epoch, agrees on the members, runs no
   * migration, one leader, and all shards are owned, balanced over the members.
   */
  async function settled(timeoutMs = 20_000): Promise<ClusterStatus[]> {
    const ids = [...nodes.map((n) => n.id), ...liveProcesses().map((p) => p.nodeId)].sort();
    return eventually(
      async () => [...nodes.map((n) => n.cluster()), ...((await Promise.all(liveProcesses().map((p) => p.cluster()))) as unknown as ClusterStatus[])],
      (views) => {
        const owned = views.map((v) => v.ownedShards);
        return (
          new Set(views.map((v) => v.epoch)).size === 1 &&
          views.every((v) => JSON.stringify(v.members) === JSON.stringify(ids) && v.migrations.running === 0) &&
          owned.reduce((a, b) => a + b, 0) === CLUSTER.shards &&
          Math.max(...owned) - Math.min(...owned) <= 1 &&
          views.filter((v) => v.isLeader).length === 1
        );
      },
      timeoutMs,
      `cluster of ${ids.join(', ')} settled`,
    );
  }

  const sent = () => load.acknowledged;
  /** Waits until `more` deposits beyond now were acknowledged. */
  const loadFor = async (more: number) => {
    const target = sent() + more;
    await eventually(sent, (n) => n >= target, 30_000, `${more} more deposits acknowledged`);
  };

  /** No migration on any in-process node is running, and each one that started was reported final. */
  function migrationsFinal(): void {
    for (const node of [...nodes, ...departed]) {
      const { running, completed, failed } = node.cluster().migrations;
      expect(running, `migrations running on ${node.id}`).to.equal(0);
      expect(ended.filter((m) => m.from === node.id).length, `migrations reported by ${node.id}`).to.equal(completed + failed);
    }
    const open = ended.filter((m) => m.status !== 'Deleted' && m.status !== 'Failed');
    expect(open, 'migrations not in a final status').to.deep.equal([]);
  }

  /** Every balance equals the acknowledged deposits; every stream is gapless without doubled commands. */
  async function ledgerIntact(): Promise<void> {
    expect(load.anomalies, 'refused or unacknowledged deposits').to.deep.equal([]);
    const wrong: string[] = [];
    for (let i = 0; i < IDS.length; i += 100) {
      await Promise.all(
        IDS.slice(i, i + 100).map(async (id, j) => {
          const via = nodes[(i + j) % nodes.length];
          const state = await via.state('account', id);
          const want = ledger.get(id);
          if (state.context.balance !== want.sum || state.context.deposits !== want.count || state.version !== want.count) {
            wrong.push(`${id} via ${via.id}: balance ${state.context.balance}/${want.sum}, deposits ${state.context.deposits}/${want.count}, version ${state.version}`);
          }
        }),
      );
    }
    expect(wrong, 'balances that differ from the acknowledged deposits').to.deep.equal([]);

    const commits = await readAllCommits(server.url, namespace);
    const broken: string[] = [];
    for (const id of IDS) {
      const versions: number[] = [];
      const commandIds: string[] = [];
      let sum = 0;
      for (const commit of commits.get(id) ?? []) {
        const base = commit.version - commit.events.length;
        commit.events.forEach((event, k) => {
          versions.push(base + k + 1);
          commandIds.push(commit.commandIds[k]);
          sum += (event as { amount?: number }).amount ?? 0;
        });
      }
      const want = ledger.get(id);
      if (versions.some((v, k) => v !== k + 1)) broken.push(`${id}: versions not 1..n: ${versions.join(',')}`);
      if (new Set(commandIds).size !== commandIds.length) broken.push(`${id}: a command id stored twice`);
      if (versions.length !== want.count || sum !== want.sum) broken.push(`${id}: ${versions.length} events summing ${sum}, acknowledged ${want.count} summing ${want.sum}`);
    }
    expect(broken, 'streams that are not clean').to.deep.equal([]);
  }

  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  /** With NATSTATE_SPEC_VERBOSE=1: event loop delay, load and migration counts of a step. */
  const report = (step: string) => {
    if (!VERBOSE) return;
    console.log(`    [${step}] event loop delay p50 ${(lag.percentile(50) / 1e6).toFixed(0)} ms, p99 ${(lag.percentile(99) / 1e6).toFixed(0)} ms, max ${(lag.max / 1e6).toFixed(0)} ms`);
    lag.reset();
    for (const plan of plans.splice(0)) console.log(`      plan ${plan}`);
    for (const line of failures(ended.slice(reported))) console.log(`      failed ${line}`);
    reported = ended.length;
    const counts = [...nodes, ...departed].map((n) => `${n.id}:${JSON.stringify(n.cluster().migrations)}`).join(' ');
    console.log(`    [${step}] acknowledged ${load.acknowledged}, duplicates ${load.duplicates}, errors ${JSON.stringify(Object.fromEntries(load.errors))}; ${counts}`);
  };

  before(async () => {
    server = await NatsServer.start();
    // One at a time, so the first becomes leader and the others join its map.
    for (const id of ['n1', 'n2', 'n3']) await startNode(id);
    await settled();
  });

  after(async () => {
    await load.stop(true);
    await Promise.all(nodes.splice(0).map((n) => n.close().catch(() => undefined)));
    await Promise.all(processes.map((p) => p.kill()));
    await server?.stop();
  });

  it('moves resident actors warm to a 4th node joining under continuous deposits: nothing lost, nothing doubled', async () => {
    for (const node of nodes) load.add(node);
    await loadFor(3 * ACCOUNTS);
    const residentBefore = nodes.reduce((n, node) => n + node.cluster().residentActors, 0);
    expect(residentBefore).to.equal(ACCOUNTS);

    const joined = await startNode('n4');
    load.add(joined);
    await settled();
    await loadFor(4 * ACCOUNTS);
    await load.stop();
    report('join');

    // Nothing lost or doubled, nothing left running...
    migrationsFinal();
    await ledgerIntact();
    // ...and the actors moved warm.
    const views = nodes.map((n) => n.cluster());
    expect(views.reduce((n, v) => n + v.migrations.completed, 0), 'migrations completed').to.be.greaterThan(0);
    expect(ended.filter((m) => m.to === 'n4' && m.status === 'Deleted').length, 'migrations to the new node').to.be.greaterThan(0);
    expect(joined.cluster().residentActors, 'actors resident on the new node').to.be.greaterThan(0);
    expect(failures(ended), 'failed migrations').to.deep.equal([]);
    expect(views.reduce((n, v) => n + v.migrations.failed, 0), 'migrations failed').to.equal(0);
  });

  it('hands a gracefully leaving node’s actors to the others under continuous deposits', async () => {
    const endedBefore = ended.length;
    const failedBefore = nodes.reduce((n, node) => n + node.cluster().migrations.failed, 0);
    for (const node of nodes) load.add(node);
    await loadFor(2 * ACCOUNTS);
    const leaving = nodes.find((n) => n.id === 'n2')!;
    expect(leaving.cluster().residentActors, 'actors resident on the leaving node').to.be.greaterThan(0);
    const completedBefore = leaving.cluster().migrations.completed;
    // Its own sends end first; the others keep depositing while it leaves.
    await load.remove(leaving);
    // Every account has been used, so each account of its shards is resident here.
    const resident = leaving.cluster().residentActors;
    nodes.splice(nodes.indexOf(leaving), 1);
    departed.push(leaving);
    await leaving.leave();
    await settled();
    await loadFor(3 * ACCOUNTS);
    await load.stop();
    report('leave');

    migrationsFinal();
    await ledgerIntact();
    // Warm, all of them: each resident actor was migrated, none dropped for a replay elsewhere.
    expect(failures(ended.slice(endedBefore)), 'failed migrations').to.deep.equal([]);
    expect([...nodes, ...departed].reduce((n, node) => n + node.cluster().migrations.failed, 0) - failedBefore, 'migrations failed').to.equal(0);
    expect(leaving.cluster().migrations.completed - completedBefore, 'actors migrated from the leaving node').to.equal(resident);
  });

  it('re-plans when a joining destination is SIGKILLed with migrations toward it in flight: no deposit lost or doubled', async () => {
    for (const node of nodes) load.add(node);
    await loadFor(2 * ACCOUNTS);
    const endedBefore = ended.length;

    // Killed as soon as a source is migrating (toward it: nothing else moves), or once it owns shards.
    const victim = await NodeProcess.start({ natsUrl: server.url, namespace, nodeId: 'n5', cluster: { ...CLUSTER, migration: MIGRATION } });
    processes.push(victim);
    await eventually(
      // Only n5 joining changes the map: fewer shards owned here means some went to n5.
      () => nodes.reduce((n, node) => n + node.cluster().migrations.running, 0) > 0 || nodes.reduce((n, node) => n + node.cluster().ownedShards, 0) < CLUSTER.shards,
      (ready) => ready,
      10_000,
      'migrations toward n5 started',
    );
    const runningAtKill = nodes.reduce((n, node) => n + node.cluster().migrations.running, 0);
    await victim.kill('SIGKILL');

    await settled();
    await loadFor(2 * ACCOUNTS);
    await load.stop();
    report('kill');
    if (VERBOSE) {
      const toVictim = ended.slice(endedBefore).filter((m) => m.to === 'n5');
      console.log(`    [kill] running at kill ${runningAtKill}; toward n5: ${toVictim.filter((m) => m.status === 'Deleted').length} deleted, ${toVictim.filter((m) => m.status === 'Failed').length} failed`);
    }

    expect(ended.slice(endedBefore).filter((m) => m.to === 'n5').length, 'migrations toward the killed node').to.be.greaterThan(0);
    expect(nodes.map((n) => n.cluster().members)).to.deep.equal(nodes.map(() => nodes.map((n) => n.id).sort()));
    migrationsFinal();
    await ledgerIntact();
  });

  it('survives a source SIGKILLed mid-migration; restarted under its id, it closes what its journal left unfinished', async () => {
    // Armed below: as soon as its first migration pauses, before any request of it leaves,
    // n6 loses its requests to other nodes (a partition) and kills itself when the store
    // holds one of them unfinished. (Armed at the first Deleted instead, the partition came
    // too late when every batch was already sent by then: all of them finished, nothing was
    // left unfinished, and the spec failed once in CI.)
    const source = await NodeProcess.start({ natsUrl: server.url, namespace, nodeId: 'n6', cluster: { ...CLUSTER, migration: MIGRATION } });
    processes.push(source);
    await settled();
    // Deposits to every account make n6's share of them resident there.
    for (const node of nodes) load.add(node);
    await loadFor(2 * ACCOUNTS);
    expect((await source.cluster()).residentActors, 'actors resident on the source').to.be.greaterThan(0);

    // A graceful leave makes n6 migrate all its actors away; it dies part way through.
    await source.armCrash('Paused');
    await source.kill('SIGTERM');
    await settled();
    await loadFor(2 * ACCOUNTS);
    await load.stop();
    report('source killed');
    migrationsFinal();
    await ledgerIntact();

    // The crashed run's journal shows migrations that never ended...
    const nc = await connect({ servers: server.url });
    const store = await JetStreamEventStore.create(nc, { namespace });
    const unfinished = () => journaledMigrations(store, 'n6');
    try {
      const before = await unfinished();
      if (VERBOSE) console.log(`    [source killed] journal of n6: ${before.started} started, ${before.unfinished.length} unfinished`);
      expect(before.unfinished.length, 'migrations n6 left unfinished when it was killed').to.be.greaterThan(0);
      // ...and the restarted node closes every one of them as Failed (their actors recover from the store).
      const restarted = await NodeProcess.start({ natsUrl: server.url, namespace, nodeId: 'n6', cluster: { ...CLUSTER, migration: MIGRATION } });
      processes.push(restarted);
      expect((await unfinished()).unfinished, 'migrations left unfinished after the restart').to.deep.equal([]);
      expect((await restarted.cluster()).migrations.failed).to.equal(before.unfinished.length);
      await settled();
      for (const node of nodes) load.add(node);
      await loadFor(ACCOUNTS);
      await load.stop();
      await ledgerIntact();
    } finally {
      await store.close();
      await nc.close();
    }
  });
});

describe('migration pace over NATS', function () {
  this.timeout(60_000);
  let server: NatsServer;
  const nodes: NatstateNode<Bank>[] = [];

  before(async () => {
    server = await NatsServer.start();
  });

  after(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.close().catch(() => undefined)));
    await server?.stop();
  });

  it('paces a source at 150 migrations a second by default, 16 to a batch', async () => {
    const ended: number[] = [];
    const start = (nodeId: string) =>
      createNode({
        actors,
        namespace: `pace-${process.pid}`,
        nodeId,
        nats: { servers: server.url },
        cluster: { ...CLUSTER, shards: 2, migration: { onMigration: () => ended.push(performance.now()) } },
      }).then((node) => (nodes.push(node), node));
    const first = await start('p1');
    for (let i = 0; i < 120; i++) await first.send('account', `acc-${i}`, { type: 'DEPOSIT', amount: 1 });
    const second = await start('p2');
    await eventually(
      async () => [first.cluster(), second.cluster()],
      (views) => views.every((v) => v.epoch === views[0].epoch && v.ownedShards === 1 && v.migrations.running === 0),
      20_000,
    );
    expect(ended.length).to.be.greaterThan(40);
    // Batches of 16 start 16 / 150 s (107 ms) apart: the last one ends at least
    // (n - 16) / 150 s after the first. At the former default of 200 a second the gap
    // would be a quarter shorter than that bound.
    expect(ended[ended.length - 1] - ended[0]).to.be.at.least(((ended.length - 16) * 1000) / 150 - 5);
    for (let i = 0; i < 120; i++) expect((await second.state('account', `acc-${i}`)).context.balance).to.equal(1);
  });
});
