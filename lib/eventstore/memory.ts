import type { AnyEventObject as EventObject } from 'xstate';
import { v4 as uuid } from 'uuid';
import type { SnapshotRecord } from '../codec/messages.js';
import { ClosedError, ConcurrencyError } from '../errors.js';
import { streamKey, validateActorId, validateActorType, type StreamId } from '../subjects.js';
import type { AppendOptions, AppendResult, EventStore, ReadOptions, RecordedEvent } from './eventstore.js';

/**
 * One atomic append, kept as a whole: fewer objects than one record per event. A commit
 * of one event (nearly all of them) keeps the event and its command id themselves; a
 * bigger one keeps right-sized copies of the caller's arrays. The caller's arrays grew by
 * push to room for 17 items: kept for the life of the store, those two were over half the
 * memory an in-process command retained.
 */
interface Commit {
  /** Version before the commit. */
  readonly base: number;
  readonly size: number;
  readonly sequence: number;
  /** Milliseconds since the store's `origin`: a small integer, not a boxed number per commit. */
  readonly time: number;
  readonly events: EventObject | readonly EventObject[];
  readonly commandIds: string | readonly string[];
  /** Dropped once `DEDUPE_WINDOW` newer commits follow: nothing looks further back. */
  commitId: string | undefined;
}

function eventAt(c: Commit, i: number): EventObject {
  return c.size === 1 ? (c.events as EventObject) : (c.events as readonly EventObject[])[i];
}

function commandIdAt(c: Commit, i: number): string {
  return c.size === 1 ? (c.commandIds as string) : (c.commandIds as readonly string[])[i];
}

interface MemoryStream {
  readonly commits: Commit[];
  version: number;
}

/** Recent commits searched for a retried commit id (JetStream keeps a time window instead). */
const DEDUPE_WINDOW = 64;

/** The commit with `commitId` among the stream's last `DEDUPE_WINDOW`, newest first. */
function recentCommit(s: MemoryStream, commitId: string): Commit | undefined {
  for (let i = s.commits.length - 1; i >= 0 && i >= s.commits.length - DEDUPE_WINDOW; i--) {
    if (s.commits[i].commitId === commitId) return s.commits[i];
  }
  return undefined;
}

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
  private readonly origin = Date.now();

  async append(stream: StreamId, events: readonly EventObject[], options: AppendOptions): Promise<AppendResult> {
    const key = this.key(stream);
    let s = this.streams.get(key);
    const actual = s?.version ?? 0;
    if (actual !== options.expectedVersion) {
      // A retried commit was based on a version the stream has moved past (every commit
      // stored adds at least one event), so only a mismatch needs the window searched: the
      // append of a fresh commit, nearly every one, keeps no index of commit ids.
      const previous = s && options.commitId !== undefined ? recentCommit(s, options.commitId) : undefined;
      if (previous) return { version: previous.base + previous.size, sequence: previous.sequence, duplicate: true };
      throw new ConcurrencyError(key, options.expectedVersion, actual);
    }
    if (events.length === 0) return { version: actual, sequence: s?.commits[s.commits.length - 1]?.sequence ?? 0, duplicate: false };
    if (!s) this.streams.set(key, (s = { commits: [], version: 0 }));
    const sequence = ++this.sequence;
    const commandIds = options.commandIds ?? events.map(() => uuid());
    const one = events.length === 1;
    s.commits.push({
      base: actual,
      size: events.length,
      sequence,
      time: Date.now() - this.origin,
      events: one ? events[0] : events.slice(),
      commandIds: one ? commandIds[0] : commandIds.slice(),
      commitId: options.commitId,
    });
    const aged = s.commits[s.commits.length - 1 - DEDUPE_WINDOW];
    if (aged) aged.commitId = undefined;
    s.version = actual + events.length;
    return { version: s.version, sequence, duplicate: false };
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
      if (c.base + c.size <= from) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < end; i++) {
      const c = s.commits[i];
      for (let j = Math.max(0, from - c.base); j < c.size; j++) {
        yield { event: eventAt(c, j), version: c.base + j + 1, sequence: c.sequence, commandId: commandIdAt(c, j), time: this.origin + c.time };
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
