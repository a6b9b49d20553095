/**
 * The records of cluster coordination kept in the cluster KV bucket, with their
 * validators: a member's heartbeat, the leader lease and the shard map. Each one is read
 * with `decode(bytes, isX, 'X')`, so a malformed record becomes a `DecodeError`.
 *
 * Times are epoch milliseconds by the clock of the node that wrote them. They are for
 * people and logs: no node compares its clock with another node's to decide anything.
 */
import { isNonNegativeInteger, isRecord } from './codec.js';

/** One node's heartbeat, at `Subjects.memberKey(nodeId)`. */
export interface MemberRecord {
  readonly nodeId: string;
  readonly startedAt: number;
  readonly heartbeatAt: number;
  /** Actors resident on the node when it wrote the record. */
  readonly actors: number;
  /** Shards the node owned when it wrote the record. */
  readonly shards: number;
  /** Live migrations the node ran as a source (absent in records of older nodes). */
  readonly migrations?: MigrationCounts;
}

export interface MigrationCounts {
  readonly running: number;
  readonly completed: number;
  readonly failed: number;
}

/** The leader lease, at `Subjects.leaderKey`. */
export interface LeaseRecord {
  readonly holder: string;
  /** Increases with every change of holder. */
  readonly term: number;
  readonly renewedAt: number;
}

/** The shard map, at `Subjects.shardMapKey`: the owner of every shard at one epoch. */
export interface ShardMapRecord {
  /** Increases by one with every published map. */
  readonly epoch: number;
  readonly shardCount: number;
  /** `owners[shard]`: the owning node, or null while the shard has none. */
  readonly owners: readonly (string | null)[];
  /** The leader that published this map. */
  readonly leader: string;
  readonly time: number;
}

function isTime(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

function isNodeId(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0;
}

export function isMigrationCounts(value: unknown): value is MigrationCounts {
  return isRecord(value) && isNonNegativeInteger(value.running) && isNonNegativeInteger(value.completed) && isNonNegativeInteger(value.failed);
}

export function isMemberRecord(value: unknown): value is MemberRecord {
  return (
    isRecord(value) &&
    isNodeId(value.nodeId) &&
    isTime(value.startedAt) &&
    isTime(value.heartbeatAt) &&
    isNonNegativeInteger(value.actors) &&
    isNonNegativeInteger(value.shards) &&
    (value.migrations === undefined || isMigrationCounts(value.migrations))
  );
}

export function isLeaseRecord(value: unknown): value is LeaseRecord {
  return isRecord(value) && isNodeId(value.holder) && isNonNegativeInteger(value.term) && isTime(value.renewedAt);
}

export function isShardMapRecord(value: unknown): value is ShardMapRecord {
  return (
    isRecord(value) &&
    isNonNegativeInteger(value.epoch) &&
    isNonNegativeInteger(value.shardCount) &&
    value.shardCount > 0 &&
    Array.isArray(value.owners) &&
    value.owners.length === value.shardCount &&
    value.owners.every((owner) => owner === null || isNodeId(owner)) &&
    isNodeId(value.leader) &&
    isTime(value.time)
  );
}
