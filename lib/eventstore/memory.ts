import type { AnyEventObject as EventObject } from 'xstate';
import { v4 as uuid } from 'uuid';
import type { SnapshotRecord } from '../codec/messages.js';
import { ClosedError, ConcurrencyError } from '../errors.js';
import { streamKey, validateActorId, validateActorType, type StreamId } from '../subjects.js';
import type { AppendOptions, AppendResult, EventStore, ReadOptions, RecordedEvent } from './eventstore.js';

/** One atomic append, kept as a whole: fewer objects than one record per event. */
interface Commit {
  /** Version before the commit. */
  readonly base: number;
  readonly sequence: number;
  readonly time: number;
  readonly events: readonly EventObject[];
  readonly commandIds: readonly string[];
}

interface MemoryStream {
  readonly commits: Commit[];
  version: number;
  /** Recent commit ids → their result, oldest first, bounded by DEDUPE_WINDOW. */
  readonly recent: Map<string, AppendResult>;
}

/** Recent commits searched for a retried commit id (JetStream keeps a time window instead). */
const DEDUPE_WINDOW = 64;

/**
 * In-process `EventStore`: the embedded default and the reference the JetStream adapter
 * is checked against. Several nodes in one process may share one instance.
 * Events are kept by reference: callers must not mutate an event after appending it.
 */
export class MemoryEventStore implements EventStore {
  private readonly streams = new Map<string, MemoryStream>();
  private readonly snapshots = new Map<string, SnapshotRecord>();
  private sequence = 0;
  private closed = false;

  async append(stream: StreamId, events: readonly EventObject[], options: AppendOptions): Promise<AppendResult> {
    const key = this.key(stream);
    let s = this.streams.get(key);
    const previous = options.commitId === undefined ? undefined : s?.recent.get(options.commitId);
    if (previous) return { ...previous, duplicate: true };
    const actual = s?.version ?? 0;
    if (actual !== options.expectedVersion) throw new ConcurrencyError(key, options.expectedVersion, actual);
    if (events.length === 0) return { version: actual, sequence: s?.commits[s.commits.length - 1]?.sequence ?? 0, duplicate: false };
    if (!s) this.streams.set(key, (s = { commits: [], version: 0, recent: new Map() }));
    const sequence = ++this.sequence;
    const commandIds = options.commandIds ?? events.map(() => uuid());
    s.commits.push({ base: actual, sequence, time: Date.now(), events, commandIds });
    s.version = actual + events.length;
    const result = { version: s.version, sequence, duplicate: false };
    if (options.commitId !== undefined) {
      s.recent.set(options.commitId, result);
      if (s.recent.size > DEDUPE_WINDOW) s.recent.delete(s.recent.keys().next().value as string);
    }
    return result;
  }

  async *read(stream: StreamId, options?: ReadOptions): AsyncIterable<RecordedEvent> {
    const s = this.streams.get(this.key(stream));
    if (!s) return;
    const from = options?.fromVersion ?? 0;
    // Bound the read to the commits present now, so a concurrent append does not extend it.
    const end = s.commits.length;
    let lo = 0;
    let hi = end;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const c = s.commits[mid];
      if (c.base + c.events.length <= from) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < end; i++) {
      const c = s.commits[i];
      for (let j = Math.max(0, from - c.base); j < c.events.length; j++) {
        yield { event: c.events[j], version: c.base + j + 1, sequence: c.sequence, commandId: c.commandIds[j], time: c.time };
      }
    }
  }

  async version(stream: StreamId): Promise<number> {
    return this.streams.get(this.key(stream))?.version ?? 0;
  }

  knownVersion(stream: StreamId): number | undefined {
    // One shared in-process state: what it knows is the truth.
    return this.streams.get(this.key(stream))?.version ?? 0;
  }

  async saveSnapshot(stream: StreamId, snapshot: SnapshotRecord): Promise<void> {
    this.snapshots.set(this.key(stream), snapshot);
  }

  async loadSnapshot(stream: StreamId): Promise<SnapshotRecord | undefined> {
    return this.snapshots.get(this.key(stream));
  }

  updateVersionCache(): void {
    // Nothing cached: every read sees the one shared in-process state.
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private key(stream: StreamId): string {
    if (this.closed) throw new ClosedError('MemoryEventStore');
    validateActorType(stream.type);
    validateActorId(stream.id);
    return streamKey(stream);
  }
}
