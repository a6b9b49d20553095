/**
 * `createNode()`: the composition root. It picks the adapters (embedded in-memory by
 * default, JetStream/NATS when `nats` is given), wires store, bus and actor host, and
 * exposes the small typed API users call.
 */
import type { NodeConnectionOptions } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import type { AnyStateMachine, ContextFrom, EventFromLogic, SnapshotFrom } from 'xstate';
import { v4 as uuid } from 'uuid';
import { ActorHost } from './actors/actor-host.js';
import type { EventBus, EventStoredFilter, EventStoredHandler, Unsubscribe } from './eventbus/eventbus.js';
import { LocalEventBus } from './eventbus/local.js';
import { NATSEventBus } from './eventbus/nats.js';
import type { EventStore } from './eventstore/eventstore.js';
import { JetStreamEventStore } from './eventstore/jetstream.js';
import { MemoryNetwork } from './memory-network.js';
import { connectToNats } from './nats/connect.js';
import { InvalidNameError, ClosedError } from './errors.js';
import { Subjects, validateActorType, validateNamespace } from './subjects.js';
import type { ClusterKV } from './cluster/kv/kv.js';
import { MemoryKV } from './cluster/kv/memory.js';
import { NatsKV } from './cluster/kv/nats.js';
import type { Transport } from './cluster/transport/transport.js';
import { MemoryTransport } from './cluster/transport/memory.js';
import { NatsTransport } from './cluster/transport/nats.js';
import { ShardMapStore } from './cluster/shard-map.js';
import { Membership, type MembershipEvent } from './cluster/membership.js';
import { LeaderLease } from './cluster/leader-lease.js';
import { ShardCoordinator, type ShardPlan } from './cluster/coordinator.js';
import { Router } from './cluster/router.js';
import { MigrationCoordinator, migrationJournalStream, MIGRATIONS_PER_SECOND, type ActorMigration, type MigrationRecord } from './cluster/migration.js';
import { Journal, SYSTEM_TYPE_PREFIX } from './cluster/journal.js';
import { RebalanceSupervisor, type RebalanceView } from './cluster/rebalance-supervisor.js';
import type { InspectionEvent, Observer } from 'xstate';
import { shardOf } from './cluster/placement.js';
import { CommitSync } from './cluster/commit-sync.js';
import { outboxOf } from './nats/outbox.js';
import { DEFAULT_MAX_PAYLOAD } from './codec/codec.js';

export type ActorTypes = Readonly<Record<string, AnyStateMachine>>;

export interface NodeOptions<A extends ActorTypes> {
  /** Actor types hosted by this node: type name → XState v5 machine. */
  readonly actors: A;
  readonly namespace: string;
  /** Unique id of this node (default: random). */
  readonly nodeId?: string;
  /**
   * NATS servers or an open connection: events go to JetStream and notifications over
   * NATS. Absent: the embedded in-memory default. A connection passed in is not closed
   * by `node.close()`. Connection options go to nats.js as they are (credentials, TLS,
   * `inboxPrefix`, see docs/SECURITY.md); a refused login is a `NatsAuthorizationError`,
   * any other failure to connect a `NatsConnectionError`.
   */
  readonly nats?: NodeConnectionOptions | NatsConnection;
  /** Embedded network shared by several in-process nodes (ignored with `nats`). */
  readonly network?: MemoryNetwork;
  /** Subject prefix (default `natstate`). */
  readonly prefix?: string;
  /** JetStream replicas and storage for the namespace's stream and buckets. */
  readonly jetstream?: { readonly replicas?: number; readonly storage?: 'file' | 'memory'; readonly timeoutMs?: number };
  /** Save a snapshot every N events per actor (0 disables). Default 100. */
  readonly snapshotEvery?: number;
  /** Evict actors idle this long, in ms (0 disables). Default 300,000. */
  readonly passivateAfterMs?: number;
  /** Most queued commands of one actor group-committed in a single append. Default 256. */
  readonly maxBatch?: number;
  /** Command ids remembered per actor for idempotent retries. Default 128. */
  readonly idempotencyWindow?: number;
  /** Errors with no caller to report to (a throwing side effect, a failed snapshot save). */
  readonly onError?: (error: unknown, context: string) => void;
  /** How this node takes part in its namespace's cluster. */
  readonly cluster?: ClusterOptions;
  /**
   * Receives the inspection events of every machine the framework runs (migrations), e.g.
   * `createWebSocketInspector().inspect` from `@statelyai/inspect`, or a plain function.
   */
  readonly inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
}

