/**
 * The `ClusterKV` port: the small key-value contract that membership, the leader lease
 * and the shard map are built on. Writes are revision-checked so that two nodes can
 * never both win a race (`create` when absent, `update` at a known revision).
 * Adapters: `MemoryKV` (embedded) and `NatsKV` (a JetStream KV bucket).
 */
import { NatstateError } from '../../errors.js';

export interface KvEntry {
  readonly key: string;
  readonly value: Uint8Array;
  /** Increases with every write to the bucket; the precondition of `update`. */
  readonly revision: number;
}

/** A change seen by `watch`: a new value, or `value: undefined` when the key was deleted. */
export interface KvChange {
  readonly key: string;
  readonly value: Uint8Array | undefined;
  readonly revision: number;
}

/** `create` found the key present, or `update` found another revision. Nothing was written. */
export class RevisionConflictError extends NatstateError {
  constructor(
    readonly key: string,
    readonly expectedRevision: number | undefined,
  ) {
    super(
      'REVISION_CONFLICT',
      expectedRevision === undefined ? `key ${key} already exists` : `key ${key} is no longer at revision ${expectedRevision}`,
    );
  }
}

export interface ClusterKV {
  get(key: string): Promise<KvEntry | undefined>;
  /** Writes only if the key is absent (or deleted); returns the new revision. */
  create(key: string, value: Uint8Array): Promise<number>;
  /** Writes only if the key is at `revision`; returns the new revision. */
  update(key: string, value: Uint8Array, revision: number): Promise<number>;
  put(key: string, value: Uint8Array): Promise<number>;
  delete(key: string): Promise<void>;
  /**
   * Calls `handler` with every current entry under `prefix` (in key order), then with
   * every later change, in revision order. A prefix ending in `.` selects every key below
   * it (`members.` → `members.a`, `members.b`); any other prefix selects exactly that
   * key; `''` selects the whole bucket. Resolves once the current entries were
   * delivered; the returned function stops the watch.
   */
  watch(prefix: string, handler: (change: KvChange) => void): Promise<() => void>;
  close(): Promise<void>;
}
