/**
 * Messages between nodes when a command is routed to the actor's owner. Every reply,
 * including a failure, is encoded into the reply bytes, so the sender always gets a typed
 * answer (or a transport error) and never an ambiguous silence.
 */
import type { AnyEventObject } from 'xstate';
import { isEventObject, isNonNegativeInteger, isRecord } from './codec.js';

export interface RouteRequest {
  readonly kind?: 'command';
  readonly type: string;
  readonly id: string;
  /** Absent for a state query. */
  readonly event?: AnyEventObject;
  readonly commandId: string;
  /** Shard-map epoch the sender routed with. */
  readonly epoch: number;
  /** The sender wants the actor's state in the reply (`ask`, `state`). */
  readonly wantState: boolean;
  /**
   * Forwarded by the actor's new owner while the actor is on its way there: the old owner
   * serves it if the actor is still here (or waits until its hand-over ends) and answers
   * `not-owner` once it is gone, whatever the map says.
   */
  readonly handoff?: boolean;
}

export interface RoutedState {
  readonly value: unknown;
  readonly context: unknown;
  readonly status: 'active' | 'done' | 'error' | 'stopped';
}

export type RouteReply =
  | {
      readonly kind: 'ok';
      readonly accepted: boolean;
      readonly version: number;
      readonly commandId: string;
      readonly duplicate: boolean;
      readonly state?: RoutedState;
    }
  /** The receiver does not own the actor's shard in its map at `epoch`. */
  | { readonly kind: 'not-owner'; readonly epoch: number; readonly owner: string | null }
  /** The command failed on the owner; `code` is a `NatstateError` code. */
  | { readonly kind: 'error'; readonly code: string; readonly name: string; readonly message: string; readonly details?: Record<string, unknown> };

/**
 * Live migration of one actor from its old owner (the source) to its new owner: the
 * actor's state as XState persisted it, at `version`, with the command ids it applied
 * recently, so the destination can serve its next command without a replay.
 */
export interface MigrationRequest {
  readonly kind: 'migrate';
  readonly type: string;
  readonly id: string;
  readonly version: number;
  /** Store position of the event at `version` (0 when unknown). */
  readonly sequence: number;
  /** Fingerprint of the machine the state was produced by. */
  readonly fingerprint: string;
  /** `machine.getPersistedSnapshot(...)`. */
  readonly state: unknown;
  /** What a source sends: `RecentCommandHashes`; earlier sources sent `RecentCommandLists`, still accepted. */
  readonly recentCommands: RecentCommandHashes | RecentCommandLists;
  readonly from: string;
  /** Shard-map epoch in which the actor's shard moved. */
  readonly epoch: number;
}

/** Most actors one `MigrationBatch` may carry (a source sends far fewer, see `batchSize`). */
export const MAX_MIGRATION_BATCH = 1024;

/**
 * Several actors of one shard migrating from one source to one destination in a single
 * request: one round trip, one delivery and one reply instead of one each per actor. Each
 * entry is checked and installed on its own, exactly as a lone `MigrationRequest` is.
 */
export interface MigrationBatch {
  readonly kind: 'migrate-batch';
  readonly actors: readonly MigrationRequest[];
}

/** The destination's answer to a `MigrationBatch`: one reply per actor, in the batch's order. */
export interface MigrationBatchReply {
  readonly kind: 'migrated';
  readonly replies: readonly MigrationReply[];
}

/**
 * The source finished every migration of `shard` for `epoch`. Sent to the destination
 * (stop holding the shard's commands) and to the leader (the plan's progress).
 */
export interface ShardDone {
  readonly kind: 'shard-done';
  readonly shard: number;
  readonly epoch: number;
  readonly from: string;
  /** False when any of the shard's migrations failed (those actors recover from the store). */
  readonly ok: boolean;
}

export type MigrationReply =
  | { readonly kind: 'ack'; readonly installed: boolean }
  /** Refused; `retryable` says whether sending it again could succeed. */
  | { readonly kind: 'nack'; readonly reason: string; readonly retryable: boolean };

export type NodeRequest = RouteRequest | MigrationRequest | MigrationBatch | ShardDone;

/**
 * The command ids an actor applied recently, oldest first, each with the version it
 * produced (`versions[i]` for `ids[i]`), so that its new owner answers a retried command
 * as a duplicate. Two lists rather than a pair per command: with an actor's usual few
 * dozen ids, the pairs were half the bytes of a migration and most of its encoding,
 * decoding and checking (an array each). Sources before `RecentCommandHashes` sent this;
 * a destination still installs it.
 */
export interface RecentCommandLists {
  readonly ids: readonly string[];
  readonly versions: readonly number[];
}

/**
 * The same commands by hash (`hashOf` in `actors/recent-commands.ts`: FNV-1a over the
 * id's UTF-16 code units, cut to 30 bits), oldest first, `versions[i]` for `hashes[i]`.
 * Small integers only: encoding them reads none of the ids, which lie scattered across
 * the source's heap. The destination reads an id from the store (the event at its
 * version) only when a command's hash matches (ARCHITECTURE.md, "Migrations carry
 * hashes").
 */
