/**
 * `natstate status`: what a running cluster looks like, read straight from its KV bucket
 * (member heartbeats, leader lease, shard map) and from the leader's rebalance journal.
 * It does not join the cluster: no node is started, nothing is written.
 */
import type { KV } from '@nats-io/kv';
import { decode } from '../codec/codec.js';
import { isLeaseRecord, isMemberRecord, isShardMapRecord, type MemberRecord } from '../codec/cluster-records.js';
import { JetStreamEventStore } from '../eventstore/jetstream.js';
import { REBALANCE_STREAM } from '../cluster/rebalance-supervisor.js';
import type { RebalanceEvent } from '../../machines/rebalance.machine.js';
import { integer, natsOption, parse, required } from './args.js';
import { connectNats, openNamespace, type Namespace } from './connection.js';
import { NATS_AUTH_OPTIONS, natsAuth, natsAuthHelp } from './nats-auth.js';
import { count, duration, table, timestamp } from './format.js';

export const usage = `Usage: natstate status --nats URL --namespace NS [--json]

Members (id, up since, last heartbeat, actors resident, shards owned, migrations), the
leader, the shard-map epoch and the recent rebalance plans of a running cluster, read
from its KV bucket. It does not join the cluster.

Options:
  --nats URL                 NATS server(s), e.g. nats://127.0.0.1:4222 (default: $NATS_URL)
${natsAuthHelp(29)}
  --namespace NS             the cluster's namespace
  --failure-timeout-ms MS    a member whose last heartbeat is older is shown as down (default 5000)
  --json                     print one JSON object

Example:
  natstate status --nats nats://127.0.0.1:4222 --namespace bank`;

const OPTIONS = {
  nats: { type: 'string' },
  ...NATS_AUTH_OPTIONS,
  namespace: { type: 'string' },
  'failure-timeout-ms': { type: 'string' },
  json: { type: 'boolean' },
} as const;

interface Counts {
  running: number;
  completed: number;
  failed: number;
}

export interface MemberStatus {
  readonly id: string;
  readonly startedAt: number;
  readonly heartbeatAt: number;
  /** By this machine's clock: informative only, as clocks differ between machines. */
  readonly heartbeatAgeMs: number;
  readonly actors: number;
  /** Shards the current shard map gives the member. */
  readonly shards: number;
  readonly migrations: Counts;
}

export interface PlanStatus {
  readonly planId: string;
  readonly epoch: number;
  readonly moves: number;
  readonly settled: number;
  readonly status: 'migrating' | 'committed' | 'aborted';
  readonly time: number;
}

export interface ClusterReport {
  readonly namespace: string;
  readonly members: MemberStatus[];
  /** Member records whose heartbeat stopped: crashed nodes (not yet) replaced. */
  readonly down: MemberStatus[];
  readonly leader: string | null;
  readonly term: number;
  readonly epoch: number;
  readonly shardCount: number;
  /** Shards the map gives to no member in the bucket (a node that is gone). */
  readonly orphanedShards: number;
  /** Summed over the live members (each counts since it started). */
  readonly migrations: Counts;
  readonly plans: PlanStatus[];
}

export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parse('status', argv, OPTIONS, { min: 0, max: 0, names: '' });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const { servers, auth } = natsAuth('status', natsOption('status', values.nats), values);
  const namespace = required('status', 'namespace', values.namespace);
  const failureTimeoutMs = integer('status', 'failure-timeout-ms', values['failure-timeout-ms'], 5_000);
  const nc = await connectNats(servers, auth);
  try {
    const report = await readStatus(await openNamespace(nc, namespace), failureTimeoutMs);
    console.log(values.json ? JSON.stringify(report) : formatStatus(report, failureTimeoutMs));
    return 0;
  } finally {
    await nc.close();
  }
}

