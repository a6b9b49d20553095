/**
 * JetStream adapter of the `EventStore` port. One stream per namespace holds every
 * actor's commits, one message per commit on the actor's own subject; snapshots live
 * in a KV bucket. Optimistic concurrency uses `Nats-Expected-Last-Subject-Sequence`
 * (nats-server 2.9), fed by a version cache that is only ever a hint: the server
 * rejects a publish based on a stale entry, and the store then re-reads the truth.
 */
import { createHash } from 'node:crypto';
import {
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  PubHeaders,
  RetentionPolicy,
  StorageType,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
  type PubAck,
} from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { MsgHdrsImpl, headers, type Msg, type NatsConnection } from '@nats-io/nats-core';
import { v4 as uuid } from 'uuid';
import type { AnyEventObject } from 'xstate';
import { DEFAULT_MAX_PAYLOAD, decode, encodeWithin, utf8 } from '../codec/codec.js';
import { isCommitRecord, isSnapshotRecord, type CommitRecord, type SnapshotRecord } from '../codec/messages.js';
import { isJetStreamNotEnabled, resolveJetStreamOptions } from '../nats/jetstream-options.js';
import {
  ClosedError,
  ConcurrencyError,
  EventStoreError,
  NatstateError,
  ServerCapabilityError,
  TimeoutError,
} from '../errors.js';
import { ReplyMux } from '../nats/reply-mux.js';
import {
  Subjects,
  encodeToken,
  streamKey,
  validateActorId,
  validateActorType,
  type StreamId,
} from '../subjects.js';
import type { AppendOptions, AppendResult, EventStore, ReadOptions, RecordedEvent } from './eventstore.js';
import { createBucket, createRacingOthers } from '../nats/concurrent-create.js';

export interface JetStreamEventStoreOptions {
  readonly namespace: string;
  /** Subject prefix, default `DEFAULT_PREFIX`. */
  readonly prefix?: string;
  /** Replicas of the event stream and the snapshot bucket, default 1. */
  readonly replicas?: number;
  /** Default 'file'. */
  readonly storage?: 'file' | 'memory';
  /** Deadline of each JetStream request, default 5000 ms. */
  readonly timeoutMs?: number;
}

/** What the store believes an actor's stream looks like: its version and last sequence. */
interface StreamPosition {
  readonly version: number;
  /** Stream sequence of the actor's last commit, 0 when it has none. */
  readonly sequence: number;
}

/** The stream as the server reports it, with its last commit when there is one. */
interface ServerPosition extends StreamPosition {
  readonly last?: CommitRecord;
}

const EMPTY: ServerPosition = { version: 0, sequence: 0 };
/** Bound on the version cache; the oldest entries go first (they only save a lookup). */
const MAX_CACHED_STREAMS = 100_000;
/** Publish attempts of one commit after a lost acknowledgement (same Nats-Msg-Id each time). */
const PUBLISH_ATTEMPTS = 3;
/** Rounds of "rejected as stale, re-read, publish again" before giving up. */
const STALE_RETRIES = 5;
/** Messages requested per pull while replaying a stream. */
const READ_BATCH = 1024;
/** The ack says the server stored nothing because another commit came first. */
const WRONG_LAST_SEQUENCE = Symbol('wrong last sequence');
const UTF8 = new TextDecoder();

type PublishOutcome = { readonly ack: Pick<PubAck, 'seq' | 'duplicate'>; readonly retried: boolean } | typeof WRONG_LAST_SEQUENCE;

export class JetStreamEventStore implements EventStore {
  /** Largest message the server accepts (its `max_payload`). */
  readonly maxPayload: number;
  private readonly subjects: Subjects;
  private readonly streamName: string;
  private readonly cache = new Map<string, StreamPosition>();
  private closed = false;
  /** Commits are published through it rather than `js.publish` (see `ReplyMux`). */
  private readonly mux: ReplyMux;

