/**
 * The messages natstate writes to NATS, with their validators. Each one is decoded
 * with `decode(bytes, isX, 'X')` so a malformed message becomes a `DecodeError`.
 */
import type { EventObject } from 'xstate';
import { isEventObject, isNonNegativeInteger, isRecord } from './codec.js';

/** One JetStream message in an actor's stream: 1..n events appended atomically. */
export interface CommitRecord {
  /** Idempotency key of the append (also the `Nats-Msg-Id`). */
  readonly commitId: string;
  /** Version of the stream after this commit (number of events including these). */
  readonly version: number;
  /** Epoch milliseconds when the commit was written. */
  readonly time: number;
  readonly events: readonly EventObject[];
  /** The command id of each event, same order and length as `events`. */
  readonly commandIds: readonly string[];
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string');
}

export function isCommitRecord(value: unknown): value is CommitRecord {
  return (
    isRecord(value) &&
    typeof value.commitId === 'string' &&
    isNonNegativeInteger(value.version) &&
    typeof value.time === 'number' &&
    Array.isArray(value.events) &&
    value.events.length > 0 &&
    value.events.every(isEventObject) &&
    isStringArray(value.commandIds) &&
    value.commandIds.length === value.events.length &&
    value.version >= value.events.length
  );
}

/** A stored actor snapshot (XState persisted snapshot plus what recovery needs). */
export interface SnapshotRecord {
  /** Stream version the snapshot reflects. */
  readonly version: number;
  /** Store position of the event at `version` (0 when the store has none). */
  readonly sequence: number;
  /** Fingerprint of the machine that produced it; a mismatch means "ignore". */
  readonly fingerprint: string;
  /** `machine.getPersistedSnapshot(...)` output. */
  readonly state: unknown;
  /** Recently applied command ids with the version each produced, for idempotency after recovery. */
  readonly recentCommands: readonly (readonly [commandId: string, version: number])[];
  readonly time: number;
}

function isRecentCommands(value: unknown): value is [string, number][] {
  return Array.isArray(value) && value.every((c) => Array.isArray(c) && c.length === 2 && typeof c[0] === 'string' && isNonNegativeInteger(c[1]));
}

export function isSnapshotRecord(value: unknown): value is SnapshotRecord {
  return (
    isRecord(value) &&
    isNonNegativeInteger(value.version) &&
    isNonNegativeInteger(value.sequence) &&
    typeof value.fingerprint === 'string' &&
    isRecord(value.state) &&
    isRecentCommands(value.recentCommands) &&
    typeof value.time === 'number'
  );
}

/** Broadcast after a commit is stored, so other nodes and subscribers learn of it. */
export interface EventStored {
  readonly namespace: string;
  readonly type: string;
  readonly id: string;
  /** Stream version after the commit. */
  readonly version: number;
  /** Store position of the commit (JetStream stream sequence; a counter in memory). */
  readonly sequence: number;
  readonly events: readonly EventObject[];
  readonly commandIds: readonly string[];
  /** Node that wrote the commit. */
  readonly origin: string;
  /**
   * The actor's shard in the writer's shard map (absent outside a cluster). Notifications
   * travel per shard, so each node hears about the shards it owns and no others.
   */
  readonly shard?: number;
}

export function isEventStored(value: unknown): value is EventStored {
  return (
    isRecord(value) &&
    typeof value.namespace === 'string' &&
    typeof value.type === 'string' &&
    typeof value.id === 'string' &&
    isNonNegativeInteger(value.version) &&
    isNonNegativeInteger(value.sequence) &&
    Array.isArray(value.events) &&
    value.events.every(isEventObject) &&
    isStringArray(value.commandIds) &&
    typeof value.origin === 'string' &&
    (value.shard === undefined || isNonNegativeInteger(value.shard))
  );
}