export async function readStatus(ns: Namespace, failureTimeoutMs: number): Promise<ClusterReport> {
  const kv = await ns.clusterBucket();
  const now = Date.now();
  const map = await read(kv, ns.subjects.shardMapKey, isShardMapRecord, 'shard map');
  const lease = await read(kv, ns.subjects.leaderKey, isLeaseRecord, 'leader lease');
  // The member keys, from the bucket's stream in one request. A key listing (`kv.keys`, an
  // ordered consumer) now and then waited for good for a record that a heartbeat had
  // replaced meanwhile, and the command never ended.
  const { subjects } = ns;
  const info = await ns.jsm.streams.info(subjects.clusterStream, { subjects_filter: subjects.clusterKeySubject(`${subjects.memberPrefix}>`) });
  const keyOf = subjects.clusterKeySubject('').length;
  const keys = Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(keyOf));
  const records: MemberRecord[] = [];
  for (const key of keys) {
    const record = await read(kv, key, isMemberRecord, `member record ${key}`);
    if (record) records.push(record);
  }
  records.sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
  const owned = new Map<string, number>();
  for (const owner of map?.owners ?? []) if (owner !== null) owned.set(owner, (owned.get(owner) ?? 0) + 1);
  const all = records.map(
    (r): MemberStatus => ({
      id: r.nodeId,
      startedAt: r.startedAt,
      heartbeatAt: r.heartbeatAt,
      heartbeatAgeMs: Math.max(0, now - r.heartbeatAt),
      actors: r.actors,
      shards: owned.get(r.nodeId) ?? 0,
      migrations: r.migrations ? { ...r.migrations } : { running: 0, completed: 0, failed: 0 },
    }),
  );
  const members = all.filter((m) => m.heartbeatAgeMs <= failureTimeoutMs);
  const migrations = { running: 0, completed: 0, failed: 0 };
  for (const m of members) for (const k of ['running', 'completed', 'failed'] as const) migrations[k] += m.migrations[k];
  const known = new Set(records.map((r) => r.nodeId));
  return {
    namespace: ns.namespace,
    members,
    down: all.filter((m) => m.heartbeatAgeMs > failureTimeoutMs),
    leader: lease?.holder ?? null,
    term: lease?.term ?? 0,
    epoch: map?.epoch ?? 0,
    shardCount: map?.shardCount ?? 0,
    orphanedShards: (map?.owners ?? []).filter((owner) => owner === null || !known.has(owner)).length,
    migrations,
    plans: await recentPlans(ns).catch(() => []),
  };
}

async function read<T>(kv: KV, key: string, validate: (value: unknown) => value is T, what: string): Promise<T | undefined> {
  const entry = await kv.get(key);
  if (!entry || entry.operation !== 'PUT') return undefined;
  try {
    return decode(entry.value, validate, what);
  } catch {
    // A record this version cannot read is left out rather than failing the whole report.
    return undefined;
  }
}

/** The last plans of the rebalance supervisor, from the tail of its journal. */
async function recentPlans(ns: Namespace, keep = 5): Promise<PlanStatus[]> {
  const store = await JetStreamEventStore.create(ns.nc, { namespace: ns.namespace });
  try {
    const version = await store.version(REBALANCE_STREAM);
    const plans: { -readonly [K in keyof PlanStatus]: PlanStatus[K] }[] = [];
    for await (const recorded of store.read(REBALANCE_STREAM, { fromVersion: Math.max(0, version - 400) })) {
      const event = recorded.event as RebalanceEvent;
      const plan = plans.at(-1);
      if (event.type === 'PLANNED') {
        plans.push({ planId: event.planId, epoch: event.epoch, moves: event.moves.length, settled: 0, status: 'migrating', time: recorded.time });
      } else if (plan && plan.status !== 'committed') {
        if (event.type === 'SHARD_DONE') plan.settled++;
        else if (event.type === 'ABORT') plan.status = 'aborted';
        else if (event.type === 'COMMITTED' && plan.status === 'migrating') plan.status = 'committed';
      }
    }
    return plans.slice(-keep);
  } finally {
    await store.close();
  }
}

export function formatStatus(report: ClusterReport, failureTimeoutMs: number): string {
  const lines: string[] = [];
  lines.push(
    `namespace ${report.namespace}: ${report.members.length} member(s), leader ${report.leader ?? '(none)'}` +
      (report.leader ? ` (term ${report.term})` : '') +
      `, shard map epoch ${report.epoch}` +
      (report.shardCount ? ` (${report.shardCount} shards${report.orphanedShards ? `, ${report.orphanedShards} without a member` : ''})` : ' (no map yet)'),
  );
  lines.push('');
  const m = (c: Counts) => `${c.running}/${c.completed}/${c.failed}`;
  lines.push(
    table(
      ['member', 'up since', 'last heartbeat', 'actors', 'shards', 'migrations run/done/failed'],
      report.members.map((member) => [
        member.id + (member.id === report.leader ? ' *' : ''),
        timestamp(member.startedAt),
        `${duration(member.heartbeatAgeMs)} ago`,
        count(member.actors),
        count(member.shards),
        m(member.migrations),
      ]),
      [3, 4],
    ),
  );
  if (report.down.length > 0) {
    lines.push('');
    lines.push(`down (no heartbeat for over ${duration(failureTimeoutMs)}):`);
    for (const d of report.down) lines.push(`  ${d.id}: last heartbeat ${duration(d.heartbeatAgeMs)} ago, ${d.shards} shard(s) still assigned`);
  }
  lines.push('');
  lines.push(`migrations: ${report.migrations.running} running, ${count(report.migrations.completed)} completed, ${count(report.migrations.failed)} failed (live members, since each started)`);
  if (report.plans.length > 0) {
    lines.push('recent rebalance plans:');
    for (const p of report.plans) {
      lines.push(`  epoch ${p.epoch}  ${p.moves} shard move(s), ${p.settled} settled, ${p.status}  (${timestamp(p.time)}, plan ${p.planId})`);
    }
  }
  return lines.join('\n');
}