export interface RecentCommandHashes {
  readonly hashes: readonly number[];
  readonly versions: readonly number[];
}

function isRecentCommands(value: unknown): value is RecentCommandHashes | RecentCommandLists {
  if (!isRecord(value) || !Array.isArray(value.versions)) return false;
  const versions = value.versions as unknown[];
  if (Array.isArray(value.hashes) && value.ids === undefined) {
    const hashes = value.hashes as unknown[];
    if (hashes.length !== versions.length) return false;
    for (let i = 0; i < hashes.length; i++) if (!isNonNegativeInteger(hashes[i]) || (hashes[i] as number) >= 2 ** 30 || !isNonNegativeInteger(versions[i])) return false;
    return true;
  }
  if (!Array.isArray(value.ids) || value.hashes !== undefined || value.ids.length !== versions.length) return false;
  const ids = value.ids as unknown[];
  for (let i = 0; i < ids.length; i++) if (typeof ids[i] !== 'string' || !isNonNegativeInteger(versions[i])) return false;
  return true;
}

export function isMigrationRequest(value: unknown): value is MigrationRequest {
  return (
    isRecord(value) &&
    value.kind === 'migrate' &&
    typeof value.type === 'string' &&
    typeof value.id === 'string' &&
    isNonNegativeInteger(value.version) &&
    isNonNegativeInteger(value.sequence) &&
    typeof value.fingerprint === 'string' &&
    isRecord(value.state) &&
    isRecentCommands(value.recentCommands) &&
    typeof value.from === 'string' &&
    isNonNegativeInteger(value.epoch)
  );
}

export function isMigrationBatch(value: unknown): value is MigrationBatch {
  return (
    isRecord(value) &&
    value.kind === 'migrate-batch' &&
    Array.isArray(value.actors) &&
    value.actors.length > 0 &&
    value.actors.length <= MAX_MIGRATION_BATCH &&
    value.actors.every(isMigrationRequest)
  );
}

export function isShardDone(value: unknown): value is ShardDone {
  return (
    isRecord(value) &&
    value.kind === 'shard-done' &&
    isNonNegativeInteger(value.shard) &&
    isNonNegativeInteger(value.epoch) &&
    typeof value.from === 'string' &&
    typeof value.ok === 'boolean'
  );
}

export function isNodeRequest(value: unknown): value is NodeRequest {
  if (!isRecord(value)) return false;
  switch (value.kind) {
    case 'migrate':
      return isMigrationRequest(value);
    case 'migrate-batch':
      return isMigrationBatch(value);
    case 'shard-done':
      return isShardDone(value);
    default:
      return isRouteRequest(value);
  }
}

export function isMigrationReply(value: unknown): value is MigrationReply {
  if (!isRecord(value)) return false;
  if (value.kind === 'ack') return typeof value.installed === 'boolean';
  return value.kind === 'nack' && typeof value.reason === 'string' && typeof value.retryable === 'boolean';
}

/**
 * The reply to `count` actors: a `MigrationBatchReply` with exactly `count` replies, or a
 * lone reply (for one actor, any; for several, only a refusal answers them all).
 */
export function isMigrationBatchReply(count: number): (value: unknown) => value is MigrationBatchReply | MigrationReply {
  return (value: unknown): value is MigrationBatchReply | MigrationReply =>
    (isMigrationReply(value) && (count === 1 || value.kind === 'nack')) ||
    (isRecord(value) && value.kind === 'migrated' && Array.isArray(value.replies) && value.replies.length === count && value.replies.every(isMigrationReply));
}

export function isRouteRequest(value: unknown): value is RouteRequest {
  return (
    isRecord(value) &&
    (value.kind === undefined || value.kind === 'command') &&
    typeof value.type === 'string' &&
    typeof value.id === 'string' &&
    (value.event === undefined || isEventObject(value.event)) &&
    typeof value.commandId === 'string' &&
    value.commandId.length > 0 &&
    isNonNegativeInteger(value.epoch) &&
    typeof value.wantState === 'boolean' &&
    (value.handoff === undefined || typeof value.handoff === 'boolean')
  );
}

const STATUSES = new Set(['active', 'done', 'error', 'stopped']);

export function isRouteReply(value: unknown): value is RouteReply {
  if (!isRecord(value)) return false;
  switch (value.kind) {
    case 'ok':
      return (
        typeof value.accepted === 'boolean' &&
        isNonNegativeInteger(value.version) &&
        typeof value.commandId === 'string' &&
        typeof value.duplicate === 'boolean' &&
        (value.state === undefined || (isRecord(value.state) && STATUSES.has(value.state.status as string)))
      );
    case 'not-owner':
      return isNonNegativeInteger(value.epoch) && (value.owner === null || typeof value.owner === 'string');
    case 'error':
      return (
        typeof value.code === 'string' &&
        typeof value.name === 'string' &&
        typeof value.message === 'string' &&
        (value.details === undefined || isRecord(value.details))
      );
    default:
      return false;
  }
}
