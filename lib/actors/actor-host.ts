/**
 * The event-sourced actor host of one node: it owns the resident actors of every actor
 * type, their mailboxes, recovery, snapshots and passivation.
 *
 * Path of one command: validate → mailbox → (recover if not resident) → pure
 * `step` → append to the event store with `expectedVersion` → only after the append is
 * acknowledged: commit the snapshot, run the actions, publish `EventStored`, reply.
 * Commands queued behind an append in flight are group-committed in the next append.
 */
import type { AnyEventObject, AnyMachineSnapshot, AnyStateMachine, EventObject } from 'xstate';
import { v4 as uuid } from 'uuid';
import type { EventStore } from '../eventstore/eventstore.js';
import type { EventBus, EventStored } from '../eventbus/eventbus.js';
import { ClosedError, ConcurrencyError, UnknownActorTypeError } from '../errors.js';
import { validateActorId } from '../subjects.js';
import { ActorType, type ExecutableAction } from './actor-type.js';
import { Reply, ResidentActor, type Envelope } from './resident-actor.js';
import type { RecentCommandHashes, RecentCommandLists } from '../codec/routing.js';

/** An actor's state as a live migration carries it between nodes. */
export interface ActorCapture {
  readonly version: number;
  readonly sequence: number;
  readonly fingerprint: string;
  readonly state: unknown;
  /** A capture carries hashes; an install takes either (sources before hashes sent ids). */
  readonly recentCommands: RecentCommandHashes | RecentCommandLists;
}

export interface ActorHostOptions {
  readonly namespace: string;
  readonly nodeId: string;
  readonly actors: Readonly<Record<string, AnyStateMachine>>;
  readonly store: EventStore;
  readonly bus: EventBus;
  /** Save a snapshot every N events (0 disables). Default 100. */
  readonly snapshotEvery?: number;
  /** Evict actors idle for this long (0 disables). Default 300,000 ms. */
  readonly passivateAfterMs?: number;
  /** Most commands group-committed in one append. Default 256. */
  readonly maxBatch?: number;
  /** Command ids remembered per actor for idempotent retries. Default 128. */
  readonly idempotencyWindow?: number;
  /** Receives errors that have no caller to go to (side effects, snapshots, bus). */
  readonly onError?: (error: unknown, context: string) => void;
  /** The shard of an actor id in this node's current map (`EventStored.shard`); none outside a cluster. */
  readonly shardOf?: (id: string) => number;
}

/** Appends retried after a `ConcurrencyError` (another writer) before giving up. */
const CONFLICT_RETRIES = 8;

export class ActorHost {
  private readonly types = new Map<string, ActorType>();
  private readonly residents = new Map<string, Map<string, ResidentActor>>();
  private readonly snapshotEvery: number;
  private readonly passivateAfterMs: number;
  private readonly maxBatch: number;
  private readonly window: number;
  private readonly onError: (error: unknown, context: string) => void;
  private readonly sweeper?: NodeJS.Timeout;
  private readonly idle = new Set<() => void>();
  private running = 0;
  private closed = false;
  /** Generated command and commit ids: unique per host (random prefix) and cheap (a counter). */
  private readonly idPrefix = uuid() + ':';
  private nextId = 0;
  private nextCommit = 0;

  constructor(private readonly options: ActorHostOptions) {
    for (const [name, machine] of Object.entries(options.actors)) this.types.set(name, new ActorType(name, machine));
    this.snapshotEvery = options.snapshotEvery ?? 100;
    this.passivateAfterMs = options.passivateAfterMs ?? 300_000;
    this.maxBatch = options.maxBatch ?? 256;
    this.window = options.idempotencyWindow ?? 128;
    this.onError = options.onError ?? ((error, context) => process.emitWarning(`natstate ${context}: ${String(error)}`));
    if (this.passivateAfterMs > 0 && Number.isFinite(this.passivateAfterMs)) {
      this.sweeper = setInterval(() => this.passivate(), Math.max(10, this.passivateAfterMs / 2));
      this.sweeper.unref();
    }
  }

  get typeNames(): string[] {
    return [...this.types.keys()];
  }

