/**
 * `natstate demo` (also `npm start`): a cluster moving actors around under load, with
 * nothing lost. Three nodes in this process (embedded in memory by default, or each on
 * its own NATS connection with `--nats`) host the bank example's accounts; deposits
 * flow from every node while a 4th node joins, one node leaves gracefully and another
 * is killed. At the end every account's balance and deposit count are checked against
 * the deposits the cluster acknowledged.
 *
 * The load is a careful client: a deposit whose outcome is unknown (the node it went
 * through was killed, a timeout) is sent again with the same command id through another
 * node until it is acknowledged, so each deposit counts once however often it was sent.
 */
import { createServer } from 'node:net';
import type { NatsConnection } from '@nats-io/nats-core';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { v4 as uuid } from 'uuid';
import { actors } from '../../examples/bank/actors.js';
import { createMemoryCluster } from '../memory-cluster.js';
import { crashNode, createNode, type NatstateNode, type NodeOptions } from '../node.js';
import { UsageError, integer, natsServers, parse } from './args.js';
import { connectNats, subjectsOf } from './connection.js';
import { NATS_AUTH_OPTIONS, natsAuth, natsAuthHelp, type NatsAuth } from './nats-auth.js';
import { count, duration } from './format.js';

export const usage = `Usage: natstate demo [--actors N] [--nats URL] [--json] [--inspect]

Runs a 3-node cluster in this process, opens N bank accounts and keeps deposits flowing
from every node while a 4th node joins, one node leaves gracefully and another is
killed; then checks every balance against the acknowledged deposits. Embedded in memory
by default (no infrastructure); --nats runs the same nodes on NATS JetStream.

Options:
  --actors N                 accounts (default 1000)
  --nats URL                 run on NATS JetStream, e.g. nats://127.0.0.1:4222 (a fresh
                             namespace, in memory storage, deleted at the end)
${natsAuthHelp(29)}
  --json                     progress on stderr; last line of stdout is one JSON object:
                             { nodes, actors, commands, migrated, failedMigrations, lost,
                               duplicated, verified, durationMs }
  --inspect                  stream every machine to the Stately inspector and print its URL
  --inspect-port PORT        port of the local inspector server (default 8080)
  --shards N                 shards (default 64)
  --concurrency N            deposits in flight per node (default 16)
  --step-ms MS               how long deposits flow between two steps (default 1500)
  --heartbeat-ms MS          membership heartbeat (default 250)
  --failure-timeout-ms MS    a node silent this long is down (default 2000)

Exit code 0 only when every account verified with nothing lost or duplicated.

Examples:
  natstate demo
  natstate demo --actors 10000 --json
  natstate demo --nats nats://127.0.0.1:4222 --inspect`;

const OPTIONS = {
  actors: { type: 'string' },
  nats: { type: 'string' },
  ...NATS_AUTH_OPTIONS,
  json: { type: 'boolean' },
  inspect: { type: 'boolean' },
  'inspect-port': { type: 'string' },
  shards: { type: 'string' },
  concurrency: { type: 'string' },
  'step-ms': { type: 'string' },
  'heartbeat-ms': { type: 'string' },
  'failure-timeout-ms': { type: 'string' },
} as const;

export interface DemoConfig {
  readonly actors: number;
  /** NATS servers; absent: embedded in memory. */
  readonly servers?: string[];
  /** Credentials and TLS files for those servers. */
  readonly auth?: NatsAuth;
  readonly shards: number;
  readonly concurrency: number;
  readonly stepMs: number;
  readonly heartbeatMs: number;
  readonly failureTimeoutMs: number;
  readonly inspect?: NodeOptions<Bank>['inspect'];
}

/** The demo's outcome; `--json` prints it as the last line. */
export interface DemoResult {
  readonly backend: 'memory' | 'nats';
  /** Nodes that took part (3 at the start, 1 joined). */
  readonly nodes: number;
  readonly actors: number;
  /** Commands acknowledged (each counted once, retries included). */
  readonly commands: number;
  readonly commandsPerSecond: number;
  /** Sends repeated with the same command id after an unknown outcome. */
  readonly retried: number;
  readonly migrated: number;
  readonly failedMigrations: number;
  /** Acknowledged deposits missing from the accounts. */
  readonly lost: number;
  /** Deposits applied more often than acknowledged. */
  readonly duplicated: number;
  /** Accounts whose balance and deposit count match the acknowledged deposits. */
  readonly verified: number;
  readonly durationMs: number;
}

