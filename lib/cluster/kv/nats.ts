/**
 * `ClusterKV` over a JetStream KV bucket (history 1), one per namespace. Revision checks
 * are the server's `Nats-Expected-Last-Subject-Sequence`, so two nodes racing on
 * `create` or `update` cannot both win. Works on nats-server 2.9 (no per-key TTLs).
 *
 * A watch is an ordered push consumer on the bucket's stream, delivering the last
 * message of every matching key and then every later one. Its creation reports how
 * many messages that first part holds (`num_pending`), which is how the watch knows
 * when the current values are complete, also for an empty bucket. A file-backed server
 * keeps the consumer across its restart and resumes delivery on reconnect; after a gap
 * in delivery or two missed idle heartbeats (30 s each) nats.js recreates it, starting
 * after the last delivered message, so no change is lost or repeated.
 */
import {
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstream,
  type ConsumerMessages,
  type JetStreamClient,
  type JsMsg,
  type PushConsumer,
} from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { errors as natsErrors, type NatsConnection } from '@nats-io/nats-core';
import { ClosedError, NatstateError, ServerCapabilityError, TimeoutError, reportError } from '../../errors.js';
import { isJetStreamNotEnabled, resolveJetStreamOptions } from '../../nats/jetstream-options.js';
import { RevisionConflictError, type ClusterKV, type KvChange, type KvEntry } from './kv.js';
import { createBucket } from '../../nats/concurrent-create.js';

export interface NatsKVOptions {
  readonly namespace: string;
  /** Subject prefix, default `DEFAULT_PREFIX`; every node of a cluster must use the same one. */
  readonly prefix?: string;
  /** Replicas of the bucket, default 1. */
  readonly replicas?: number;
  /** Default 'file' (a memory bucket does not survive a server restart). */
  readonly storage?: 'file' | 'memory';
  /** Deadline of each KV request and of a watch's initial values, default 5000 ms. */
  readonly timeoutMs?: number;
  /**
   * Receives what a watch swallowed so that it keeps running: a handler that threw, or
   * the consumer behind a watch failing for good. Default: `process.emitWarning`.
   */
  readonly onError?: (error: Error) => void;
}

/** The KV operation header of delete markers (ADR-8); a plain put has none. */
const OPERATION_HEADER = 'KV-Operation';

export class NatsKV implements ClusterKV {
  private readonly stops = new Set<() => void>();
  private closed = false;

  private constructor(
    private readonly js: JetStreamClient,
    private readonly kv: KV,
    /** The stream behind the bucket and the subject prefix of its keys, as the KV library names them. */
    private readonly stream: string,
    private readonly keySubjectPrefix: string,
    private readonly timeoutMs: number,
    private readonly onError: (error: Error) => void,
  ) {}

  /** Opens the namespace's cluster bucket, creating it when missing. The caller owns `nc`. */
  static async create(nc: NatsConnection, options: NatsKVOptions): Promise<NatsKV> {
    const { subjects, replicas, storage, timeoutMs } = resolveJetStreamOptions(
      nc,
      options,
      'keeps the cluster membership, leader lease and shard map in a JetStream KV bucket',
    );
    const bucket = subjects.clusterBucket;
    try {
      const js = jetstream(nc, { timeout: timeoutMs });
      const kv = await createBucket(js, bucket, { replicas, storage, timeoutMs });
      const { config } = (await kv.status()).streamInfo;
      const keySubjects = config.subjects?.[0];
      if (!keySubjects?.endsWith('.>')) throw new Error(`the stream ${config.name} behind bucket ${bucket} has unexpected subjects ${String(config.subjects)}`);
      return new NatsKV(js, kv, config.name, keySubjects.slice(0, -1), timeoutMs, options.onError ?? warn);
    } catch (error) {
      if (isJetStreamNotEnabled(error)) {
        throw new ServerCapabilityError(`JetStream is not enabled for this account: ${(error as Error).message}`, { cause: error });
      }
      throw toKvError(error, `opening KV bucket ${bucket}`, timeoutMs);
    }
  }

  async get(key: string): Promise<KvEntry | undefined> {
    this.assertOpen();
    try {
      const entry = await this.kv.get(key);
      if (!entry || entry.operation !== 'PUT') return undefined;
      return { key, value: new Uint8Array(entry.value), revision: entry.revision };
    } catch (error) {
      throw toKvError(error, `KV get of ${key}`, this.timeoutMs);
    }
  }

  /** The client writes at expected sequence 0 and, when the key was deleted, once more at the delete marker's. */
  async create(key: string, value: Uint8Array): Promise<number> {
    this.assertOpen();
    try {
      return await this.kv.create(key, value);
    } catch (error) {
      if (isWrongLastSequence(error)) throw new RevisionConflictError(key, undefined);
      throw toKvError(error, `KV create of ${key}`, this.timeoutMs);
    }
  }