  /** Number of actors currently in memory. */
  get residentCount(): number {
    let n = 0;
    for (const byId of this.residents.values()) n += byId.size;
    return n;
  }

  isResident(type: string, id: string): boolean {
    return this.residents.get(type)?.has(id) ?? false;
  }

  /**
   * Throws the typed error a command would get for an unknown type, an invalid id or an
   * event the machine never handles; returns the actor type otherwise.
   */
  validate(type: string, id: string, event: AnyEventObject | undefined): ActorType {
    const actorType = this.types.get(type);
    if (!actorType) throw new UnknownActorTypeError(type, this.typeNames);
    validateActorId(id);
    if (event !== undefined) actorType.validateEvent(event);
    return actorType;
  }

  /** Validates and enqueues a command (or, without `event`, a state query). */
  dispatch(type: string, id: string, event: AnyEventObject | undefined, commandId: string | undefined): Promise<Reply> {
    if (this.closed) return Promise.reject(new ClosedError(`node ${this.options.nodeId}`));
    let actorType: ActorType;
    try {
      actorType = this.validate(type, id, event);
    } catch (error) {
      return Promise.reject(error);
    }
    let byId = this.residents.get(type);
    if (!byId) this.residents.set(type, (byId = new Map()));
    let actor = byId.get(id);
    if (!actor) byId.set(id, (actor = new ResidentActor(type, id)));
    const resident = actor;
    return new Promise<Reply>((resolve, reject) => {
      resident.mailbox.push(
        commandId === undefined
          ? { event, commandId: this.idPrefix + (this.nextId++).toString(36), generated: true, resolve, reject }
          : { event, commandId, generated: false, resolve, reject },
      );
      if (!resident.running) void this.run(actorType, resident);
    });
  }

  /** The resident actors `select` picks (by type and id), e.g. those of shards that moved away. */
  residentsWhere(select: (type: string, id: string) => boolean): { type: string; id: string }[] {
    const out: { type: string; id: string }[] = [];
    for (const [type, byId] of this.residents) for (const id of byId.keys()) if (select(type, id)) out.push({ type, id });
    return out;
  }

  /** Resolves once the actor has no command in flight or queued (at once if it is not resident). */
  async whenIdle(type: string, id: string): Promise<void> {
    for (;;) {
      const actor = this.residents.get(type)?.get(id);
      if (!actor || (!actor.running && actor.mailbox.length === 0)) return;
      await new Promise<void>((resolve) => (actor.idleWaiters ??= []).push(resolve));
    }
  }

  /**
   * The state of an idle, loaded resident actor as a migration carries it, or undefined
   * when the actor is not resident (nothing to migrate: its next owner recovers it).
   */
  capture(type: string, id: string): ActorCapture | undefined {
    const actor = this.residents.get(type)?.get(id);
    const actorType = this.types.get(type);
    if (!actor || !actor.loaded || actor.stale || actor.running || actor.mailbox.length > 0 || !actorType) return undefined;
    return {
      version: actor.version,
      sequence: actor.sequence,
      fingerprint: actorType.fingerprint,
      state: actorType.persist(actor.snapshot),
      recentCommands: actor.recentCommandHashes(),
    };
  }

  /**
   * Installs an actor migrated from another node, so its next command needs no replay.
   * Returns false (and changes nothing) when the actor is already resident at that
   * version or later. Throws when the state does not fit this node's machine.
   */
  install(type: string, id: string, capture: ActorCapture): boolean {
    const actorType = this.validate(type, id, undefined);
    if (capture.fingerprint !== actorType.fingerprint) throw new Error(`state of ${type}/${id} was produced by another version of the machine`);
    const existing = this.residents.get(type)?.get(id);
    if (existing && (existing.running || existing.mailbox.length > 0 || (existing.loaded && existing.version >= capture.version))) return false;
    const snapshot = actorType.restore(capture.state);
    const actor = new ResidentActor(type, id);
    actor.snapshot = snapshot;
    actor.version = capture.version;
    actor.sequence = capture.sequence;
    actor.snapshotVersion = capture.version;
    const recent = capture.recentCommands;
    if ('hashes' in recent) actor.rememberHashes(recent.hashes, recent.versions, this.window);
    else for (let i = 0; i < recent.ids.length; i++) actor.remember(recent.ids[i], recent.versions[i], this.window);
    actor.loaded = true;
    actor.lastUsed = Date.now();
    let byId = this.residents.get(type);
    if (!byId) this.residents.set(type, (byId = new Map()));
    byId.set(id, actor);
    return true;
  }

