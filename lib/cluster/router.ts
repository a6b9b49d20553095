/**
 * `sendMessage`: delivers a command to the node that owns its actor, wherever that is.
 *
 * The owner comes from `shardOf(id)` and the shard map. Local → the actor host. Remote →
 * a request on the transport, carrying the map epoch. A node that does not own the shard
 * answers `not-owner`; the sender refreshes its map and retries, with the same command
 * id, until the deadline — so a retried command is applied once, and a moving or
 * crashed owner costs latency, never a lost or doubled command. While a shard moves
 * between nodes (live migration), a command for it goes to the previous owner first,
 * which serves it if it still holds the actor (`MigrationHooks.previousOwner`).
 */
import { v4 as uuid } from 'uuid';
import type { AnyEventObject, AnyMachineSnapshot } from 'xstate';
import type { ActorHost } from '../actors/actor-host.js';
import type { Reply } from '../actors/resident-actor.js';
import { decode, encodeWithin, DEFAULT_MAX_PAYLOAD } from '../codec/codec.js';
import {
  isNodeRequest,
  isRouteReply,
  type MigrationBatch,
  type MigrationBatchReply,
  type MigrationReply,
  type MigrationRequest,
  type NodeRequest,
  type RouteReply,
  type RouteRequest,
  type RoutedState,
  type ShardDone,
} from '../codec/routing.js';
import {
  ClosedError,
  ConcurrencyError,
  DecodeError,
  EncodeError,
  MigrationBufferFullError,
  NatstateError,
  NotOwnerError,
  PayloadTooLargeError,
  RemoteError,
  TimeoutError,
} from '../errors.js';
import { shardOf } from './placement.js';
import { NoRespondersError, type Transport } from './transport/transport.js';

/** What the router needs of the shard map (see `ShardMapStore`). */
export interface ShardMapView {
  readonly current: { readonly epoch: number; readonly shardCount: number; readonly owners: readonly (string | null)[] } | undefined;
  refresh(): Promise<unknown>;
  waitFor(predicate: (map: { readonly epoch: number; readonly owners: readonly (string | null)[] }) => boolean, timeoutMs: number): Promise<unknown>;
}

/** What the router asks of live migration (see `MigrationCoordinator`). */
export interface MigrationHooks {
  /** The previous owner to forward a command to while the actor is on its way here, or undefined. */
  inTransit(type: string, id: string): string | undefined;
  /** For a forwarded command: true to serve it here, false once the actor left (see `RouteRequest.handoff`). */
  admitHandoff(type: string, id: string): Promise<boolean> | boolean;
  /** The previous owner of a shard while it is moving, which may still hold its actors warm. */
  previousOwner?(shard: number): string | undefined;
  handleMigrationRequest(request: MigrationRequest): Promise<MigrationReply>;
  handleMigrationBatch(batch: MigrationBatch): Promise<MigrationBatchReply>;
  handleShardDone(message: ShardDone): void;
}

export interface RouterOptions {
  readonly nodeId: string;
  /** The node's actor host (a client that owns no shard may pass a stand-in). */
  readonly host: Pick<ActorHost, 'validate' | 'dispatch'>;
  readonly shardMap: ShardMapView;
  readonly transport: Transport;
  /** Longest wait for one remote reply. Default 5,000 ms. */
  readonly requestTimeoutMs?: number;
  /** Longest time a command may spend being routed, retries included. Default 15,000 ms. */
  readonly deadlineMs?: number;
  /** Largest request the transport carries (NATS max_payload). */
  readonly maxPayload?: number;
  /** Live migration; without it, actors of a moved shard are recovered from the store. */
  readonly migrations?: MigrationHooks;
}

export interface RoutedReply {
  readonly accepted: boolean;
  readonly version: number;
  readonly commandId: string;
  readonly duplicate: boolean;
  readonly state?: RoutedState;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function stateOf(snapshot: AnyMachineSnapshot): RoutedState {
  return { value: snapshot.value, context: snapshot.context, status: snapshot.status };
}

function withState(reply: Reply): RoutedReply {
  return { accepted: reply.accepted, version: reply.version, commandId: reply.commandId, duplicate: reply.duplicate, state: stateOf(reply.snapshot) };
}

/**
 * The reply's fields, with `state` only when there is one: an undefined key would make
 * the encoded reply take superjson's slow path.
 */
function routed({ accepted, version, commandId, duplicate, state }: RoutedReply): RoutedReply {
  return state === undefined ? { accepted, version, commandId, duplicate } : { accepted, version, commandId, duplicate, state };
}

export class Router {
  private readonly requestTimeoutMs: number;
  private readonly deadlineMs: number;
  private readonly maxPayload: number;
  private readonly idPrefix = uuid() + ':';
  private nextId = 0;