  private constructor(
    nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly kv: KV,
    subjects: Subjects,
    maxPayload: number,
    private readonly timeoutMs: number,
  ) {
    this.subjects = subjects;
    this.streamName = subjects.eventStream;
    this.maxPayload = maxPayload;
    // Only its reply subscription can fail, and every publish waiting on it fails with that error.
    this.mux = new ReplyMux(nc, { owner: 'JetStreamEventStore', onError: () => {} });
  }

  /**
   * Binds to the namespace's event stream and snapshot bucket, creating them when
   * missing. The caller owns `nc`: `close()` leaves it open.
   */
  static async create(nc: NatsConnection, options: JetStreamEventStoreOptions): Promise<JetStreamEventStore> {
    const { subjects, replicas, storage, timeoutMs } = resolveJetStreamOptions(nc, options, 'stores events in JetStream');
    const info = nc.info;

    let jsm: JetStreamManager;
    try {
      jsm = await jetstreamManager(nc, { timeout: timeoutMs });
    } catch (err) {
      if (isJetStreamNotEnabled(err)) {
        throw new ServerCapabilityError(`JetStream is not enabled for this account: ${(err as Error).message}`, { cause: err });
      }
      throw toStoreError(subjects.eventStream, 'connecting to JetStream', err);
    }
    try {
      await ensureStream(jsm, subjects, replicas, storage);
      const js = jsm.jetstream();
      const kv = await createBucket(js, subjects.snapshotBucket, { replicas, storage, timeoutMs });
      return new JetStreamEventStore(nc, js, jsm, kv, subjects, info?.max_payload ?? DEFAULT_MAX_PAYLOAD, timeoutMs);
    } catch (err) {
      throw toStoreError(subjects.eventStream, 'creating the event stream and snapshot bucket', err);
    }
  }

  async append(stream: StreamId, events: readonly AnyEventObject[], options: AppendOptions): Promise<AppendResult> {
    this.assertOpen();
    const key = checkedKey(stream);
    const subject = this.subjects.events(stream);
    const expected = options.expectedVersion;

    if (events.length === 0) {
      const now = await this.fetchPosition(key, subject);
      if (now.version !== expected) throw new ConcurrencyError(key, expected, now.version);
      return { version: now.version, sequence: now.sequence, duplicate: false };
    }

    const commitId = options.commitId ?? uuid();
    const record: CommitRecord = {
      commitId,
      version: expected + events.length,
      time: Date.now(),
      events,
      commandIds: events.map((_, i) => options.commandIds?.[i] ?? uuid()),
    };
    const msgId = messageId(subject, commitId);
    const data = encodeWithin(record, this.maxPayload - headerBytes(msgId), `commit of ${events.length} event(s) to ${key}`);

    let position: StreamPosition | undefined = this.cache.get(key);
    if (!position || position.version !== expected) position = await this.fetchPosition(key, subject);

    for (let round = 0; ; round++) {
      const behind = position.version !== expected;
      // Only a commit id the caller chose can be a retry of a stored commit. Dedupe runs
      // before the sequence check on the server, so publishing with a sequence that can no
      // longer be the subject's last one stores nothing and still reports the duplicate.
      if (behind && (options.commitId === undefined || position.version < expected)) {
        throw new ConcurrencyError(key, expected, position.version);
      }
      const outcome = await this.publish(key, subject, data, msgId, behind ? position.sequence - 1 : position.sequence);
      if (outcome === WRONG_LAST_SEQUENCE) {
        if (behind) throw new ConcurrencyError(key, expected, position.version);
        if (round >= STALE_RETRIES) throw new EventStoreError(key, `append kept losing to concurrent writers after ${round + 1} attempts`);
        position = await this.fetchPosition(key, subject);
        continue;
      }
      const { ack, retried } = outcome;
      if (ack.duplicate) {
        const stored = await this.commitAt(key, subject, ack.seq);
        // After a lost ack, the duplicate is this call's own first attempt.
        if (retried) this.remember(key, { version: stored.version, sequence: ack.seq });
        return { version: stored.version, sequence: ack.seq, duplicate: !retried };
      }
      if (behind) throw new EventStoreError(key, `the server accepted commit ${commitId} at sequence ${ack.seq} against a stale sequence`);
      this.remember(key, { version: record.version, sequence: ack.seq });
      return { version: record.version, sequence: ack.seq, duplicate: false };
    }
  }