  /** The version of the actor's stream in the store (what a migration is checked against). */
  storeVersion(type: string, id: string): Promise<number> {
    return this.options.store.version({ type, id });
  }

  /** The version of the actor's stream as this node's store last saw it, without a round trip (see `EventStore.knownVersion`). */
  knownStoreVersion(type: string, id: string): number | undefined {
    return this.options.store.knownVersion({ type, id });
  }

  /** Drops an idle resident actor at once (it migrated away); false if it is busy. */
  release(type: string, id: string): boolean {
    const byId = this.residents.get(type);
    const actor = byId?.get(id);
    if (!actor) return true;
    if (actor.running || actor.mailbox.length > 0) return false;
    byId!.delete(id);
    return true;
  }

  /** Another node stored events for this actor: catch up before its next command. */
  noteForeignCommit(n: EventStored): void {
    const actor = this.residents.get(n.type)?.get(n.id);
    if (actor && actor.loaded && n.version > actor.version) actor.stale = true;
  }

  private async run(type: ActorType, actor: ResidentActor): Promise<void> {
    actor.running = true;
    this.running++;
    try {
      while (actor.mailbox.length > 0) {
        if (!actor.loaded || actor.stale) {
          try {
            await this.load(type, actor);
          } catch (error) {
            this.failAll(actor, error);
            this.residents.get(actor.type)?.delete(actor.id);
            return;
          }
        }
        const batch = actor.mailbox.length <= this.maxBatch ? actor.mailbox : actor.mailbox.slice(0, this.maxBatch);
        actor.mailbox = batch === actor.mailbox ? [] : actor.mailbox.slice(this.maxBatch);
        const unresolved = actor.unresolvedFor(batch);
        if (unresolved) {
          try {
            await this.resolveCommands(actor, unresolved);
          } catch (error) {
            // Nothing is decided without the ids: these commands fail, the actor stays.
            for (const envelope of batch) envelope.reject(error);
            continue;
          }
        }
        await this.process(type, actor, batch);
      }
    } finally {
      actor.running = false;
      actor.lastUsed = Date.now();
      if (actor.idleWaiters) {
        const waiters = actor.idleWaiters;
        actor.idleWaiters = undefined;
        for (const wake of waiters) wake();
      }
      if (--this.running === 0) for (const wake of [...this.idle]) wake();
    }
  }

  private failAll(actor: ResidentActor, error: unknown): void {
    const mailbox = actor.mailbox;
    actor.mailbox = [];
    for (const envelope of mailbox) envelope.reject(error);
  }

  /**
   * Learns, from the events in the store, the ids of the commands a migration carried by
   * hash only (versions `from` to `to`): the event at a version holds the id of the
   * command that produced it. Only when a command's hash matches one of them.
   */
  private async resolveCommands(actor: ResidentActor, { from, to }: { from: number; to: number }): Promise<void> {
    const stored = new Map<number, string>();
    for await (const e of this.options.store.read({ type: actor.type, id: actor.id }, { fromVersion: from - 1 })) {
      if (e.version > to) break;
      stored.set(e.version, e.commandId);
    }
    actor.resolveCommands(stored);
  }

