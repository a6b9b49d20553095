/**
 * `ShardMapStore`: this node's view of the shard map (shard → owning node, with an
 * epoch) kept in the cluster KV bucket. Every node watches it; only the leader
 * publishes, and each publication is revision-checked, so two publishers can never both
 * turn epoch n into their own epoch n + 1.
 *
 * The view never moves backwards: a map with a lower epoch than the current one (a
 * watch replaying, a slow reply) is ignored.
 */
import { decode, encode } from '../codec/codec.js';
import { isShardMapRecord, type ShardMapRecord } from '../codec/cluster-records.js';
import { NatstateError, TimeoutError } from '../errors.js';
import type { Subjects } from '../subjects.js';
import type { ClusterKV, KvEntry } from './kv/kv.js';

/** A shard map as read from the bucket, with the revision a successor must be written at. */
export interface ShardMap {
  readonly epoch: number;
  readonly shardCount: number;
  readonly owners: readonly (string | null)[];
  readonly leader: string;
  readonly time: number;
  readonly revision: number;
}

/** What a publisher provides; the store adds the time and learns the revision. */
export interface ShardMapDraft {
  readonly epoch: number;
  readonly shardCount: number;
  readonly owners: readonly (string | null)[];
  readonly leader: string;
}

/** A map that `publish` refuses to write: it would not pass the readers' validation. */
export class InvalidShardMapError extends NatstateError {
  constructor(readonly epoch: unknown, reason: string) {
    super('INVALID_SHARD_MAP', `shard map of epoch ${String(epoch)} is invalid: ${reason}`);
  }
}

export interface ShardMapStoreOptions {
  readonly kv: ClusterKV;
  readonly subjects: Subjects;
  /** Undecodable maps found in the bucket (they are ignored). */
  readonly onError?: (error: Error) => void;
}

export class ShardMapStore {
  private readonly key: string;
  private readonly listeners = new Set<(map: ShardMap) => void>();
  private map: ShardMap | undefined;
  private stopWatch: (() => void) | undefined;
  private closed = false;

  constructor(private readonly options: ShardMapStoreOptions) {
    this.key = options.subjects.shardMapKey;
  }

  /** Starts watching the map; resolves once the stored map (if any) is current. */
  async start(): Promise<void> {
    const stop = await this.options.kv.watch(this.key, ({ key, value, revision }) => {
      // A deleted map is not an older one: keep routing with the last known map.
      if (key === this.key && value !== undefined) this.accept({ key, value, revision });
    });
    if (this.closed) stop();
    else this.stopWatch = stop;
  }

  get current(): ShardMap | undefined {
    return this.map;
  }

  /** The owner of `shard` in the current map; undefined when unowned or when there is no map. */
  ownerOf(shard: number): string | undefined {
    return this.map?.owners[shard] ?? undefined;
  }

  /** Calls `listener` with every newer map from now on; returns the unsubscribe function. */
  subscribe(listener: (map: ShardMap) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Reads the map directly (not waiting for the watch) and resolves with the current one. */
  async refresh(): Promise<ShardMap | undefined> {
    const entry = await this.options.kv.get(this.key);
    if (entry) this.accept(entry);
    return this.map;
  }

  /** Resolves with the first map (the current one included) that satisfies `predicate`. */
  waitFor(predicate: (map: ShardMap) => boolean, timeoutMs: number): Promise<ShardMap> {
    if (this.map && predicate(this.map)) return Promise.resolve(this.map);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new TimeoutError('waiting for a shard map', timeoutMs));
      }, timeoutMs);
      timer.unref();
      const off = this.subscribe((map) => {
        if (!predicate(map)) return;
        off();
        clearTimeout(timer);
        resolve(map);
      });
    });
  }

  /**
   * Writes `next`: created when `expectedRevision` is undefined (there must be no map
   * yet), else updated only if the map is still at `expectedRevision`. Rejects with
   * `RevisionConflictError` when another publisher got there first, and with
   * `InvalidShardMapError` (before writing anything) for a map readers would reject.
   */
  async publish(next: ShardMapDraft, expectedRevision: number | undefined): Promise<ShardMap> {
    const record: ShardMapRecord = {
      epoch: next.epoch,
      shardCount: next.shardCount,
      owners: [...next.owners],
      leader: next.leader,
      time: Date.now(),
    };
    if (!isShardMapRecord(record)) {
      throw new InvalidShardMapError(next.epoch, 'expected a non-negative epoch, a positive shard count, one owner (or null) per shard and a leader');
    }
    const { kv } = this.options;
    const bytes = encode(record);
    const revision = expectedRevision === undefined ? await kv.create(this.key, bytes) : await kv.update(this.key, bytes, expectedRevision);
    const map = freeze(record, revision);
    this.adopt(map);
    // The watch may have delivered this very write first: hand out the one object.
    return this.map?.revision === revision ? this.map : map;
  }

  /** Stops watching; the last map stays readable. */
  close(): void {
    this.closed = true;
    this.stopWatch?.();
    this.stopWatch = undefined;
  }

  private accept({ key, value, revision }: KvEntry): void {
    let record: ShardMapRecord;
    try {
      record = decode(value, isShardMapRecord, `shard map ${key}`);
    } catch (error) {
      this.report(error);
      return;
    }
    this.adopt(freeze(record, revision));
  }

  private adopt(map: ShardMap): void {
    const current = this.map;
    // Same epoch at a newer revision is the same map rewritten: take it, or the next publish would conflict for ever.
    if (current && (map.epoch < current.epoch || (map.epoch === current.epoch && map.revision <= current.revision))) return;
    this.map = map;
    for (const listener of [...this.listeners]) {
      try {
        listener(map);
      } catch (error) {
        this.report(error);
      }
    }
  }

  private report(error: unknown): void {
    const reported = error instanceof Error ? error : new Error(`non-Error value thrown: ${String(error)}`, { cause: error });
    if (this.options.onError) this.options.onError(reported);
    else process.emitWarning(`natstate shard map: ${reported.message}`);
  }
}

function freeze(record: ShardMapRecord, revision: number): ShardMap {
  return Object.freeze({
    epoch: record.epoch,
    shardCount: record.shardCount,
    owners: Object.freeze([...record.owners]),
    leader: record.leader,
    time: record.time,
    revision,
  });
}