  read(stream: StreamId, options?: ReadOptions): AsyncIterable<RecordedEvent> {
    return this.readEvents(stream, options?.fromVersion ?? 0, options?.fromSequence ?? 0);
  }

  async version(stream: StreamId): Promise<number> {
    this.assertOpen();
    const key = checkedKey(stream);
    return (await this.fetchPosition(key, this.subjects.events(stream))).version;
  }

  knownVersion(stream: StreamId): number | undefined {
    this.assertOpen();
    return this.cache.get(checkedKey(stream))?.version;
  }

  async saveSnapshot(stream: StreamId, snapshot: SnapshotRecord): Promise<void> {
    this.assertOpen();
    const key = checkedKey(stream);
    const data = encodeWithin(snapshot, this.maxPayload, `snapshot of ${key}`);
    try {
      await this.kv.put(this.subjects.snapshotKey(stream), data);
    } catch (err) {
      throw toStoreError(key, 'saving the snapshot', err);
    }
  }

  async loadSnapshot(stream: StreamId): Promise<SnapshotRecord | undefined> {
    this.assertOpen();
    const key = checkedKey(stream);
    let entry;
    try {
      entry = await this.kv.get(this.subjects.snapshotKey(stream));
    } catch (err) {
      throw toStoreError(key, 'loading the snapshot', err);
    }
    if (!entry || entry.operation !== 'PUT') return undefined;
    return decode(entry.value, isSnapshotRecord, `snapshot of ${key}`);
  }

  /**
   * Records a position another writer reached. A hint is only as good as the server can
   * check it: a wrong sequence is rejected on publish, and the append re-reads the truth.
   * A hint that does not move the sequence forward contradicts the cache and is ignored.
   */
  updateVersionCache(stream: StreamId, version: number, sequence?: number): void {
    if (this.closed || !isValidStream(stream) || !Number.isSafeInteger(version) || version < 0) return;
    const key = streamKey(stream);
    const cached = this.cache.get(key);
    if (cached && version <= cached.version) return;
    if (sequence === undefined || !Number.isSafeInteger(sequence) || sequence < 0) this.cache.delete(key);
    else this.remember(key, { version, sequence });
  }

  /** Stops the store; the connection stays open (the caller owns it). */
  async close(): Promise<void> {
    this.closed = true;
    this.cache.clear();
    // Commits already published still get their ack: the caller may be waiting on them.
    this.mux.closeWhenIdle();
  }

  private async *readEvents(stream: StreamId, fromVersion: number, fromSequence: number): AsyncGenerator<RecordedEvent> {
    this.assertOpen();
    const key = checkedKey(stream);
    const subject = this.subjects.events(stream);
    // The end is fixed first, so the read neither waits for nor includes later commits.
    const end = await this.fetchPosition(key, subject);
    if (!end.last || end.version <= fromVersion) return;
    if (end.version - end.last.events.length > fromVersion) {
      // A start sequence past the end cannot hold `fromVersion`: the hint is wrong.
      const start = fromSequence > 0 && fromSequence <= end.sequence ? fromSequence : 1;
      const complete = yield* this.replay(key, subject, start, end.sequence, fromVersion);
      if (!complete) yield* this.replay(key, subject, 1, end.sequence, fromVersion);
    } else {
      // Everything asked for is in the last commit, which the lookup already fetched.
      yield* recorded(end.last, end.sequence, fromVersion);
    }
  }