type Bank = typeof actors;
type BankNode = NatstateNode<Bank>;

export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parse('demo', argv, OPTIONS, { min: 0, max: 0, names: '' });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const heartbeatMs = integer('demo', 'heartbeat-ms', values['heartbeat-ms'], 250, 10);
  const nats = values.nats === undefined ? undefined : natsAuth('demo', natsServers('demo', values.nats), values);
  const config = {
    actors: integer('demo', 'actors', values.actors, 1_000, 1, 10_000_000),
    servers: nats?.servers,
    auth: nats?.auth,
    shards: integer('demo', 'shards', values.shards, 64, 4, 65_536),
    concurrency: integer('demo', 'concurrency', values.concurrency, 16, 1, 10_000),
    stepMs: integer('demo', 'step-ms', values['step-ms'], 1_500, 0),
    heartbeatMs,
    failureTimeoutMs: integer('demo', 'failure-timeout-ms', values['failure-timeout-ms'], 2_000, heartbeatMs + 1),
  };
  const json = values.json === true;
  // With --json, stdout carries only the result; people read the progress on stderr.
  const say = json ? (line: string) => process.stderr.write(line + '\n') : (line: string) => process.stdout.write(line + '\n');

  let inspector: { inspect: NodeOptions<Bank>['inspect']; stop(): Promise<void> } | undefined;
  if (values.inspect) inspector = await startInspector(integer('demo', 'inspect-port', values['inspect-port'], 8080, 1, 65_535), say);
  if (inspector && process.stdout.isTTY) {
    // In a terminal, leave time to open the page: it shows what happens after it connects.
    say('starting in 5 s: open the inspector page now');
    await sleep(5_000);
  }
  let result: DemoResult;
  try {
    result = await runDemo({ ...config, inspect: inspector?.inspect }, say);
  } finally {
    await inspector?.stop();
  }
  say('');
  say(summary(result));
  if (json) console.log(JSON.stringify(result));
  return passed(result) ? 0 : 1;
}