  constructor(private readonly options: RouterOptions) {
    this.requestTimeoutMs = options.requestTimeoutMs ?? 5_000;
    this.deadlineMs = options.deadlineMs ?? 15_000;
    this.maxPayload = options.maxPayload ?? DEFAULT_MAX_PAYLOAD;
  }

  /**
   * `sendMessage` for a command whose caller needs no state back, with a fast path: when
   * this node owns the actor it goes straight to the host, no routing machinery at all.
   */
  send(type: string, id: string, event: AnyEventObject, commandId: string | undefined): Promise<RoutedReply> {
    return this.local(type, id, event, commandId, false) ?? this.sendMessage(type, id, event, commandId, false).then(routed);
  }

  /** `sendMessage` with the state in the reply, with the same local fast path. */
  ask(type: string, id: string, event: AnyEventObject | undefined, commandId: string | undefined): Promise<RoutedReply> {
    return this.local(type, id, event, commandId, true) ?? this.sendMessage(type, id, event, commandId, true);
  }

  /** The owner is this node by the current map: hand over to the host, or undefined. */
  private local(type: string, id: string, event: AnyEventObject | undefined, commandId: string | undefined, wantState: boolean): Promise<RoutedReply> | undefined {
    const { shardMap, nodeId, host } = this.options;
    const map = shardMap.current;
    if (!map || typeof id !== 'string' || map.owners[shardOf(id, map.shardCount)] !== nodeId) return undefined;
    const source = this.options.migrations?.inTransit(type, id);
    if (source) return this.handOff(source, type, id, event, commandId, wantState, map.epoch);
    const reply = host.dispatch(type, id, event, commandId);
    return wantState ? reply.then(withState) : reply;
  }

  /**
   * Routes a command (or, without `event`, a state query) to the actor's owner and
   * resolves with its reply. Bad input is rejected here, before anything is sent.
   */
  async sendMessage(type: string, id: string, event: AnyEventObject | undefined, commandId: string | undefined, wantState: boolean): Promise<RoutedReply> {
    const { host, shardMap, nodeId } = this.options;
    host.validate(type, id, event);
    // Generated here, once, and only if the command leaves this node: every retry carries
    // the same id, so the owner applies it once.
    let request: RouteRequest | undefined;
    const deadline = Date.now() + this.deadlineMs;
    let last: { epoch: number; owner: string | null } = { epoch: 0, owner: null };
    for (let attempt = 0; ; attempt++) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new NotOwnerError(type, id, last.epoch, last.owner);
      let map = shardMap.current;
      if (!map) {
        await shardMap.waitFor(() => true, remaining).catch(() => undefined);
        continue;
      }
      const shard = shardOf(id, map.shardCount);
      const owner = map.owners[shard];
      if (owner === nodeId) {
        const source = this.options.migrations?.inTransit(type, id);
        if (source) return this.handOff(source, type, id, event, request?.commandId ?? commandId, wantState, map.epoch);
        const reply = await host.dispatch(type, id, event, request?.commandId ?? commandId);
        return wantState ? withState(reply) : reply;
      }
      last = { epoch: map.epoch, owner };
      if (owner === null || owner === undefined) {
        await this.awaitNewerMap(map.epoch, remaining);
        continue;
      }
      request ??= { type, id, event, commandId: commandId ?? this.newCommandId(), epoch: 0, wantState };
      const previous = attempt === 0 ? this.options.migrations?.previousOwner?.(shard) : undefined;
      if (previous && previous !== owner) {
        const served = await this.atPreviousOwner(previous, request, map.epoch, remaining);
        if (served) return served;
      }
      let reply: RouteReply;
      try {
        reply = await this.exchange(owner, { ...request, epoch: map.epoch }, Math.min(this.requestTimeoutMs, remaining));
      } catch (error) {
        if (error instanceof NoRespondersError) {
          // The owner is gone: wait for the leader to reassign its shards.
          await this.awaitNewerMap(map.epoch, Math.min(remaining, 250 * (attempt + 1)));
          continue;
        }
        if (error instanceof TimeoutError) {
          // Unknown outcome: retry with the same command id (applied at most once).
          if (deadline - Date.now() <= 0) throw error;
          continue;
        }
        throw error;
      }
      if (reply.kind === 'ok') {
        return routed(reply);
      }
      if (reply.kind === 'error') throw rebuildError(reply, owner);
      last = { epoch: reply.epoch, owner: reply.owner };
      if (reply.epoch > map.epoch) {
        await shardMap.refresh().catch(() => undefined);
        if ((shardMap.current?.epoch ?? 0) < reply.epoch) await shardMap.waitFor((m) => m.epoch >= reply.epoch, Math.min(remaining, 1000)).catch(() => undefined);
      } else {
        // The owner's map is behind ours; give it a moment to catch up.
        await sleep(Math.min(remaining, 5 * 2 ** Math.min(attempt, 6)));
      }
      map = shardMap.current;
    }
  }

