/**
 * `createNode()`: the composition root. It picks the adapters (embedded in-memory by
 * default, JetStream/NATS when `nats` is given), wires store, bus and actor host, and
 * exposes the small typed API users call.
 */
import { connect, type NodeConnectionOptions } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import type { AnyStateMachine, ContextFrom, EventFromLogic, SnapshotFrom } from 'xstate';
import { v4 as uuid } from 'uuid';
import { ActorHost } from './actors/actor-host.js';
import type { Reply } from './actors/resident-actor.js';
import type { EventBus, EventStoredFilter, EventStoredHandler, Unsubscribe } from './eventbus/eventbus.js';
import { LocalEventBus } from './eventbus/local.js';
import { NATSEventBus } from './eventbus/nats.js';
import type { EventStore } from './eventstore/eventstore.js';
import { JetStreamEventStore } from './eventstore/jetstream.js';
import { MemoryNetwork } from './memory-network.js';
import { ClosedError } from './errors.js';
import { validateActorType, validateNamespace } from './subjects.js';

export type ActorTypes = Readonly<Record<string, AnyStateMachine>>;

export interface NodeOptions<A extends ActorTypes> {
  /** Actor types hosted by this node: type name → XState v5 machine. */
  readonly actors: A;
  readonly namespace: string;
  /** Unique id of this node (default: random). */
  readonly nodeId?: string;
  /**
   * NATS servers or an open connection: events go to JetStream and notifications over
   * NATS. Absent: the embedded in-memory default. A connection passed in is not closed
   * by `node.close()`.
   */
  readonly nats?: NodeConnectionOptions | NatsConnection;
  /** Embedded network shared by several in-process nodes (ignored with `nats`). */
  readonly network?: MemoryNetwork;
  /** Subject prefix (default `natstate`). */
  readonly prefix?: string;
  /** JetStream replicas and storage for the namespace's stream and buckets. */
  readonly jetstream?: { readonly replicas?: number; readonly storage?: 'file' | 'memory'; readonly timeoutMs?: number };
  /** Save a snapshot every N events per actor (0 disables). Default 100. */
  readonly snapshotEvery?: number;
  /** Evict actors idle this long, in ms (0 disables). Default 300,000. */
  readonly passivateAfterMs?: number;
  /** Most queued commands of one actor group-committed in a single append. Default 256. */
  readonly maxBatch?: number;
  /** Command ids remembered per actor for idempotent retries. Default 128. */
  readonly idempotencyWindow?: number;
  /** Errors with no caller to report to (a throwing side effect, a failed snapshot save). */
  readonly onError?: (error: unknown, context: string) => void;
}

export interface CommandOptions {
  /** Idempotency key: a command retried with the same id is applied once. Default: random. */
  readonly commandId?: string;
}

export interface SendResult {
  /** False when the machine took no transition: nothing was stored. */
  readonly accepted: boolean;
  /** The actor's version (number of stored events) after this command. */
  readonly version: number;
  readonly commandId: string;
  /** True when this command id had been applied before; nothing new was stored. */
  readonly duplicate: boolean;
}

export interface ActorState<M extends AnyStateMachine> {
  readonly value: SnapshotFrom<M> extends { value: infer V } ? V : unknown;
  readonly context: ContextFrom<M>;
  readonly status: 'active' | 'done' | 'error' | 'stopped';
}

export interface AskResult<M extends AnyStateMachine> extends SendResult {
  readonly state: ActorState<M>;
}

export interface NatstateNode<A extends ActorTypes> {
  readonly id: string;
  readonly namespace: string;
  /** Sends a command; resolves once it is durably stored (or not accepted). */
  send<T extends keyof A & string>(type: T, id: string, event: EventFromLogic<A[T]>, options?: CommandOptions): Promise<SendResult>;
  /** Like `send`, and also returns the actor's state right after the command. */
  ask<T extends keyof A & string>(type: T, id: string, event: EventFromLogic<A[T]>, options?: CommandOptions): Promise<AskResult<A[T]>>;
  /** The actor's current state (a new actor's initial state if it has no events). */
  state<T extends keyof A & string>(type: T, id: string): Promise<ActorState<A[T]> & { readonly version: number }>;
  /** Every `EventStored` of this namespace, from any node, optionally filtered by type and/or id. */
  subscribeToEventStored(handler: EventStoredHandler, filter?: EventStoredFilter): Unsubscribe;
  /** Finishes queued commands, then releases everything the node opened. */
  close(): Promise<void>;
}

function isConnection(value: NodeConnectionOptions | NatsConnection): value is NatsConnection {
  return typeof (value as NatsConnection).publish === 'function' && typeof (value as NatsConnection).subscribe === 'function';
}

function stateOf<M extends AnyStateMachine>(reply: Reply): ActorState<M> {
  const { value, context, status } = reply.snapshot;
  return { value, context, status } as ActorState<M>;
}

export async function createNode<const A extends ActorTypes>(options: NodeOptions<A>): Promise<NatstateNode<A>> {
  validateNamespace(options.namespace);
  for (const type of Object.keys(options.actors)) validateActorType(type);
  const nodeId = options.nodeId ?? uuid();
  const { namespace } = options;

  let store: EventStore;
  let bus: EventBus;
  let owned: NatsConnection | undefined;
  if (options.nats) {
    const nc = isConnection(options.nats) ? options.nats : (owned = await connect(options.nats));
    try {
      store = await JetStreamEventStore.create(nc, { namespace, prefix: options.prefix, ...options.jetstream });
      bus = new NATSEventBus(nc, namespace, { prefix: options.prefix, onError: (e) => options.onError?.(e, 'event bus') });
    } catch (error) {
      await owned?.close();
      throw error;
    }
  } else {
    const network = options.network ?? new MemoryNetwork();
    store = network.store(namespace);
    bus = new LocalEventBus(namespace, network.hub, { onError: (e) => options.onError?.(e, 'event bus') });
  }

  const host = new ActorHost({
    namespace,
    nodeId,
    actors: options.actors,
    store,
    bus,
    snapshotEvery: options.snapshotEvery,
    passivateAfterMs: options.passivateAfterMs,
    maxBatch: options.maxBatch,
    idempotencyWindow: options.idempotencyWindow,
    onError: options.onError,
  });

  // Keep this node's version cache and resident actors in step with other writers.
  const stopSync = bus.subscribeToEventStored((n) => {
    if (n.origin === nodeId) return;
    store.updateVersionCache({ type: n.type, id: n.id }, n.version, n.sequence);
    host.noteForeignCommit(n);
  });
  await bus.flush();

  let closed = false;
  const node: NatstateNode<A> = {
    id: nodeId,
    namespace,
    send(type, id, event, commandOptions) {
      return host.dispatch(type, id, event, commandOptions?.commandId);
    },
    async ask(type, id, event, commandOptions) {
      const reply = await host.dispatch(type, id, event, commandOptions?.commandId);
      return { accepted: reply.accepted, version: reply.version, commandId: reply.commandId, duplicate: reply.duplicate, state: stateOf(reply) };
    },
    async state(type, id) {
      const reply = await host.dispatch(type, id, undefined, undefined);
      return { ...stateOf(reply), version: reply.version };
    },
    subscribeToEventStored(handler, filter) {
      if (closed) throw new ClosedError(`node ${nodeId}`);
      return bus.subscribeToEventStored(handler, filter);
    },
    async close() {
      if (closed) return;
      closed = true;
      await host.close();
      stopSync();
      await bus.close();
      if (options.nats) await store.close();
      await owned?.close();
    },
  };
  return node;
}
