/**
 * The `EventStore` port. A stream holds one actor's events; its version is the number
 * of events in it (a new stream is at version 0). An append is one atomic commit of
 * 1..n events, accepted only when the stream is at `expectedVersion`.
 */
import type { AnyEventObject } from 'xstate';
import type { SnapshotRecord } from '../codec/messages.js';
import type { StreamId } from '../subjects.js';

export type { StreamId } from '../subjects.js';
export type { SnapshotRecord } from '../codec/messages.js';

export interface AppendOptions {
  /** The stream's version the caller based these events on. */
  readonly expectedVersion: number;
  /** One command id per event (generated when absent); kept with the events. */
  readonly commandIds?: readonly string[];
  /**
   * Idempotency key of this commit. Retrying an append with the same commit id after
   * a lost acknowledgement stores it once (JetStream `Nats-Msg-Id` dedupe).
   */
  readonly commitId?: string;
}

export interface AppendResult {
  /** Stream version after the commit. */
  readonly version: number;
  /** Store position of the commit. */
  readonly sequence: number;
  /** True when the store recognised the commit id and stored nothing new. */
  readonly duplicate: boolean;
}

export interface RecordedEvent {
  readonly event: AnyEventObject;
  /** Version of the stream once this event is applied (1 for the first event). */
  readonly version: number;
  /** Store position of the commit that holds the event. */
  readonly sequence: number;
  readonly commandId: string;
  /** Epoch milliseconds of the commit. */
  readonly time: number;
}

export interface ReadOptions {
  /** Yield only events with a version above this (0, the default, reads everything). */
  readonly fromVersion?: number;
  /**
   * Store position known to hold version `fromVersion` (from a snapshot), so the
   * store can start reading there instead of at the stream's beginning.
   */
  readonly fromSequence?: number;
}

export interface EventStore {
  append(stream: StreamId, events: readonly AnyEventObject[], options: AppendOptions): Promise<AppendResult>;
  read(stream: StreamId, options?: ReadOptions): AsyncIterable<RecordedEvent>;
  /** The stream's current version (0 when it has no events). */
  version(stream: StreamId): Promise<number>;
  /**
   * The stream's version as this store last saw it (its own appends and reads, and the
   * hints it was given), without a round trip; undefined when it has not seen the stream.
   * It may lag behind the store and runs ahead of it only after a false hint or when the
   * stream was deleted or purged under the store, so it is only a shortcut for checks
   * that `append`'s fencing backs anyway. An in-process store knows every stream.
   */
  knownVersion(stream: StreamId): number | undefined;
  saveSnapshot(stream: StreamId, snapshot: SnapshotRecord): Promise<void>;
  loadSnapshot(stream: StreamId): Promise<SnapshotRecord | undefined>;
  /**
   * Tells the store that `stream` reached `version` (at store position `sequence`)
   * through another writer. Stores that cache versions use it to avoid a round trip;
   * a wrong hint may cost a retry, never a wrong write.
   */
  updateVersionCache(stream: StreamId, version: number, sequence?: number): void;
  close(): Promise<void>;
}