  private newCommandId(): string {
    return this.idPrefix + (this.nextId++).toString(36);
  }

  /**
   * This node owns the actor but it is still on its way from `source`, which keeps serving
   * it until its hand-over: forward the command there. Once the source answers that the
   * actor left (or cannot answer: it is gone, or slow), serve it here, where the actor
   * was installed or is recovered from the store. The command id makes a repeat harmless.
   */
  private async handOff(source: string, type: string, id: string, event: AnyEventObject | undefined, commandId: string | undefined, wantState: boolean, epoch: number): Promise<RoutedReply> {
    const { host } = this.options;
    host.validate(type, id, event);
    const request: RouteRequest = { type, id, event, commandId: commandId ?? this.newCommandId(), epoch, wantState };
    const served = await this.atPreviousOwner(source, request, epoch, this.requestTimeoutMs);
    if (served) return served;
    const reply = await host.dispatch(type, id, event, request.commandId);
    return wantState ? withState(reply) : reply;
  }

  /**
   * The actor's shard is moving from `previous` to its new owner: until the actor's own
   * hand-over, `previous` holds it warm and serves the command in one hop (the new owner
   * would forward it there anyway). Undefined when the actor has left it (or `previous`
   * cannot answer): the command goes to the new owner. The command id makes a repeat harmless.
   */
  private async atPreviousOwner(previous: string, request: RouteRequest, epoch: number, remaining: number): Promise<RoutedReply | undefined> {
    const { type, id, event, commandId, wantState } = request;
    if (previous === this.options.nodeId) {
      if (!(await this.options.migrations!.admitHandoff(type, id))) return undefined;
      const reply = await this.options.host.dispatch(type, id, event, commandId);
      return wantState ? withState(reply) : reply;
    }
    try {
      const reply = await this.exchange(previous, { ...request, epoch, handoff: true }, Math.min(this.requestTimeoutMs, remaining));
      if (reply.kind === 'ok') return routed(reply);
      if (reply.kind === 'error') throw rebuildError(reply, previous);
    } catch (error) {
      if (!(error instanceof NoRespondersError || error instanceof TimeoutError)) throw error;
    }
    return undefined;
  }

  /**
   * Sends `request` to `nodeId`, encoded (one over `maxPayload` is refused before anything
   * is sent), and resolves with its reply, decoded and checked.
   */
  private async exchange(nodeId: string, request: RouteRequest, timeoutMs: number): Promise<RouteReply> {
    const bytes = encodeWithin(request, this.maxPayload, `command for ${request.type}/${request.id}`);
    return decode(await this.options.transport.request(nodeId, bytes, timeoutMs), isRouteReply, `reply from node ${nodeId}`);
  }

  private async awaitNewerMap(epoch: number, timeoutMs: number): Promise<void> {
    await this.options.shardMap.refresh().catch(() => undefined);
    if ((this.options.shardMap.current?.epoch ?? 0) > epoch) return;
    await this.options.shardMap.waitFor((m) => m.epoch > epoch, Math.max(1, timeoutMs)).catch(() => undefined);
  }