export interface ClusterOptions {
  /** Shards of the namespace; fixed for its lifetime, the same on every node. Default 256. */
  readonly shards?: number;
  /** Heartbeat interval. Default 1,000 ms. */
  readonly heartbeatMs?: number;
  /** A node whose heartbeat is older than this is down. Default 5,000 ms. */
  readonly failureTimeoutMs?: number;
  /** Leader lease duration. Default 5,000 ms. */
  readonly leaseMs?: number;
  /** Most shards moved between live nodes per rebalance round (absolute). */
  readonly maxMoves?: number;
  /** Most shards moved between live nodes per rebalance round (share of all shards). */
  readonly maxMovesRatio?: number;
  /** How often the leader re-checks the map. Default 1,000 ms. */
  readonly planIntervalMs?: number;
  /** Longest wait for one reply from another node. Default 5,000 ms. */
  readonly requestTimeoutMs?: number;
  /** Longest time a command may spend being routed, retries included. Default 15,000 ms. */
  readonly routeDeadlineMs?: number;
  /** Called on the leader after each shard map it published. */
  readonly onPlan?: (plan: ShardPlan) => void;
  /** Called whenever this node sees a member join or leave (`reason`: `left` gracefully, or `failed`). */
  readonly onMembership?: (event: MembershipEvent) => void;
  /**
   * Live migration of resident actors when their shard moves (default on). `false`:
   * the new owner recovers them from the store instead.
   */
  readonly migration?:
    | false
    | {
        /** Migrations running at once on a source node. Default 32. */
        readonly concurrency?: number;
        /** Most actors of one shard a source sends in one request (1 to 1,024). Default 16. */
        readonly batchSize?: number;
        /** Most migrations a source node starts per second (Infinity: no limit). Default 330 embedded, 150 over NATS. A batch starts together; the next one waits its share. A closing node hands the rest over unpaced. */
        readonly maxPerSecond?: number;
        /** Wait for a destination's answer. Default 2,000 ms. */
        readonly transferTimeoutMs?: number;
        /** Transfer attempts before a migration fails. Default 3. */
        readonly maxAttempts?: number;
        /** Longest a new owner forwards commands for an actor on its way to the old owner. Default 30,000 ms. */
        readonly holdMs?: number;
        /** Most commands waiting per actor while it is handed over. Default 1,000. */
        readonly maxBuffered?: number;
        /** Called whenever a migration ends (Deleted or Failed). */
        readonly onMigration?: (migration: ActorMigration) => void;
        /** Longest the leader waits for one plan's migrations before planning the next round. Default 30,000 ms. */
        readonly planTimeoutMs?: number;
      };
}

/** What a node knows of its cluster right now. */
export interface ClusterStatus {
  readonly nodeId: string;
  readonly leader: string | undefined;
  readonly isLeader: boolean;
  /** Live members, sorted by id. */
  readonly members: readonly string[];
  /** Epoch of the shard map this node routes with (0 before the first map). */
  readonly epoch: number;
  readonly shardCount: number;
  /** Shards this node owns in that map. */
  readonly ownedShards: number;
  /** Actors resident in memory here. */
  readonly residentActors: number;
  /** Live migrations this node ran as a source. */
  readonly migrations: { readonly running: number; readonly completed: number; readonly failed: number };
  /** On the leader: its rebalance supervisor (the plan running or the last one). */
  readonly rebalance?: RebalanceView;
}

export interface CommandOptions {
  /** Idempotency key: a command retried with the same id is applied once. Default: random. */
  readonly commandId?: string;
}

export interface SendResult {
  /** False when the machine took no transition: nothing was stored. */
  readonly accepted: boolean;
  /** The actor's version (number of stored events) after this command. */
  readonly version: number;
  readonly commandId: string;
  /** True when this command id had been applied before; nothing new was stored. */
  readonly duplicate: boolean;
}

export interface ActorState<M extends AnyStateMachine> {
  readonly value: SnapshotFrom<M> extends { value: infer V } ? V : unknown;
  readonly context: ContextFrom<M>;
  readonly status: 'active' | 'done' | 'error' | 'stopped';
}

export interface AskResult<M extends AnyStateMachine> extends SendResult {
  readonly state: ActorState<M>;
}