export function passed(result: DemoResult): boolean {
  return result.verified === result.actors && result.lost === 0 && result.duplicated === 0;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const yieldToTimers = () => new Promise<void>((resolve) => setImmediate(resolve));
const accountId = (i: number) => `acc-${String(i).padStart(6, '0')}`;

interface Member {
  readonly node: BankNode;
  /** False once the demo stopped or killed it: its workers stop sending. */
  live: boolean;
  workers: Promise<void>[];
}

interface Deposit {
  readonly account: number;
  readonly amount: number;
  readonly commandId: string;
}

/** A cluster the demo can grow, shrink and crash, embedded or on NATS. */
interface DemoCluster {
  readonly label: string;
  start(nodeId: string): Promise<BankNode>;
  /** Graceful: the node leaves and its actors are handed off. */
  stop(node: BankNode): Promise<void>;
  /** A crash: nothing is handed off, the others notice after the failure timeout. */
  kill(node: BankNode): Promise<void>;
  close(): Promise<void>;
}

export async function runDemo(config: DemoConfig, say: (line: string) => void): Promise<DemoResult> {
  const started = Date.now();
  const at = () => `${((Date.now() - started) / 1_000).toFixed(1).padStart(5)}s`;
  const note = (line: string) => say(`${at()}  ${line}`);

  let migrated = 0;
  let failedMigrations = 0;
  const killed = new Set<string>();
  const warnings: string[] = [];
  const nodeOptions: Omit<NodeOptions<Bank>, 'namespace'> = {
    actors,
    // Generous, so that a deposit retried long after its first send is still recognised.
    idempotencyWindow: 1_024,
    inspect: config.inspect,
    onError: (error, context) => {
      if (warnings.length < 20) warnings.push(`${context}: ${error instanceof Error ? error.message : String(error)}`);
    },
    cluster: {
      shards: config.shards,
      heartbeatMs: config.heartbeatMs,
      failureTimeoutMs: config.failureTimeoutMs,
      leaseMs: config.failureTimeoutMs,
      planIntervalMs: config.heartbeatMs,
      requestTimeoutMs: Math.max(1_000, config.failureTimeoutMs),
      routeDeadlineMs: Math.max(10_000, config.failureTimeoutMs * 5),
      migration: {
        onMigration: (m) => {
          if (m.status === 'Deleted') migrated++;
          else if (m.status === 'Failed') failedMigrations++;
        },
      },
    },
  };
  const cluster = config.servers ? await natsCluster(config.servers, config.auth ?? {}, nodeOptions, killed) : await memoryCluster(nodeOptions);
  say(`natstate demo: 3 nodes ${cluster.label}, ${count(config.actors)} accounts`);
  // Ctrl+C: stop the nodes (and on NATS delete the demo's namespace) before exiting.
  const interrupt = () => {
    note('interrupted: stopping the nodes');
    void cluster.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);

  const members: Member[] = [];
  const live = () => members.filter((m) => m.live);
  const balance = new Array<number>(config.actors).fill(0);
  const deposits = new Array<number>(config.actors).fill(0);
  const retries: Deposit[] = [];
  let acknowledged = 0;
  let retried = 0;
  let refused = 0;
  let issued = 0;
  let flowing = true;

  /** One send; an unknown outcome goes back on the retry queue with its command id. */
  const deposit = async (node: BankNode, d: Deposit): Promise<boolean> => {
    try {
      const reply = await node.send('account', accountId(d.account), { type: 'DEPOSIT', amount: d.amount }, { commandId: d.commandId });
      if (!reply.accepted) {
        refused++;
        return true;
      }
      balance[d.account] += d.amount;
      deposits[d.account]++;
      acknowledged++;
      return true;
    } catch {
      retried++;
      retries.push(d);
      return false;
    }
  };
  const newDeposit = (account = Math.floor(Math.random() * config.actors)): Deposit => ({
    account,
    amount: 1 + Math.floor(Math.random() * 100),
    commandId: `deposit-${issued++}`,
  });
  const worker = async (member: Member) => {
    while (flowing && member.live) {
      const ok = await deposit(member.node, retries.shift() ?? newDeposit());
      // Embedded, a command can complete without leaving the microtask queue: yield, so
      // heartbeats, planning and this progress display get their turn.
      await (ok ? yieldToTimers() : sleep(20));
    }
  };
  const startWorkers = (member: Member) => {
    member.workers = Array.from({ length: config.concurrency }, () => worker(member));
  };

  const addMember = async (nodeId: string) => {
    const member: Member = { node: await cluster.start(nodeId), live: true, workers: [] };
    members.push(member);
    return member;
  };

  // Progress: per-node resident actors, migrations, throughput.
  let lastCount = 0;
  let lastTime = Date.now();
  const progress = () => {
    const now = Date.now();
    const rate = ((acknowledged - lastCount) * 1_000) / Math.max(1, now - lastTime);
    lastCount = acknowledged;
    lastTime = now;
    const views = live().map((m) => m.node.cluster());
    const running = views.reduce((n, v) => n + v.migrations.running, 0);
    const epoch = Math.max(0, ...views.map((v) => v.epoch));
    note(
      `actors ${views.map((v) => `${v.nodeId} ${count(v.residentActors)}`).join(' · ')} │ epoch ${epoch} │ migrations ${count(migrated)} done, ${failedMigrations} failed` +
        `${running ? `, ${running} running` : ''} │ ${count(rate)} cmd/s`,
    );
  };
  const ticker = setInterval(progress, Math.max(250, Math.min(1_000, config.stepMs)));

  /** Every live node sees the same members and map, shards balanced, no migration running. */
  const settled = async (what: string) => {
    const deadline = Date.now() + Math.max(30_000, config.failureTimeoutMs * 6);
    const ids = () => live().map((m) => m.node.id).sort().join(',');
    for (;;) {
      const views = live().map((m) => m.node.cluster());
      const owned = views.map((v) => v.ownedShards);
      if (
        views.every((v) => v.members.join(',') === ids() && v.epoch === views[0].epoch && v.migrations.running === 0) &&
        owned.reduce((a, b) => a + b, 0) === config.shards &&
        Math.max(...owned) - Math.min(...owned) <= 1 &&
        views.filter((v) => v.isLeader).length === 1
      ) {
        return views[0];
      }
      if (Date.now() > deadline) {
        note(`${what}: the cluster did not settle in time; carrying on`);
        return views[0];
      }
      await sleep(25);
    }
  };

  let verified = 0;
  let lost = 0;
  let duplicated = 0;
  try {
    for (const id of ['node-1', 'node-2', 'node-3']) await addMember(id);
    const first = await settled('start');
    note(`node-1, node-2, node-3 up; leader ${first?.leader}; ${config.shards} shards, epoch ${first?.epoch}`);

    // Open every account with a first deposit, spread over the nodes.
    const opening = Array.from({ length: config.actors }, (_, i) => newDeposit(i));
    await Promise.all(
      Array.from({ length: members.length * config.concurrency }, async (_, w) => {
        for (let d = opening.pop(); d; d = opening.pop()) await deposit(members[w % members.length].node, d);
      }),
    );
    note(`${count(config.actors)} accounts opened; deposits flowing from every node`);
    for (const m of members) startWorkers(m);
    await sleep(config.stepMs);

    note('node-4 joins');
    const fourth = await addMember('node-4');
    startWorkers(fourth);
    const joined = await settled('join');
    note(`shards rebalanced over 4 nodes (epoch ${joined?.epoch}); ${count(migrated)} actors migrated so far`);
    await sleep(config.stepMs);

    // Nodes that do not lead leave and crash: the story is hand-off and failure detection.
    const leaderNow = () => live()[0]?.node.cluster().leader;
    const leaving = live().find((m) => m.node.id !== leaderNow() && m !== fourth)!;
    note(`${leaving.node.id} leaves gracefully (hands its actors off)`);
    leaving.live = false;
    await cluster.stop(leaving.node);
    const left = await settled('leave');
    note(`${leaving.node.id} left; ${live().length} nodes, epoch ${left?.epoch}, leader ${left?.leader}`);
    await sleep(config.stepMs);

    const victim = live().find((m) => m.node.id !== leaderNow() && m !== fourth) ?? live().find((m) => m.node.id !== leaderNow())!;
    note(`${victim.node.id} killed (a crash: no hand-off; the others notice within ${duration(config.failureTimeoutMs)})`);
    victim.live = false;
    killed.add(victim.node.id);
    const killedAt = Date.now();
    await cluster.kill(victim.node);
    const recovered = await settled('crash');
    note(`${victim.node.id} detected down after ${duration(Date.now() - killedAt)}; its shards reassigned (epoch ${recovered?.epoch}), its actors recover from the store`);
    await sleep(config.stepMs);

    flowing = false;
    await Promise.all(members.flatMap((m) => m.workers));
    // Deposits whose outcome was unknown: resend (same command id) until acknowledged.
    const drainUntil = Date.now() + 60_000;
    while (retries.length > 0 && Date.now() < drainUntil) {
      const batch = retries.splice(0);
      await Promise.all(batch.map((d, i) => deposit(live()[i % live().length].node, d)));
      if (retries.length > 0) await sleep(100);
    }
    clearInterval(ticker);
    progress();
    note(`deposits stopped; verifying ${count(config.actors)} accounts against ${count(acknowledged)} acknowledged deposits`);

    // Verify every account through the remaining nodes.
    const next = { i: 0 };
    await Promise.all(
      Array.from({ length: 64 }, async (_, w) => {
        for (let i = next.i++; i < config.actors; i = next.i++) {
          const node = live()[w % live().length].node;
          let state;
          try {
            state = await node.state('account', accountId(i));
          } catch {
            state = undefined;
          }
          const context = state?.context;
          if (!context) continue;
          const diff = context.deposits - deposits[i];
          if (diff < 0) lost += -diff;
          if (diff > 0) duplicated += diff;
          if (diff === 0 && context.balance === balance[i]) verified++;
        }
      }),
    );
    if (retries.length > 0) note(`${retries.length} deposit(s) still unacknowledged after 60 s of retries`);
    if (refused > 0) note(`${refused} deposit(s) refused by the account machine`);
  } finally {
    clearInterval(ticker);
    flowing = false;
    for (const m of members) m.live = false;
    await Promise.all(members.flatMap((m) => m.workers));
    process.off('SIGINT', interrupt);
    await cluster.close();
  }
  const durationMs = Date.now() - started;
  const result: DemoResult = {
    backend: config.servers ? 'nats' : 'memory',
    nodes: members.length,
    actors: config.actors,
    commands: acknowledged,
    commandsPerSecond: Math.round((acknowledged * 1_000) / durationMs),
    retried,
    migrated,
    failedMigrations,
    lost,
    duplicated,
    verified,
    durationMs,
  };
  // What the nodes reported with nobody to tell (a failed snapshot save...), when it may explain a failure.
  if (!passed(result)) for (const w of warnings.slice(0, 5)) say(`warning: ${w}`);
  return result;
}

async function memoryCluster(nodeOptions: Omit<NodeOptions<Bank>, 'namespace'>): Promise<DemoCluster> {
  const cluster = await createMemoryCluster({ ...nodeOptions, namespace: 'bank-demo', nodes: 0 });
  return {
    label: 'in this process (embedded, in memory: no infrastructure)',
    start: (nodeId) => cluster.addNode(nodeId),
    stop: (node) => cluster.removeNode(node),
    kill: (node) => cluster.crashNode(node),
    close: () => cluster.close(),
  };
}

/**
 * Each node on its own NATS connection, in a fresh namespace kept in memory storage and
 * deleted at the end. A kill closes the node's connection without leaving: to the other
 * nodes it is a crashed process.
 */
async function natsCluster(servers: string[], auth: NatsAuth, nodeOptions: Omit<NodeOptions<Bank>, 'namespace'>, killed: ReadonlySet<string>): Promise<DemoCluster> {
  const admin = await connectNats(servers, { ...auth, name: 'natstate demo' });
  const namespace = `demo-${uuid().slice(0, 8)}`;
  const connections = new Map<BankNode, NatsConnection>();
  const onError = nodeOptions.onError;
  return {
    label: `on NATS ${admin.getServer()} (namespace ${namespace}), one connection each`,
    async start(nodeId) {
      const nc = await connectNats(servers, { ...auth, name: `natstate demo ${nodeId}` });
      try {
        const node = await createNode({
          ...nodeOptions,
          namespace,
          nodeId,
          nats: nc,
          jetstream: { storage: 'memory' },
          // What a killed node reports about its own closed connection is not news.
          onError: (error, context) => killed.has(nodeId) || onError?.(error, context),
        });
        connections.set(node, nc);
        return node;
      } catch (error) {
        await nc.close();
        throw error;
      }
    },
    async stop(node) {
      await node.leave();
      await connections.get(node)?.close();
      connections.delete(node);
    },
    async kill(node) {
      await connections.get(node)?.close();
      connections.delete(node);
      await crashNode(node).catch(() => undefined);
    },
    async close() {
      await Promise.all([...connections.keys()].map((node) => node.close().catch(() => undefined)));
      await Promise.all([...connections.values()].map((nc) => nc.close()));
      try {
        const subjects = subjectsOf(namespace);
        const jsm = await jetstreamManager(admin);
        const kvm = new Kvm(admin);
        await jsm.streams.delete(subjects.eventStream).catch(() => undefined);
        for (const bucket of [subjects.snapshotBucket, subjects.clusterBucket]) await (await kvm.open(bucket)).destroy().catch(() => undefined);
      } finally {
        await admin.close();
      }
    },
  };
}

/** A local inspector server (open its URL in a browser) and the observer that feeds it. */
async function startInspector(port: number, say: (line: string) => void) {
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once('error', () => reject(new UsageError(`demo: --inspect-port ${port} is in use; pick another with --inspect-port`)));
    probe.listen(port, () => probe.close(() => resolve()));
  });
  const { createWebSocketInspector } = await import('@statelyai/inspect');
  const { createInspectorServer } = await import('@statelyai/inspect/server');
  const server = createInspectorServer({ port, autoOpen: false });
  const inspector = createWebSocketInspector({ url: `ws://localhost:${port}` });
  say(`inspector: open http://localhost:${port} to watch every migration machine live (Stately inspector)`);
  return {
    inspect: inspector.inspect,
    async stop() {
      // Give the inspector a moment to send what it has queued.
      await sleep(200);
      inspector.stop();
      server.stop();
    },
  };
}

export function summary(r: DemoResult): string {
  const ok = passed(r);
  const rows: [string, string][] = [
    ['nodes', `${r.nodes} (3, then 1 joined, 1 left gracefully, 1 killed)`],
    ['actors', count(r.actors)],
    ['commands', `${count(r.commands)} acknowledged (${count(r.commandsPerSecond)}/s; ${count(r.retried)} resent after an unknown outcome)`],
    ['migrations completed', count(r.migrated)],
    ['migrations failed', count(r.failedMigrations)],
    ['lost', count(r.lost)],
    ['duplicated', count(r.duplicated)],
    ['verified', `${count(r.verified)} / ${count(r.actors)} ${ok ? '✓' : '✗'}`],
    ['duration', duration(r.durationMs)],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return [...rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`), '', ok ? '  every acknowledged deposit is in its account, exactly once' : '  VERIFICATION FAILED'].join('\n');
}