  /**
   * Yields the events above `fromVersion` in the commits of `subject` from stream sequence
   * `start` through `end` (the subject's last commit), with an ordered consumer. Returns
   * false, having yielded nothing, when the first commit found already starts above
   * `fromVersion + 1`: `start` was past the commit holding `fromVersion`.
   */
  private async *replay(
    key: string,
    subject: string,
    start: number,
    end: number,
    fromVersion: number,
  ): AsyncGenerator<RecordedEvent, boolean> {
    const consumer = await this.request(key, 'creating a reader', () =>
      this.js.consumers.get(this.streamName, {
        filter_subjects: subject,
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: start,
        inactive_threshold: Math.max(this.timeoutMs * 2, 10_000),
      }),
    );
    try {
      const messages = await this.request(key, 'reading', () => consumer.consume({ max_messages: READ_BATCH }));
      // Only time spent waiting for the server counts, not time the caller holds an event.
      let waitingSince: number | undefined = Date.now();
      const watchdog = setInterval(() => {
        if (waitingSince !== undefined && Date.now() - waitingSince > this.timeoutMs) {
          messages.stop(new EventStoreError(key, `reading: no message from the server for ${this.timeoutMs} ms`));
        }
      }, Math.min(1000, this.timeoutMs));
      let next = fromVersion + 1;
      try {
        for await (const msg of messages) {
          waitingSince = undefined;
          const record = decode(msg.data, isCommitRecord, `commit record at sequence ${msg.seq} of ${key}`);
          const firstVersion = record.version - record.events.length + 1;
          if (firstVersion > next) {
            if (next === fromVersion + 1 && start > 1) return false;
            throw new EventStoreError(key, `commit at sequence ${msg.seq} starts at version ${firstVersion}, expected ${next}`);
          }
          if (record.version >= next) {
            yield* recorded(record, msg.seq, next - 1);
            next = record.version + 1;
          }
          if (msg.seq >= end) return true;
          waitingSince = Date.now();
        }
      } catch (err) {
        throw toStoreError(key, 'reading', err);
      } finally {
        clearInterval(watchdog);
        messages.stop();
      }
      throw new EventStoreError(key, `reading: the reader stopped before sequence ${end}`);
    } finally {
      await consumer.delete().catch(() => undefined);
    }
  }