export interface NatstateNode<A extends ActorTypes> {
  readonly id: string;
  readonly namespace: string;
  /** Sends a command; resolves once it is durably stored (or not accepted). */
  send<T extends keyof A & string>(type: T, id: string, event: EventFromLogic<A[T]>, options?: CommandOptions): Promise<SendResult>;
  /** Like `send`, and also returns the actor's state right after the command. */
  ask<T extends keyof A & string>(type: T, id: string, event: EventFromLogic<A[T]>, options?: CommandOptions): Promise<AskResult<A[T]>>;
  /** The actor's current state (a new actor's initial state if it has no events). */
  state<T extends keyof A & string>(type: T, id: string): Promise<ActorState<A[T]> & { readonly version: number }>;
  /** Every `EventStored` of this namespace, from any node, optionally filtered by type and/or id. */
  subscribeToEventStored(handler: EventStoredHandler, filter?: EventStoredFilter): Unsubscribe;
  /** Membership, leadership and shard ownership as this node sees them. */
  cluster(): ClusterStatus;
  /**
   * Leaves the cluster gracefully: gives up membership (and the lead), waits until the
   * shard map no longer assigns it any shard (at most `timeoutMs`), then closes.
   */
  leave(options?: { timeoutMs?: number }): Promise<void>;
  /** Finishes queued commands, leaves the cluster, then releases everything the node opened. */
  close(): Promise<void>;
}

function isConnection(value: NodeConnectionOptions | NatsConnection): value is NatsConnection {
  return typeof (value as NatsConnection).publish === 'function' && typeof (value as NatsConnection).subscribe === 'function';
}


/** How long a node that left gracefully counts as handing its actors over. */
const HAND_OVER_WINDOW_MS = 60_000;

