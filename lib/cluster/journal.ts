/**
 * `Journal`: the event log of one of the framework's own machines (a node's migrations,
 * the leader's rebalance supervisor), kept in the namespace's event store like any
 * actor's stream, so that a node or leader that restarts finds what was in progress.
 *
 * Writes are group-committed behind the machine: `record` queues an event and returns at
 * once; one append is in flight at a time and carries everything queued meanwhile. A
 * crash may lose the last few records, never reorder them; the readers are written for
 * that (a migration with no final record is closed as Failed, and the actor's state is in
 * its own stream anyway). `flush` waits until everything recorded so far is stored.
 *
 * Every append carries the version this journal last saw, so a second writer of the same
 * stream (a deposed leader) gets a `ConcurrencyError` instead of interleaving its events.
 */
import type { AnyEventObject } from 'xstate';
import type { EventStore, RecordedEvent, StreamId } from '../eventstore/eventstore.js';

/** Framework streams use actor types no user type can have (see `createNode`). */
export const SYSTEM_TYPE_PREFIX = '$natstate.';

/** Bump when the shape of the checkpoint state changes: older checkpoints are then ignored. */
const CHECKPOINT_FINGERPRINT = 'natstate-journal-1';

/** Most events per commit, so one commit stays far below NATS' max_payload. */
const MAX_BATCH = 256;

export interface JournalOptions {
  readonly store: EventStore;
  readonly stream: StreamId;
  /** A write that failed; the events it carried are dropped (see above). */
  readonly onError: (error: Error) => void;
  /**
   * Let the rest of the current turn of the event loop record too before a write starts,
   * so one commit carries it all. In-process stores answer at once, so without it nearly
   * every record of a busy journal is its own commit. Only for a journal with a single
   * writer (a node's migrations): a leader's records must be stored before a successor
   * can read them.
   */
  readonly coalesce?: boolean;
}

export class Journal<E extends AnyEventObject, C extends Record<string, unknown> = Record<string, unknown>> {
  private version = 0;
  private sequence = 0;
  private queue: E[] = [];
  private writing: Promise<void> | undefined;
  private nextCommit = 0;
  private readonly commitPrefix = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}:`;

  constructor(private readonly options: JournalOptions) {}

  /**
   * Reads the journal: the newest checkpoint's state (if any) and every event recorded
   * after it. Later records continue from there.
   */
  async open(): Promise<{ checkpoint: C | undefined; events: E[] }> {
    const { store, stream } = this.options;
    let checkpoint: C | undefined;
    let fromVersion = 0;
    let fromSequence: number | undefined;
    const record = await store.loadSnapshot(stream).catch((error: unknown) => {
      this.options.onError(error instanceof Error ? error : new Error(String(error)));
      return undefined;
    });
    if (record && record.fingerprint === CHECKPOINT_FINGERPRINT) {
      checkpoint = record.state as C;
      fromVersion = record.version;
      fromSequence = record.sequence || undefined;
    }
    const events: E[] = [];
    let last: RecordedEvent | undefined;
    for await (const e of store.read(stream, { fromVersion, fromSequence })) {
      events.push(e.event as E);
      last = e;
    }
    this.version = last?.version ?? fromVersion;
    this.sequence = last?.sequence ?? record?.sequence ?? 0;
    this.queue = [];
    return { checkpoint, events };
  }

  /** Queues an event; it is stored with the next commit. */
  record(event: E): void {
    this.queue.push(event);
    this.writing ??= this.drain();
  }

  /** Resolves once every event recorded so far is stored (or its write failed and was reported). */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  /**
   * Stores the journal's checkpoint, so the next `open` starts there: `state()` must sum
   * up every event recorded so far. It is called once all of them are stored, at the
   * same moment as the version it is saved with is read; if more events arrive while
   * earlier ones are written, no checkpoint is taken (false), the next one will be.
   */
  async checkpoint(state: () => C | undefined): Promise<boolean> {
    await this.flush();
    if (this.writing || this.queue.length > 0) return false;
    const summary = state();
    if (summary === undefined) return false;
    await this.options.store.saveSnapshot(this.options.stream, {
      version: this.version,
      sequence: this.sequence,
      fingerprint: CHECKPOINT_FINGERPRINT,
      state: summary,
      recentCommands: [],
      time: Date.now(),
    });
    return true;
  }

  private async drain(): Promise<void> {
    try {
      if (this.options.coalesce) await new Promise<void>((resolve) => setImmediate(resolve));
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_BATCH);
        try {
          const commitId = this.commitPrefix + (this.nextCommit++).toString(36);
          const result = await this.options.store.append(this.options.stream, batch, {
            expectedVersion: this.version,
            commitId,
            // Records need ids too (the store would draw a random one per record); the commit's own is unique.
            commandIds: batch.map((_, i) => `${commitId}.${i}`),
          });
          this.version = result.version;
          this.sequence = result.sequence;
        } catch (error) {
          this.options.onError(error instanceof Error ? error : new Error(String(error)));
        }
      }
    } finally {
      this.writing = undefined;
    }
  }
}
