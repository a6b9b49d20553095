/** The public surface of natstate. */
export { createNode } from './node.js';
export type { ActorTypes, NodeOptions, NatstateNode, CommandOptions, SendResult, AskResult, ActorState, ClusterOptions, ClusterStatus } from './node.js';
export { MemoryNetwork } from './memory-network.js';
export { createMemoryCluster, type MemoryCluster, type MemoryClusterOptions } from './memory-cluster.js';
export { shardOf, rebalanceShards, initialOwners, NoNodesError, PlacementArgumentError, type RebalanceOptions, type ShardMove, type Rebalance } from './cluster/placement.js';

export type { EventStore, AppendOptions, AppendResult, RecordedEvent, ReadOptions, StreamId, SnapshotRecord } from './eventstore/eventstore.js';
export { MemoryEventStore } from './eventstore/memory.js';
export { JetStreamEventStore, type JetStreamEventStoreOptions } from './eventstore/jetstream.js';

export type { EventBus, EventStored, EventStoredFilter, EventStoredHandler, Unsubscribe } from './eventbus/eventbus.js';
export { LocalEventBus, LocalEventHub } from './eventbus/local.js';
export { NATSEventBus, type NATSEventBusOptions } from './eventbus/nats.js';

export { machineFingerprint } from './actors/fingerprint.js';
export { MAX_ACTOR_ID_BYTES, MAX_NAMESPACE_BYTES, MAX_ACTOR_TYPE_BYTES } from './subjects.js';
export {
  NatstateError,
  ConcurrencyError,
  InvalidActorIdError,
  InvalidNameError,
  UnknownActorTypeError,
  InvalidEventError,
  DecodeError,
  EncodeError,
  PayloadTooLargeError,
  TimeoutError,
  ClosedError,
  EventStoreError,
  ServerCapabilityError,
  NotOwnerError,
  RemoteError,
  MigrationBufferFullError,
  MigrationOptionError,
  NatsConnectionError,
  NatsAuthorizationError,
} from './errors.js';
export type { ActorMigration } from './cluster/migration.js';
export type { MembershipEvent } from './cluster/membership.js';
export type { MemberRecord, MigrationCounts } from './codec/cluster-records.js';
export type { MigrationStatus } from '../machines/migration.machine.js';
export { NoRespondersError } from './cluster/transport/transport.js';
export { RevisionConflictError } from './cluster/kv/kv.js';
export { ShardCountMismatchError } from './cluster/coordinator.js';
