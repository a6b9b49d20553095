/**
 * `natstate node`: one cluster node in this process, on NATS, hosting the actor types of
 * a module. It logs one line per join, leave, leader change, plan, shard-map change and
 * batch of migrations. SIGTERM or SIGINT: it leaves gracefully (its actors are handed
 * to the remaining nodes), then exits 0. SIGKILL is a crash the others survive.
 */
import { v4 as uuid } from 'uuid';
import type { ActorMigration } from '../cluster/migration.js';
import { createNode, type ActorTypes, type ClusterOptions, type NatstateNode } from '../node.js';
import { integer, natsOption, parse, required } from './args.js';
import { loadActors } from './actors-module.js';
import { connectNats, subjectsOf } from './connection.js';
import { NATS_AUTH_OPTIONS, natsAuth, natsAuthHelp } from './nats-auth.js';
import { duration } from './format.js';

export const usage = `Usage: natstate node --nats URL --namespace NS --actors MODULE [options]

Runs one cluster node in this process. Every node of a namespace finds the others
through NATS; shards (and the actors in them) are spread over the live nodes and move,
with their state, when nodes join or leave. Ctrl+C or SIGTERM leaves gracefully.

Options:
  --nats URL                 NATS server(s), e.g. nats://127.0.0.1:4222 (default: $NATS_URL)
${natsAuthHelp(29)}
  --namespace NS             the cluster's namespace
  --actors MODULE            a module exporting { typeName: machine } (default export or "actors")
  --node-id ID               this node's id (default: random)
  --shards N                 shards of the namespace, the same on every node (default 256)
  --heartbeat-ms MS          membership heartbeat (default 1000)
  --failure-timeout-ms MS    a node silent this long is down (default 5000)
  --lease-ms MS              leader lease (default: the failure timeout)
  --replicas N               JetStream replicas of the namespace's stream and buckets when
                             this node creates them (default 1; 3 on a 3-server NATS cluster)
  --start-timeout-ms MS      keep retrying a start that times out (JetStream busy, e.g. a
                             NATS cluster electing its leaders) this long (default 60000)

Example (three terminals, then natstate status):
  natstate node --nats nats://127.0.0.1:4222 --namespace bank --actors dist/examples/bank/actors.js --node-id n1`;

const OPTIONS = {
  nats: { type: 'string' },
  ...NATS_AUTH_OPTIONS,
  namespace: { type: 'string' },
  actors: { type: 'string' },
  'node-id': { type: 'string' },
  shards: { type: 'string' },
  'heartbeat-ms': { type: 'string' },
  'failure-timeout-ms': { type: 'string' },
  'lease-ms': { type: 'string' },
  replicas: { type: 'string' },
  'start-timeout-ms': { type: 'string' },
} as const;

/** A timeout anywhere in the error's cause chain (natstate's TimeoutError or nats.js's). */
function isTimeout(error: unknown): boolean {
  for (let e: unknown = error; e instanceof Error; e = e.cause) if (e.name === 'TimeoutError') return true;
  return false;
}

const log = (line: string) => console.log(`${new Date().toISOString()} ${line}`);