  /** Recovers the actor (snapshot + replay), or catches a stale one up with the store. */
  private async load(type: ActorType, actor: ResidentActor): Promise<void> {
    const { store } = this.options;
    const stream = { type: actor.type, id: actor.id };
    if (!actor.loaded) {
      actor.snapshot = type.initial({ type: actor.type, id: actor.id });
      actor.version = 0;
      actor.sequence = 0;
      actor.snapshotVersion = 0;
      actor.forget();
      let record;
      try {
        record = await store.loadSnapshot(stream);
      } catch (error) {
        // A snapshot is an optimisation: an unreadable one is reported and replaced by a full replay.
        this.onError(error, `snapshot of ${actor.type}/${actor.id} ignored`);
      }
      if (record && record.fingerprint === type.fingerprint) {
        try {
          actor.snapshot = type.restore(record.state);
          actor.version = record.version;
          actor.sequence = record.sequence;
          actor.snapshotVersion = record.version;
          for (const [commandId, version] of record.recentCommands) actor.remember(commandId, version, this.window);
        } catch (error) {
          this.onError(error, `snapshot of ${actor.type}/${actor.id} ignored`);
          actor.snapshot = type.initial({ type: actor.type, id: actor.id });
          actor.version = actor.sequence = actor.snapshotVersion = 0;
          actor.forget();
        }
      }
    }
    actor.stale = false;
    let snapshot = actor.snapshot;
    let version = actor.version;
    let sequence = actor.sequence;
    // Only the last `window` command ids matter: keep them in a ring, remember them at the end.
    const window = this.window;
    const ring = new Array<string>(window);
    let replayed = 0;
    for await (const e of store.read(stream, { fromVersion: version, fromSequence: sequence || undefined })) {
      snapshot = type.replay(snapshot, e.event);
      version = e.version;
      sequence = e.sequence;
      ring[replayed++ % window] = e.commandId;
    }
    for (let i = Math.max(0, replayed - window); i < replayed; i++) actor.remember(ring[i % window], version - replayed + i + 1, window);
    actor.snapshot = snapshot;
    actor.version = version;
    actor.sequence = sequence;
    actor.loaded = true;
  }

  private async process(type: ActorType, actor: ResidentActor, batch: Envelope[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const base = actor.snapshot;
      const baseVersion = actor.version;
      let snapshot = base;
      const events: EventObject[] = [];
      const commandIds: string[] = [];
      const actions: ExecutableAction[] = [];
      // Per envelope: the version to reply with, negative when not accepted (-(version + 1)).
      const versions = new Array<number>(batch.length);
      const snapshots = new Array<AnyMachineSnapshot>(batch.length);
      const duplicates: boolean[] = [];
      let inBatch: Map<string, number> | undefined;
      for (let i = 0; i < batch.length; i++) {
        const envelope = batch[i];
        const applied = envelope.generated ? undefined : (actor.appliedVersion(envelope.commandId) ?? inBatch?.get(envelope.commandId));
        if (envelope.event === undefined || applied !== undefined) {
          versions[i] = applied ?? -(baseVersion + events.length + 1);
          duplicates[i] = applied !== undefined;
          snapshots[i] = snapshot;
          continue;
        }
        const step = type.step(snapshot, envelope.event);
        snapshots[i] = step.snapshot;
        if (!step.changed) {
          versions[i] = -(baseVersion + events.length + 1);
          continue;
        }
        snapshot = step.snapshot;
        events.push(envelope.event);
        commandIds.push(envelope.commandId);
        for (const action of step.actions) actions.push(action);
        versions[i] = baseVersion + events.length;
        if (!envelope.generated && batch.length > 1) (inBatch ??= new Map()).set(envelope.commandId, versions[i]);
      }

      let sequence = actor.sequence;
      if (events.length > 0) {
        try {
          const result = await this.options.store.append({ type: actor.type, id: actor.id }, events, {
            expectedVersion: baseVersion,
            commandIds,
            // One id per attempt: a retry after a conflict is a different commit.
            commitId: this.idPrefix + 'c' + (this.nextCommit++).toString(36),
          });
          sequence = result.sequence;
        } catch (error) {
          if (error instanceof ConcurrencyError && attempt < CONFLICT_RETRIES) {
            // Another writer moved the stream: catch up, then decide these commands again.
            try {
              await this.load(type, actor);
              continue;
            } catch (loadError) {
              error = loadError;
            }
          }
          // The outcome of a failed append may be unknown: re-read the stream before the next command.
          actor.stale = true;
          for (const envelope of batch) envelope.reject(error);
          return;
        }
      }

      // Durable: commit, run side effects, publish, reply.
      actor.snapshot = snapshot;
      actor.version = baseVersion + events.length;
      actor.sequence = sequence;
      // Ids generated here were never seen by a caller before this reply: nothing can retry them yet.
      for (let i = 0; i < batch.length; i++) {
        if (versions[i] > baseVersion && !duplicates[i] && !batch[i].generated) actor.remember(batch[i].commandId, versions[i], this.window);
      }
      for (const action of actions) this.execute(action, actor);
      if (events.length > 0) {
        this.publish(actor, events, commandIds, sequence);
        // A snapshot must hold every remembered id: none is saved while some are known by
        // hash alone (a migration's), until they are resolved or have left the window.
        if (this.snapshotEvery > 0 && actor.version - actor.snapshotVersion >= this.snapshotEvery && actor.commandsResolved) this.saveSnapshot(type, actor);
      }
      for (let i = 0; i < batch.length; i++) {
        const v = versions[i];
        batch[i].resolve(new Reply(v >= 0, v >= 0 ? v : -v - 1, batch[i].commandId, duplicates[i] === true, snapshots[i]));
      }
      return;
    }
  }