  /** The transport handler of this node: serves commands other nodes routed here. */
  readonly handleRequest = async (payload: Uint8Array): Promise<Uint8Array> => {
    let reply: RouteReply | MigrationReply | MigrationBatchReply;
    try {
      const request: NodeRequest = decode(payload, isNodeRequest, 'node request');
      reply = await this.handle(request);
    } catch (error) {
      reply = errorReply(error);
    }
    try {
      return encodeWithin(reply, this.maxPayload, 'routed reply');
    } catch (error) {
      return encodeWithin(errorReply(error), this.maxPayload, 'routed reply');
    }
  };

  private async handle(request: NodeRequest): Promise<RouteReply | MigrationReply | MigrationBatchReply> {
    const { migrations } = this.options;
    if (request.kind === 'migrate' || request.kind === 'migrate-batch') {
      if (!migrations) return { kind: 'nack', reason: 'live migration is off on this node', retryable: false };
      return request.kind === 'migrate' ? migrations.handleMigrationRequest(request) : migrations.handleMigrationBatch(request);
    }
    if (request.kind === 'shard-done') {
      migrations?.handleShardDone(request);
      return { kind: 'ack', installed: false };
    }
    return this.serve(request);
  }

  private async serve(request: RouteRequest): Promise<RouteReply> {
    const { shardMap, nodeId, host, migrations } = this.options;
    let map = shardMap.current;
    if (map && request.epoch > map.epoch) {
      // The sender knows a newer map than we do: read it before deciding ownership.
      await shardMap.refresh().catch(() => undefined);
      map = shardMap.current;
    }
    if (!map) return { kind: 'not-owner', epoch: 0, owner: null };
    const owner = map.owners[shardOf(request.id, map.shardCount)] ?? null;
    if (request.handoff) {
      // Forwarded by the new owner: served here only while the actor has not left.
      if (!migrations || !(await migrations.admitHandoff(request.type, request.id))) return { kind: 'not-owner', epoch: map.epoch, owner };
    } else {
      if (owner !== nodeId) return { kind: 'not-owner', epoch: map.epoch, owner };
      const source = migrations?.inTransit(request.type, request.id);
      if (source) {
        return { kind: 'ok', ...routed(await this.handOff(source, request.type, request.id, request.event, request.commandId, request.wantState, map.epoch)) };
      }
    }
    let reply;
    try {
      reply = await host.dispatch(request.type, request.id, request.event, request.commandId);
    } catch (error) {
      // A node shutting down hands the actor back to the cluster: the sender re-routes.
      if (error instanceof ClosedError) return { kind: 'not-owner', epoch: map.epoch, owner: null };
      throw error;
    }
    return { kind: 'ok', ...(request.wantState ? withState(reply) : routed(reply)) };
  }
}

function errorReply(error: unknown): Extract<RouteReply, { kind: 'error' }> {
  if (error instanceof NatstateError) {
    const details: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(error)) if (k !== 'code' && k !== 'name' && (v === null || typeof v !== 'object')) details[k] = v;
    return { kind: 'error', code: error.code, name: error.name, message: error.message, details };
  }
  const e = error instanceof Error ? error : new Error(String(error));
  return { kind: 'error', code: 'INTERNAL', name: e.name, message: e.message };
}

/** Turns an owner's error back into the typed error the caller would have got locally. */
function rebuildError(reply: Extract<RouteReply, { kind: 'error' }>, nodeId: string): Error {
  const d = reply.details ?? {};
  switch (reply.code) {
    case 'CONCURRENCY':
      return new ConcurrencyError(String(d.stream), Number(d.expectedVersion), Number(d.actualVersion));
    case 'PAYLOAD_TOO_LARGE':
      return new PayloadTooLargeError(String(d.what), Number(d.size), Number(d.limit));
    case 'DECODE':
      return new DecodeError(String(d.what), reply.message);
    case 'ENCODE':
      return new EncodeError(String(d.what), reply.message);
    case 'CLOSED':
      return new ClosedError(`node ${nodeId}`);
    case 'MIGRATION_BUFFER_FULL':
      return new MigrationBufferFullError(String(d.actorType), String(d.actorId), Number(d.limit));
    default:
      return new RemoteError(reply.code, reply.name, nodeId, reply.message);
  }
}
