import type { EventObject } from 'xstate';
import { v4 as uuid } from 'uuid';
import type { SnapshotRecord } from '../codec/messages.js';
import { ClosedError, ConcurrencyError } from '../errors.js';
import { streamKey, type StreamId } from '../subjects.js';
import type { AppendOptions, AppendResult, EventStore, ReadOptions, RecordedEvent } from './eventstore.js';

interface MemoryStream {
  readonly events: RecordedEvent[];
  /** commit id → result, for idempotent retries. */
  readonly commits: Map<string, AppendResult>;
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

  async append(stream: StreamId, events: readonly EventObject[], options: AppendOptions): Promise<AppendResult> {
    this.assertOpen();
    const key = streamKey(stream);
    let s = this.streams.get(key);
    if (options.commitId !== undefined) {
      const previous = s?.commits.get(options.commitId);
      if (previous) return { ...previous, duplicate: true };
    }
    const actual = s?.events.length ?? 0;
    if (actual !== options.expectedVersion) throw new ConcurrencyError(key, options.expectedVersion, actual);
    if (events.length === 0) return { version: actual, sequence: s?.events[actual - 1]?.sequence ?? 0, duplicate: false };
    if (!s) {
      s = { events: [], commits: new Map() };
      this.streams.set(key, s);
    }
    const sequence = ++this.sequence;
    const time = Date.now();
    for (let i = 0; i < events.length; i++) {
      s.events.push({
        event: events[i],
        version: actual + i + 1,
        sequence,
        commandId: options.commandIds?.[i] ?? uuid(),
        time,
      });
    }
    const result = { version: s.events.length, sequence, duplicate: false };
    s.commits.set(options.commitId ?? uuid(), result);
    return result;
  }

  async *read(stream: StreamId, options?: ReadOptions): AsyncIterable<RecordedEvent> {
    this.assertOpen();
    const s = this.streams.get(streamKey(stream));
    if (!s) return;
    // Snapshot of the length so a concurrent append does not extend this read.
    const end = s.events.length;
    for (let i = options?.fromVersion ?? 0; i < end; i++) yield s.events[i];
  }

  async version(stream: StreamId): Promise<number> {
    this.assertOpen();
    return this.streams.get(streamKey(stream))?.events.length ?? 0;
  }

  async saveSnapshot(stream: StreamId, snapshot: SnapshotRecord): Promise<void> {
    this.assertOpen();
    this.snapshots.set(streamKey(stream), snapshot);
  }

  async loadSnapshot(stream: StreamId): Promise<SnapshotRecord | undefined> {
    this.assertOpen();
    return this.snapshots.get(streamKey(stream));
  }

  updateVersionCache(): void {
    // Nothing cached: every read sees the one shared in-process state.
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('MemoryEventStore');
  }
}