  async update(key: string, value: Uint8Array, revision: number): Promise<number> {
    this.assertOpen();
    // No key is ever at revision 0 or below (the client would refuse to send it).
    if (!(revision > 0)) throw new RevisionConflictError(key, revision);
    try {
      return await this.kv.update(key, value, revision);
    } catch (error) {
      if (isWrongLastSequence(error)) throw new RevisionConflictError(key, revision);
      throw toKvError(error, `KV update of ${key}`, this.timeoutMs);
    }
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    this.assertOpen();
    try {
      return await this.kv.put(key, value);
    } catch (error) {
      throw toKvError(error, `KV put of ${key}`, this.timeoutMs);
    }
  }

  /** Writes a delete marker, so watchers see the deletion and `create` works again. */
  async delete(key: string): Promise<void> {
    this.assertOpen();
    try {
      await this.kv.delete(key);
    } catch (error) {
      throw toKvError(error, `KV delete of ${key}`, this.timeoutMs);
    }
  }

  /**
   * `prefix` is matched by token, as NATS subjects are: a prefix ending in `.` (like
   * `members.`) watches every key below it, any other prefix (like `leader`) watches
   * exactly that key, and `''` watches the whole bucket. Resolves once the current
   * values were delivered (in key order, deleted keys left out), rejects with
   * `TimeoutError` if they do not arrive within `timeoutMs`.
   */
  async watch(prefix: string, handler: (change: KvChange) => void): Promise<() => void> {
    this.assertOpen();
    const what = `KV watch of "${prefix}"`;
    const filter = this.keySubjectPrefix + (prefix === '' ? '>' : prefix.endsWith('.') ? `${prefix}>` : prefix);
    let consumer: PushConsumer;
    let initial: number;
    try {
      consumer = await this.js.consumers.getPushConsumer(this.stream, { filter_subjects: filter, deliver_policy: DeliverPolicy.LastPerSubject });
      initial = (await consumer.info(true)).num_pending;
    } catch (error) {
      throw toKvError(error, what, this.timeoutMs);
    }

    const deliver = (change: KvChange) => {
      try {
        handler(change);
      } catch (error) {
        this.report(error, `${what}: the handler threw`);
      }
    };
    const snapshot: KvChange[] = [];
    let pending = initial;
    let settle!: (failure?: unknown) => void;
    const ready = new Promise<void>((resolve, reject) => (settle = (failure) => (failure === undefined ? resolve() : reject(failure))));
    let stopped = false;
    let messages: ConsumerMessages | undefined;
    const stop = (failure?: unknown) => {
      if (stopped) return;
      stopped = true;
      this.stops.delete(stop);
      messages?.stop();
      // Ephemeral consumers outlive their subscriber by minutes; free it now if we can.
      consumer.delete().catch(() => undefined);
      settle(failure ?? new ClosedError('NatsKV'));
    };
    const timer = setTimeout(() => stop(new TimeoutError(`${what} (its initial values)`, this.timeoutMs)), this.timeoutMs);

    try {
      messages = await consumer.consume({
        // Runs in the client's dispatch: a throw here would end the consumer.
        callback: (msg) => {
          if (stopped) return;
          const change = this.toChange(msg);
          if (pending === 0) return deliver(change);
          snapshot.push(change);
          if (--pending > 0) return;
          for (const current of snapshot.splice(0).sort(byKey)) if (current.value !== undefined) deliver(current);
          settle();
        },
      });
    } catch (error) {
      stop(toKvError(error, what, this.timeoutMs));
    }
    if (!stopped) this.stops.add(stop);
    // Without an error the consumer ended because its owner closed the connection.
    void messages?.closed().then((end) => {
      if (stopped || !(end instanceof Error)) return;
      stop(toKvError(end, what, this.timeoutMs));
      this.report(end, `${what} ended`);
    });
    if (initial === 0) settle();
    try {
      await ready;
    } finally {
      clearTimeout(timer);
    }
    return () => stop();
  }

  /** Stops every watch; the connection belongs to the caller and stays open. */
  async close(): Promise<void> {
    this.closed = true;
    for (const stop of [...this.stops]) stop();
  }

  private toChange(msg: JsMsg): KvChange {
    const key = msg.subject.slice(this.keySubjectPrefix.length);
    const operation = msg.headers?.get(OPERATION_HEADER);
    const deleted = operation === 'DEL' || operation === 'PURGE';
    // A copy: the client's bytes may be a Node Buffer view of its read buffer (its `slice` does not copy).
    return { key, value: deleted ? undefined : new Uint8Array(msg.data), revision: msg.seq };
  }

  private report(error: unknown, what: string): void {
    reportError(this.onError, error, what);
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('NatsKV');
  }
}

function byKey(a: KvChange, b: KvChange): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

function warn(error: Error): void {
  process.emitWarning(error.message);
}

function isWrongLastSequence(error: unknown): boolean {
  return (
    error instanceof JetStreamApiError &&
    (error.code === JetStreamApiCodes.StreamWrongLastSequence || error.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

/** Timeouts and a closed connection become natstate's errors; anything else is the server's answer as is. */
function toKvError(error: unknown, operation: string, timeoutMs: number): unknown {
  if (error instanceof NatstateError) return error;
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if (e instanceof natsErrors.TimeoutError) return new TimeoutError(operation, timeoutMs, { cause: error });
    if (e instanceof natsErrors.ClosedConnectionError || e instanceof natsErrors.DrainingConnectionError) return new ClosedError('the NATS connection');
  }
  return error;
}