export async function createNode<const A extends ActorTypes>(options: NodeOptions<A>): Promise<NatstateNode<A>> {
  validateNamespace(options.namespace);
  for (const type of Object.keys(options.actors)) {
    validateActorType(type);
    if (type.startsWith(SYSTEM_TYPE_PREFIX)) throw new InvalidNameError('actor type', type, `names starting with "${SYSTEM_TYPE_PREFIX}" are reserved for natstate's own streams`);
  }
  const nodeId = options.nodeId ?? uuid();
  const { namespace } = options;

  const subjects = new Subjects(namespace, options.prefix);
  const clusterOptions = options.cluster ?? {};
  const report = (context: string) => (error: unknown) => (options.onError ?? defaultOnError)(error, context);

  let store: EventStore;
  let bus: EventBus;
  let kv: ClusterKV;
  let transport: Transport;
  let maxPayload = DEFAULT_MAX_PAYLOAD;
  let owned: NatsConnection | undefined;
  if (options.nats) {
    const nc = isConnection(options.nats) ? options.nats : (owned = await connectToNats(options.nats));
    try {
      store = await JetStreamEventStore.create(nc, { namespace, prefix: options.prefix, ...options.jetstream });
      kv = await NatsKV.create(nc, { namespace, prefix: options.prefix, ...options.jetstream });
      bus = new NATSEventBus(nc, namespace, { prefix: options.prefix, onError: report('event bus') });
      transport = new NatsTransport(nc, namespace, { prefix: options.prefix, onError: report('transport') });
      maxPayload = nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
    } catch (error) {
      await owned?.close();
      throw error;
    }
  } else {
    const network = options.network ?? new MemoryNetwork();
    store = network.store(namespace);
    bus = new LocalEventBus(namespace, network.hub, { onError: report('event bus') });
    kv = new MemoryKV(network.kvBucket(namespace));
    transport = new MemoryTransport(network.transportHub(namespace));
  }

  /** The shard count of the map this node follows (the configured one until it has a map). */
  let shardCount = clusterOptions.shards ?? 256;
  const host = new ActorHost({
    namespace,
    nodeId,
    actors: options.actors,
    store,
    bus,
    snapshotEvery: options.snapshotEvery,
    passivateAfterMs: options.passivateAfterMs,
    maxBatch: options.maxBatch,
    idempotencyWindow: options.idempotencyWindow,
    onError: options.onError ?? defaultOnError,
    // Each commit notice names its shard, so that only the shard's owner hears it.
    shardOf: (id) => shardOf(id, shardCount),
  });

  // Keep this node's version cache and resident actors in step with other writers to the
  // actors of its shards.
  const sync = new CommitSync(bus, nodeId, (n) => {
    if (n.origin === nodeId) return;
    store.updateVersionCache({ type: n.type, id: n.id }, n.version, n.sequence);
    host.noteForeignCommit(n);
  });

  // The cluster: shard map, routing, membership, leader lease and (on the leader) planning.
  const shardMap = new ShardMapStore({ kv, subjects, onError: report('shard map') });
  await shardMap.start();
  if (shardMap.current) shardCount = shardMap.current.shardCount;
  sync.follow(shardMap.current);
  await bus.flush();
  // Created before the membership and lease they ask about; only called once everything is started.
  let membership: Membership | undefined;
  let lease: LeaderLease | undefined;
  // A node that left gracefully is gone from membership at once, but it is still handing
  // its actors over: destinations hold their commands and the leader waits for its reports.
  const leftAt = new Map<string, number>();
  const isLive = (id: string) => {
    if (membership?.isLive(id)) return true;
    const at = leftAt.get(id);
    return at !== undefined && Date.now() - at < HAND_OVER_WINDOW_MS;
  };
  const migrationOptions = clusterOptions.migration === false ? undefined : (clusterOptions.migration ?? {});
  const migrations = migrationOptions
    ? new MigrationCoordinator({
        nodeId,
        host,
        transport,
        shardMap,
        isLive,
        leader: () => lease?.leader,
        maxPayload,
        ...migrationOptions,
        maxPerSecond: migrationOptions.maxPerSecond ?? MIGRATIONS_PER_SECOND[options.nats ? 'nats' : 'embedded'],
        inspect: options.inspect,
        journal: new Journal<MigrationRecord>({ store, stream: migrationJournalStream(nodeId), coalesce: true, onError: report('migration journal') }),
        onError: report('migration'),
      })
    : undefined;
  // Migrations a previous run under this node id left unfinished are closed first.
  await migrations?.recover();
  // Paces the leader's plans by their migrations (only with live migration: otherwise nothing reports shards done).
  const supervisor = migrations
    ? new RebalanceSupervisor({
        nodeId,
        store,
        isLive,
        currentMap: () => shardMap.current,
        planTimeoutMs: migrationOptions?.planTimeoutMs,
        inspect: options.inspect,
        onReady: () => coordinator?.request(false),
        onError: report('rebalance supervisor'),
      })
    : undefined;
  let coordinator: ShardCoordinator | undefined;
  const router = new Router({
    nodeId,
    host,
    shardMap,
    transport,
    maxPayload,
    requestTimeoutMs: clusterOptions.requestTimeoutMs,
    deadlineMs: clusterOptions.routeDeadlineMs,
    migrations: migrations && {
      inTransit: (type, id) => migrations.inTransit(type, id),
      admitHandoff: (type, id) => migrations.admitHandoff(type, id),
      previousOwner: (shard) => migrations.previousOwner(shard),
      handleMigrationRequest: (request) => migrations.handleMigrationRequest(request),
      handleMigrationBatch: (batch) => migrations.handleMigrationBatch(batch),
      handleShardDone: (message) => {
        migrations.handleShardDone(message);
        if (lease?.isLeader) supervisor?.shardDone(message);
      },
    },
  });
  const stopServing = await transport.serve(nodeId, router.handleRequest);
  const ownedShards = () => shardMap.current?.owners.reduce((n, owner) => (owner === nodeId ? n + 1 : n), 0) ?? 0;
  const migrationCounts = () => migrations?.counts() ?? { running: 0, completed: 0, failed: 0 };
  // When shards move: migrate resident actors to their new owners (or, with migration
  // off, drop them: their next owner recovers them from the store).
  let previousMap = shardMap.current;
  const stopFollowingMap = shardMap.subscribe((map) => {
    const previous = previousMap;
    previousMap = map;
    shardCount = map.shardCount;
    // Before the migrations start: the last commits of actors on their way here are heard.
    sync.follow(map);
    if (migrations) migrations.onMapChange(previous, map);
    else host.evict((_type, id) => map.owners[shardOf(id, map.shardCount)] !== nodeId);
  });
  membership = new Membership({
    kv,
    subjects,
    nodeId,
    heartbeatMs: clusterOptions.heartbeatMs,
    failureTimeoutMs: clusterOptions.failureTimeoutMs,
    load: () => ({ actors: host.residentCount, shards: ownedShards(), migrations: migrationCounts() }),
    onError: report('membership'),
  });
  if (clusterOptions.onMembership) membership.subscribe(clusterOptions.onMembership);
  membership.subscribe((event) => {
    if (event.type === 'join') {
      leftAt.delete(event.member.nodeId);
      if (lease?.isLeader) supervisor?.memberJoined(event.member.nodeId);
    }
    // A crashed source hands nothing over: stop holding its shards' commands at once.
    else if (event.reason === 'failed') migrations?.sourceFailed(event.nodeId);
    else if (event.reason === 'left' && event.nodeId !== nodeId) {
      leftAt.set(event.nodeId, Date.now());
      for (const [id, at] of leftAt) if (Date.now() - at >= HAND_OVER_WINDOW_MS) leftAt.delete(id);
    }
  });
  await membership.start();
  lease = new LeaderLease({ kv, subjects, nodeId, leaseMs: clusterOptions.leaseMs, onError: report('leader lease') });
  await lease.start();
  coordinator = new ShardCoordinator({
    membership,
    lease,
    shardMap,
    nodeId,
    shardCount: clusterOptions.shards ?? 256,
    maxMoves: clusterOptions.maxMoves,
    maxMovesRatio: clusterOptions.maxMovesRatio,
    planIntervalMs: clusterOptions.planIntervalMs,
    onPlan: clusterOptions.onPlan,
    onError: report('shard coordinator'),
    supervisor,
    mayHandOver: isLive,
  });
  coordinator.start();
  // Ready once a shard map exists (a lone first node publishes it at once as the leader).
  await shardMap.waitFor(() => true, (clusterOptions.leaseMs ?? 5_000) * 2).catch(() => undefined);

  let closed = false;
  let left = false;
  /** `graceful: false` is a crash: the member record and the lease stay until they time out. */
  const leaveCluster = async (graceful = true) => {
    if (left) return;
    left = true;
    coordinator.close();
    if (!graceful) return;
    await membership.leave().catch(report('membership'));
    await lease.resign().catch(report('leader lease'));
  };
  const node: NatstateNode<A> = {
    id: nodeId,
    namespace,
    send(type, id, event, commandOptions) {
      return router.send(type, id, event, commandOptions?.commandId);
    },
    ask(type, id, event, commandOptions) {
      return router.ask(type, id, event, commandOptions?.commandId) as Promise<AskResult<A[typeof type]>>;
    },
    async state(type, id) {
      const reply = await router.ask(type, id, undefined, undefined);
      return { ...(reply.state as ActorState<A[typeof type]>), version: reply.version };
    },
    subscribeToEventStored(handler, filter) {
      if (closed) throw new ClosedError(`node ${nodeId}`);
      return bus.subscribeToEventStored(handler, filter);
    },
    cluster() {
      const map = shardMap.current;
      return {
        nodeId,
        leader: lease.leader,
        isLeader: lease.isLeader,
        members: membership!.liveNodeIds(),
        epoch: map?.epoch ?? 0,
        shardCount: map?.shardCount ?? clusterOptions.shards ?? 256,
        ownedShards: ownedShards(),
        residentActors: host.residentCount,
        migrations: migrationCounts(),
        rebalance: lease!.isLeader ? supervisor?.view() : undefined,
      };
    },
    async leave(leaveOptions) {
      if (closed) return;
      await leaveCluster();
      const timeoutMs = leaveOptions?.timeoutMs ?? (clusterOptions.failureTimeoutMs ?? 5_000) * 2;
      // Keep serving until the leader has handed this node's shards to others.
      await shardMap.waitFor((map) => !map.owners.includes(nodeId), timeoutMs).catch(() => undefined);
      await node.close();
    },
    async close() {
      if (closed) return;
      closed = true;
      await leaveCluster();
      await migrations?.close();
      await host.close();
      await stopServing();
      stopFollowingMap();
      sync.close();
      await membership.close();
      await lease.close();
      shardMap.close();
      await transport.close();
      await bus.close();
      await kv.close();
      if (options.nats) await store.close();
      // What the adapters queued last (replies, notices) leaves before the connection closes.
      if (owned) await outboxOf(owned).flush().catch(() => undefined);
      await owned?.close();
    },
  };
  crashes.set(node, async () => {
    await leaveCluster(false);
    await node.close();
  });
  return node;
}

const crashes = new WeakMap<object, () => Promise<void>>();

/**
 * Internal, for the demo and specs: stops `node` as a crash would. No hand-off: its
 * shards stay assigned to it, and its member record and lease stay in the bucket until
 * the other nodes time them out and take over (its actors then recover from the store).
 * Its own resources are released like `close()` does.
 */
export async function crashNode<A extends ActorTypes>(node: NatstateNode<A>): Promise<void> {
  await crashes.get(node)?.();
}

function defaultOnError(error: unknown, context: string): void {
  process.emitWarning(`natstate ${context}: ${error instanceof Error ? error.message : String(error)}`);
}