  private execute(action: ExecutableAction, actor: ResidentActor): void {
    // XState built-ins (sendTo, raise with delay, spawn...) would act on the inert scope;
    // only the machine's own action implementations are side effects natstate runs.
    if (!action.exec || action.type.startsWith('xstate.')) return;
    try {
      action.exec(action.info, action.params);
    } catch (error) {
      this.onError(error, `action "${action.type}" of ${actor.type}/${actor.id}`);
    }
  }

  private publish(actor: ResidentActor, events: EventObject[], commandIds: string[], sequence: number): void {
    try {
      const { namespace, nodeId: origin, shardOf } = this.options;
      const { type, id, version } = actor;
      // Without a shard the property is left out, not undefined (the codec would describe an undefined).
      this.options.bus.publish(
        shardOf
          ? { namespace, type, id, version, sequence, events, commandIds, origin, shard: shardOf(id) }
          : { namespace, type, id, version, sequence, events, commandIds, origin },
      );
    } catch (error) {
      this.onError(error, `EventStored of ${actor.type}/${actor.id}`);
    }
  }

  private saveSnapshot(type: ActorType, actor: ResidentActor): void {
    actor.snapshotVersion = actor.version;
    const record = {
      version: actor.version,
      sequence: actor.sequence,
      fingerprint: type.fingerprint,
      state: type.persist(actor.snapshot),
      recentCommands: actor.recentCommands(),
      time: Date.now(),
    };
    this.options.store.saveSnapshot({ type: actor.type, id: actor.id }, record).catch((error) => {
      this.onError(error, `snapshot of ${actor.type}/${actor.id}`);
    });
  }

  /**
   * Evicts the idle resident actors `release` selects (their shard moved to another
   * node); a later command recovers them from the store. Busy ones finish their mailbox
   * and are marked stale, so they re-read the store before any further command.
   */
  evict(release: (type: string, id: string) => boolean): number {
    let evicted = 0;
    for (const byId of this.residents.values()) {
      for (const [id, actor] of byId) {
        if (!release(actor.type, id)) continue;
        if (actor.running || actor.mailbox.length > 0) actor.stale = true;
        else {
          byId.delete(id);
          evicted++;
        }
      }
    }
    return evicted;
  }

  /** Evicts actors idle for longer than `passivateAfterMs`; they recover on their next command. */
  passivate(olderThan = Date.now() - this.passivateAfterMs): number {
    let evicted = 0;
    for (const byId of this.residents.values()) {
      for (const [id, actor] of byId) {
        if (!actor.running && actor.mailbox.length === 0 && actor.lastUsed <= olderThan) {
          byId.delete(id);
          evicted++;
        }
      }
    }
    return evicted;
  }

  /** Stops taking commands, lets queued ones finish, then evicts everything. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    while (this.running > 0) {
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.idle.delete(wake);
          resolve();
        };
        this.idle.add(wake);
      });
    }
    this.residents.clear();
  }
}