export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parse('node', argv, OPTIONS, { min: 0, max: 0, names: '' });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const { servers, auth } = natsAuth('node', natsOption('node', values.nats), values);
  const namespace = required('node', 'namespace', values.namespace);
  subjectsOf(namespace); // a namespace natstate cannot use is a usage error, before connecting
  const actorsModule = required('node', 'actors', values.actors);
  const shards = integer('node', 'shards', values.shards, 256, 1, 65_536);
  const heartbeatMs = integer('node', 'heartbeat-ms', values['heartbeat-ms'], 1_000, 10);
  const failureTimeoutMs = integer('node', 'failure-timeout-ms', values['failure-timeout-ms'], 5_000, heartbeatMs + 1);
  const leaseMs = integer('node', 'lease-ms', values['lease-ms'], failureTimeoutMs, 30);
  const replicas = integer('node', 'replicas', values.replicas, 1, 1, 5);
  const startTimeoutMs = integer('node', 'start-timeout-ms', values['start-timeout-ms'], 60_000, 0);
  const actors = await loadActors(actorsModule);

  const nodeId = values['node-id'] ?? uuid();
  const nc = await connectNats(servers, { ...auth, name: `natstate node ${nodeId}`, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  const migrations = new MigrationLog();
  const cluster: ClusterOptions = {
    shards,
    heartbeatMs,
    failureTimeoutMs,
    leaseMs,
    planIntervalMs: Math.min(1_000, heartbeatMs),
    onMembership: (event) => {
      if (event.type === 'join') log(`join ${event.member.nodeId}${event.member.nodeId === nodeId ? ' (this node)' : ''}`);
      else log(`leave ${event.nodeId} (${event.reason === 'left' ? 'left gracefully' : `failed: no heartbeat for ${duration(failureTimeoutMs)}`})`);
    },
    onPlan: (plan) => {
      const flows = new Map<string, number>();
      for (const move of plan.moves) flows.set(`${move.from ?? '(unowned)'} → ${move.to}`, (flows.get(`${move.from ?? '(unowned)'} → ${move.to}`) ?? 0) + 1);
      log(`plan epoch ${plan.epoch}: ${plan.moves.length} shard(s) move: ${[...flows].map(([flow, n]) => `${flow} ${n}`).join(', ')}`);
    },
    migration: { onMigration: (m) => migrations.add(m) },
  };
  let node: NatstateNode<ActorTypes>;
  const startDeadline = Date.now() + startTimeoutMs;
  for (let attempt = 1; ; attempt++) {
    try {
      node = await createNode({
        actors,
        namespace,
        nodeId,
        nats: nc,
        jetstream: { replicas },
        cluster,
        onError: (error, context) => log(`warning (${context}): ${error instanceof Error ? error.message : String(error)}`),
      });
      break;
    } catch (error) {
      // A timeout is JetStream not answering yet (a restarted server, a cluster electing
      // its leaders): try again. Anything else, or past the deadline, is final.
      const wait = Math.min(5_000, 250 * 2 ** attempt);
      if (!isTimeout(error) || Date.now() + wait > startDeadline) {
        await nc.close();
        throw error;
      }
      log(`starting: ${(error as Error).message}; retrying in ${duration(wait)}`);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
  const view = node.cluster();
  log(`node ${node.id} up: namespace ${namespace}, actor types ${Object.keys(actors).join(', ')}, ${view.shardCount} shards, NATS ${nc.getServer()}`);

  // Leader and shard-map changes are read from the node's own view.
  let leader = view.leader;
  let epoch = view.epoch;
  log(`leader ${leader ?? '(none yet)'}${view.isLeader ? ' (this node)' : ''}; shard map epoch ${epoch}: this node owns ${view.ownedShards} shard(s)`);
  const watch = setInterval(() => {
    const now = node.cluster();
    if (now.leader !== leader) {
      leader = now.leader;
      log(`leader ${leader ?? '(none)'}${now.isLeader ? ' (this node)' : ''}`);
    }
    if (now.epoch !== epoch) {
      epoch = now.epoch;
      log(`shard map epoch ${epoch}: this node owns ${now.ownedShards} shard(s), ${now.residentActors} actor(s) resident`);
    }
  }, Math.max(50, Math.min(500, heartbeatMs)));

  const exitCode = await new Promise<number>((resolve) => {
    let leaving = false;
    const leave = (signal: NodeJS.Signals) => {
      if (leaving) {
        log(`${signal} again: exiting without finishing the hand-off`);
        resolve(1);
        return;
      }
      leaving = true;
      const { residentActors, members } = node.cluster();
      log(
        members.length > 1
          ? `${signal}: leaving gracefully, handing ${residentActors} actor(s) off`
          : `${signal}: the last member leaves; its ${residentActors} actor(s) stay in the store for the next node`,
      );
      node.leave().then(
        () => {
          migrations.flush();
          log(`left the cluster`);
          resolve(0);
        },
        (error: unknown) => {
          log(`leaving failed: ${error instanceof Error ? error.message : String(error)}`);
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', leave);
    process.on('SIGINT', leave);
  });
  clearInterval(watch);
  migrations.flush();
  await nc.close().catch(() => undefined);
  return exitCode;
}

/**
 * One line per batch of migrations (a plan's actors from this node to one destination),
 * written once the batch has been quiet for a moment; failures get a line each.
 */
class MigrationLog {
  private readonly batches = new Map<string, { to: string; epoch: number; done: number; failed: number }>();
  private timer: NodeJS.Timeout | undefined;

  add(m: ActorMigration): void {
    const key = `${m.planId}→${m.to}`;
    let batch = this.batches.get(key);
    if (!batch) this.batches.set(key, (batch = { to: m.to, epoch: m.epoch, done: 0, failed: 0 }));
    if (m.status === 'Failed') {
      batch.failed++;
      log(`migration of ${m.actor.type}/${m.actor.id} to ${m.to} failed after ${m.attempts} attempt(s): ${m.error ?? 'unknown error'} (it recovers from the store)`);
    } else {
      batch.done++;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), 200);
  }

  flush(): void {
    clearTimeout(this.timer);
    for (const b of this.batches.values()) {
      log(`migrated ${b.done + b.failed} actor(s) to ${b.to} (epoch ${b.epoch}): ${b.done} done, ${b.failed} failed`);
    }
    this.batches.clear();
  }
}