  /**
   * One commit, published as `js.publish` would (the same headers, the same ack), but
   * through the store's `ReplyMux`. A lost acknowledgement is retried with the same
   * message id, so the server's dedupe window stores the commit once.
   */
  private async publish(key: string, subject: string, data: Uint8Array, msgId: string, lastSequence: number): Promise<PublishOutcome> {
    const h = headers();
    h.set(PubHeaders.MsgIdHdr, msgId);
    h.set(PubHeaders.ExpectedLastSubjectSequenceHdr, `${lastSequence}`);
    // Closed between the version lookup and the first publish: nothing was sent.
    this.assertOpen();
    for (let attempt = 1; ; attempt++) {
      try {
        const reply = await this.mux.request(subject, data, this.timeoutMs, `appending to ${key}`, h);
        const ack = parseAck(reply);
        if (ack === WRONG_LAST_SEQUENCE) return ack;
        return { ack, retried: attempt > 1 };
      } catch (err) {
        // A lost ack is the mux's TimeoutError; anything else will not go better on a retry.
        if (!(err instanceof TimeoutError) || attempt >= PUBLISH_ATTEMPTS) {
          throw new EventStoreError(key, `appending (${attempt} attempt(s); the commit may be stored, retry with the same commitId): ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        }
      }
    }
  }

  /** The actor's stream as the server has it now; refreshes the cache. */
  private async fetchPosition(key: string, subject: string): Promise<ServerPosition> {
    const msg = await this.getMessage(key, { last_by_subj: subject });
    const position = msg ? toPosition(key, msg) : EMPTY;
    this.remember(key, position, true);
    return position;
  }

  private async commitAt(key: string, subject: string, seq: number): Promise<CommitRecord> {
    const msg = await this.getMessage(key, { seq });
    if (!msg || msg.subject !== subject) throw new EventStoreError(key, `commit at sequence ${seq} is missing`);
    return toPosition(key, msg).last!;
  }

  /**
   * One message of the event stream, as `jsm.streams.getMessage` gets it (the same API
   * request and answer), but through the store's `ReplyMux`: a destination checks every
   * actor migrated to it this way when its cache does not know the stream yet (a node
   * that just joined knows none), and `nc.request`'s overhead was a third of each lookup.
   */
  private async getMessage(key: string, query: { seq: number } | { last_by_subj: string }): Promise<StoredMessage | null> {
    try {
      return parseStoredMessage(await this.mux.request(this.subjects.eventStreamMessageGet, utf8(JSON.stringify(query)), this.timeoutMs, `looking up ${key}`));
    } catch (err) {
      // Whatever failed (a timeout, a closed connection, an error from JetStream), the lookup did.
      throw new EventStoreError(key, `looking up the stream: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  private async request<T>(key: string, what: string, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw toStoreError(key, what, err);
    }
  }

  /** Caches a position unless the cache already knows a later one (`force`: server truth). */
  private remember(key: string, position: StreamPosition, force = false): void {
    const cached = this.cache.get(key);
    if (!force && cached && cached.sequence >= position.sequence) return;
    this.cache.delete(key);
    this.cache.set(key, { version: position.version, sequence: position.sequence });
    if (this.cache.size > MAX_CACHED_STREAMS) this.cache.delete(this.cache.keys().next().value!);
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('JetStreamEventStore');
  }
}

async function ensureStream(jsm: JetStreamManager, subjects: Subjects, replicas: number, storage: StorageType): Promise<void> {
  const name = subjects.eventStream;
  try {
    const info = await jsm.streams.info(name);
    if (!info.config.subjects?.includes(subjects.eventStreamSubjects)) {
      throw new EventStoreError(name, `stream ${name} exists but does not capture ${subjects.eventStreamSubjects}`);
    }
    return;
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw err;
  }
  // Two nodes creating the same stream at once both succeed: the configs are identical
  // (but see createRacingOthers).
  await createRacingOthers(() => jsm.streams.add({
    name,
    subjects: [subjects.eventStreamSubjects],
    retention: RetentionPolicy.Limits,
    storage,
    num_replicas: replicas,
    discard: DiscardPolicy.Old,
    allow_rollup_hdrs: false,
    deny_delete: true,
    deny_purge: true,
  }));
}

function* recorded(record: CommitRecord, sequence: number, fromVersion: number): Generator<RecordedEvent> {
  const base = record.version - record.events.length;
  for (let i = Math.max(0, fromVersion - base); i < record.events.length; i++) {
    yield { event: record.events[i], version: base + i + 1, sequence, commandId: record.commandIds[i], time: record.time };
  }
}

/** What the store reads of a stored message. */
interface StoredMessage {
  readonly subject: string;
  readonly seq: number;
  readonly data: Uint8Array;
}

/** The answer to a `STREAM.MSG.GET` request: the message, or null when there is none. */
function parseStoredMessage(reply: Msg): StoredMessage | null {
  if (reply.headers?.code === 503) throw new Error('JetStream did not answer (it is not enabled, or the stream is missing)');
  let body: { error?: { code: number; err_code: number; description: string }; message?: { subject?: unknown; seq?: unknown; data?: unknown } };
  try {
    body = JSON.parse(UTF8.decode(reply.data)) as typeof body;
  } catch {
    throw new Error('JetStream answered the message lookup with something that is not JSON');
  }
  if (body.error) {
    if (body.error.err_code === JetStreamApiCodes.NoMessageFound) return null;
    throw new JetStreamApiError(body.error);
  }
  const message = body.message;
  if (!message || typeof message.subject !== 'string' || !Number.isSafeInteger(message.seq) || (message.data !== undefined && typeof message.data !== 'string')) {
    throw new Error('JetStream answered the message lookup with an invalid message');
  }
  return { subject: message.subject, seq: message.seq as number, data: message.data ? Buffer.from(message.data, 'base64') : new Uint8Array(0) };
}

function toPosition(key: string, msg: StoredMessage): ServerPosition {
  const last = decode(msg.data, isCommitRecord, `commit record at sequence ${msg.seq} of ${key}`);
  return { version: last.version, sequence: msg.seq, last };
}

function checkedKey(stream: StreamId): string {
  validateActorType(stream?.type);
  validateActorId(stream.id);
  return streamKey(stream);
}

function isValidStream(stream: StreamId): boolean {
  try {
    checkedKey(stream);
    return true;
  } catch {
    return false;
  }
}

/**
 * Dedupe ids are per JetStream stream, which every actor of the namespace shares, so the
 * commit id is scoped to the actor: the same commit id on two actors is two commits.
 */
function messageId(subject: string, commitId: string): string {
  let actor = actorHashes.get(subject);
  if (actor === undefined) {
    actor = createHash('sha256').update(subject).digest('base64url').slice(0, 22);
    // A node appends to the same actors again and again: a lookup instead of a hash
    // (0.035 µs against 0.77 µs in a loop, about 1% of an append's CPU in a B9 profile).
    // Bounded; a full cache starts over.
    if (actorHashes.size >= ACTOR_HASHES) actorHashes.clear();
    actorHashes.set(subject, actor);
  }
  return `${encodeToken(commitId) || '-'}@${actor}`;
}

/** Actor subjects → their hash in message ids (see `messageId`), at most `ACTOR_HASHES`. */
const actorHashes = new Map<string, string>();
const ACTOR_HASHES = 50_000;

/** The headers of a commit with a one-character message id, the largest sequence expected. */
const HEADER_BYTES_WITH_ONE_CHARACTER_ID = (() => {
  const h = new MsgHdrsImpl();
  h.set(PubHeaders.MsgIdHdr, 'x');
  h.set(PubHeaders.ExpectedLastSubjectSequenceHdr, String(Number.MAX_SAFE_INTEGER));
  return h.encode().length;
})();

/**
 * Size of the headers a commit is published with (they count toward max_payload). A
 * message id is ASCII (an encoded token and base64url), one byte per character, so the
 * size is known without building the headers for every commit.
 */
function headerBytes(msgId: string): number {
  return HEADER_BYTES_WITH_ONE_CHARACTER_ID - 1 + msgId.length;
}

/**
 * The server's answer to a published commit: its sequence and whether the dedupe window
 * knew its message id, or `WRONG_LAST_SEQUENCE`. Anything else throws: a 503 status
 * (nothing listens on the subject: the stream is gone or JetStream is off) or another
 * JetStream error (`JetStreamApiError`).
 */
function parseAck(reply: Msg): Pick<PubAck, 'seq' | 'duplicate'> | typeof WRONG_LAST_SEQUENCE {
  if (reply.headers?.code === 503) throw new Error('no JetStream stream takes this subject (the stream is missing or JetStream is not enabled)');
  let body: unknown;
  try {
    body = JSON.parse(UTF8.decode(reply.data));
  } catch {
    throw new Error('JetStream answered the publish with something that is not JSON');
  }
  const ack = body as { error?: { code: number; err_code: number; description: string }; stream?: unknown; seq?: unknown; duplicate?: unknown };
  if (ack.error) {
    if (ack.error.err_code === JetStreamApiCodes.StreamWrongLastSequence) return WRONG_LAST_SEQUENCE;
    throw new JetStreamApiError(ack.error);
  }
  if (typeof ack.stream !== 'string' || ack.stream === '' || !Number.isSafeInteger(ack.seq)) throw new Error('JetStream answered the publish with an invalid ack');
  return { seq: ack.seq as number, duplicate: ack.duplicate === true };
}


function toStoreError(key: string, what: string, err: unknown): NatstateError {
  if (err instanceof NatstateError) return err;
  return new EventStoreError(key, `${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
