/**
 * Live migration: when a new shard map moves shards between live nodes, each source
 * hands its resident actors of those shards to their new owners with their state, so
 * the new owner serves the next command without replaying the actor's history.
 *
 * Ownership changes first, atomically, in the shard map; migration follows it:
 *
 * - source (`handleRebalanceRequest`): for each resident actor of a moved shard it runs
 *   one migration machine (`machines/migration.machine.ts`): Paused (the map already
 *   routes new commands away) → wait for the command in flight → Capturing → Transferring
 *   (a `MigrationRequest`, retried with backoff) → Acked → Deleted (local copy dropped);
 *   Failed after the retries. Up to `batchSize` actors of one shard pause, are captured
 *   and travel together in one `MigrationBatch`, each with its own machine and outcome.
 *   It goes shard by shard, at most `maxPerSecond` migrations a second, and tells the
 *   destination, the leader and every other owner when a shard is done.
 * - destination (`handleMigrationRequest`, for each actor of a `handleMigrationBatch`): checks that it owns the shard, that the
 *   store is at the captured version (what its store knows, else a read) and that the state fits its machine; installs the
 *   actor and acks. Anything else is refused and the actor is recovered from the store.
 *   Until a moved shard is done (or `holdMs` passed), commands for its actors that are not
 *   installed yet are forwarded to the source (`inTransit`, see `Router`), which serves
 *   them on its warm copy until that actor's hand-over starts, holds them during it
 *   (`admitHandoff`; `MigrationBufferFullError` beyond `maxBuffered`), then answers that
 *   the actor left, and the destination serves them. No command is applied to a cold
 *   copy while the warm one is on its way, and none waits for the rest of the plan.
 * - every node (`previousOwner`): until a moving shard is reported done, commands for its
 *   actors go to the previous owner first, which serves them in one hop while it still
 *   has the actor; the new owner's forwarding is left for its own commands.
 *
 * Nothing depends on a migration succeeding: the events are in the store, and a stale
 * copy can never write (the store fences every append on its expected sequence).
 */
import { createActor, type Actor, type InspectionEvent, type Observer } from 'xstate';
import type { ActorHost } from '../actors/actor-host.js';
import { decode, encodeWithin } from '../codec/codec.js';
import { isMigrationBatchReply, MAX_MIGRATION_BATCH, type MigrationBatch, type MigrationBatchReply, type MigrationReply, type MigrationRequest, type ShardDone } from '../codec/routing.js';
import { MigrationBufferFullError, MigrationOptionError, reportError } from '../errors.js';
import {
  backoffMs,
  initialMigrationStatus,
  isFinalMigration,
  migrationContext,
  migrationDecisionKeys,
  migrationMachine,
  migrationRecordedEventFields,
  migrationStatus,
  type MigrationContext,
  type MigrationEvent,
  type MigrationInput,
  type MigrationState,
  type MigrationStatus,
} from '../../machines/migration.machine.js';
import { ActorType } from '../actors/actor-type.js';
import { StepCache, type Stepped } from '../actors/step-cache.js';
import { SYSTEM_TYPE_PREFIX, type Journal } from './journal.js';
import { shardOf } from './placement.js';
import type { ShardMap } from './shard-map.js';
import type { Transport } from './transport/transport.js';

/**
 * Default pace of a source (`MigrationOptions.maxPerSecond`): in process, and over NATS,
 * where a migration costs its nodes about twice the CPU (B9, unloaded: about 200 µs
 * against 100 µs), so a lower pace takes about the same share. See ARCHITECTURE.md,
 * "Sources pace their hand-overs", for the measurements.
 */
export const MIGRATIONS_PER_SECOND = { embedded: 330, nats: 150 } as const;

/** What a source's migration journal holds: each migration's input, then its events in order. */
export type MigrationRecord =
  | { readonly type: 'START'; readonly key: string; readonly input: MigrationInput }
  | { readonly type: 'STEP'; readonly key: string; readonly event: MigrationEvent };

/** The stream of a node's migration journal. */
export function migrationJournalStream(nodeId: string): { readonly type: string; readonly id: string } {
  return { type: `${SYSTEM_TYPE_PREFIX}migrations`, id: nodeId };
}

/**
 * Replays a migration journal: one started machine per migration, keyed as journaled,
 * each fed its events in order (the caller stops them).
 */
export function replayMigrations(records: Iterable<MigrationRecord>): Map<string, Actor<typeof migrationMachine>> {
  const open = new Map<string, Actor<typeof migrationMachine>>();
  for (const record of records) {
    if (record.type === 'START') open.set(record.key, createActor(migrationMachine, { input: record.input }).start());
    else open.get(record.key)?.send(record.event);
  }
  return open;
}

/** One actor's migration as the source sees it. */
export interface ActorMigration {
  readonly actor: { readonly type: string; readonly id: string };
  readonly from: string;
  readonly to: string;
  /** `<epoch>:<from>`: every migration of one map change from one source. */
  readonly planId: string;
  readonly epoch: number;
  readonly status: MigrationStatus;
  readonly attempts: number;
  readonly error?: string;
}

export interface MigrationOptions {
  readonly nodeId: string;
  readonly host: ActorHost;
  readonly transport: Transport;
  readonly shardMap: { readonly current: ShardMap | undefined; refresh(): Promise<unknown> };
  /** Whether a node is a live member (a dead source sends nothing, so nothing is held for it). */
  readonly isLive: (nodeId: string) => boolean;
  /** The lease holder: a source reports each shard done to the map's publisher, or to it if the publisher is gone. */
  readonly leader?: () => string | undefined;
  readonly maxPayload: number;
  /**
   * Migrations running at once on a source. Default 32: enough to hide a network round
   * trip per actor, and to keep up with `maxPerSecond` while every step of a migration
   * waits its turn behind a loaded event loop. B9 on a slower machine: 12 at a time gave
   * plans of 3.1-4.6 s, 24 of 2.6-3.4 s (half of them over 3 s), 32 of 2.3-2.85 s at
   * about the same throughput ratio (interleaved runs: medians 0.62 at 32, 0.59 at 24;
   * full bench runs: 0.53-0.56 against 0.60-0.61), 40 of 2.3-2.6 s but a ratio of 0.56.
   * `maxPerSecond` bounds the CPU it takes.
   */
  readonly concurrency?: number;
  /**
   * Most actors of one shard sent in one request (a `MigrationBatch`). Default 16. They
   * pause, are captured and travel together, so the round trip, the delivery and the
   * reply are paid once per batch instead of once per actor; each keeps its own machine,
   * journal and outcome. 1: one request per actor.
   */
  readonly batchSize?: number;
  /**
   * Most migrations a source starts per second (Infinity: no limit). Default
   * `MIGRATIONS_PER_SECOND.embedded` (`createNode` passes `.nats` over NATS). A
   * hand-over competes for CPU with the commands the node serves meanwhile; spread out,
   * it takes a bounded share (B9). `concurrency` still hides the round trips.
   */
  readonly maxPerSecond?: number;
  /** Wait for one destination's answer. Default 2,000 ms. */
  readonly transferTimeoutMs?: number;
  /** Transfer attempts before a migration fails. Default 3. */
  readonly maxAttempts?: number;
  /** Longest a destination forwards commands for an incoming shard to its source (the source normally reports the shard done first). Default 30,000 ms. */
  readonly holdMs?: number;
  /** Most forwarded commands waiting per actor during its hand-over. Default 1,000. */
  readonly maxBuffered?: number;
  /** Receives every migration machine's inspection events (`@statelyai/inspect` or a plain observer). */
  readonly inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  /** Called whenever a migration reaches a final status. */
  readonly onMigration?: (migration: ActorMigration) => void;
  /** Where this node's migration machines are event-sourced (see `recover`). */
  readonly journal?: Journal<MigrationRecord>;
  readonly onError?: (error: Error) => void;
}

/** A migration machine run (see `MigrationCoordinator.drive`). */
interface Driver {
  send(event: MigrationEvent): void;
  snapshot(): MigrationState;
  stop(): void;
}

/** One actor's migration under way on its source. */
interface Handover {
  readonly type: string;
  readonly id: string;
  /** Commands forwarded for it, waiting for its hand-over to end. */
  readonly waiting: ((moved: false) => void)[];
  readonly driver: Driver;
  /** Sends an event to the machine, journaled first. */
  readonly machine: { send(event: MigrationEvent): void };
  readonly status: () => MigrationStatus;
  /** Set once it is captured. */
  request?: MigrationRequest;
  /** Its copy dropped and its outcome recorded (see `end`). */
  ended: boolean;
}

/** Counts actors in flight: `take` waits (first come, first served) until `count` more fit. */
class Slots {
  private used = 0;
  private readonly queue: { count: number; resolve: () => void }[] = [];

  constructor(private readonly size: number) {}

  take(count: number): Promise<void> | void {
    if (this.queue.length === 0 && this.used + count <= this.size) {
      this.used += count;
      return;
    }
    return new Promise<void>((resolve) => this.queue.push({ count, resolve }));
  }

  give(count: number): void {
    this.used -= count;
    while (this.queue.length > 0 && this.used + this.queue[0].count <= this.size) {
      const next = this.queue.shift()!;
      this.used += next.count;
      next.resolve();
    }
  }
}

interface Incoming {
  readonly from: string;
  readonly epoch: number;
  readonly timer: NodeJS.Timeout;
}

/**
 * The migration machine's pure transitions (it has no actions to run), remembered: every
 * migration takes the same steps, and only its data differs (see `StepCache`).
 */
const migrationSteps = new StepCache<MigrationStatus, MigrationContext>(
  new ActorType('$natstate.migration', migrationMachine),
  migrationDecisionKeys,
  migrationRecordedEventFields,
);
/** Actors of one batch a destination checks at once (each may read the store). */
const CHECKS_AT_ONCE = 16;
const keyOf = (type: string, id: string) => `${type}\u0000${id}`;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

export class MigrationCoordinator {
  private readonly concurrency: number;
  private readonly batchSize: number;
  /** Milliseconds between migration starts (0: no pacing). */
  private readonly interval: number;
  /** When (performance.now()) the next migration may start. */
  private nextStart = 0;
  private readonly transferTimeoutMs: number;
  private readonly maxAttempts: number;
  private readonly holdMs: number;
  private readonly maxBuffered: number;
  private readonly incoming = new Map<number, Incoming>();
  /**
   * Shards moving between two other nodes, or away from this one, whose hand-over has not
   * been reported done: commands for their actors go to the previous owner first, which
   * serves them warm until each actor's own hand-over (see `previousOwner`).
   */
  private readonly moving = new Map<number, { readonly from: string; readonly epoch: number }>();
  private readonly movingTimers = new Set<NodeJS.Timeout>();
  /** `shard:epoch` of shard-done messages that arrived before this node saw that epoch. */
  private readonly doneEarly = new Set<string>();
  /** Source side: commands forwarded for each actor being handed over, waiting for its hand-over to end. */
  private readonly handingOver = new Map<string, ((moved: false) => void)[]>();
  private readonly recent: ActorMigration[] = [];
  private running = 0;
  private completed = 0;
  private failed = 0;
  private closed = false;
  private readonly inFlight = new Set<Promise<void>>();
  /** Wakes each batch waiting for its start slot (see `pace`). */
  private readonly pacing = new Set<() => void>();

  constructor(private readonly options: MigrationOptions) {
    this.concurrency = options.concurrency ?? 32;
    if (!Number.isSafeInteger(this.concurrency) || this.concurrency < 1) throw new MigrationOptionError('concurrency', options.concurrency, 'must be an integer >= 1');
    this.batchSize = options.batchSize ?? 16;
    if (!Number.isSafeInteger(this.batchSize) || this.batchSize < 1 || this.batchSize > MAX_MIGRATION_BATCH) {
      throw new MigrationOptionError('batchSize', options.batchSize, `must be an integer from 1 to ${MAX_MIGRATION_BATCH}`);
    }
    const maxPerSecond = options.maxPerSecond ?? MIGRATIONS_PER_SECOND.embedded;
    if (typeof maxPerSecond !== 'number' || !(maxPerSecond > 0)) throw new MigrationOptionError('maxPerSecond', options.maxPerSecond, 'must be a number > 0 (Infinity: no limit)');
    this.interval = 1000 / maxPerSecond;
    this.transferTimeoutMs = options.transferTimeoutMs ?? 2_000;
    this.maxAttempts = options.maxAttempts ?? 3;
    this.holdMs = options.holdMs ?? 30_000;
    this.maxBuffered = options.maxBuffered ?? 1_000;
  }

  /** How many migrations run now, and how many ended each way (without copying `recent`). */
  counts(): { running: number; completed: number; failed: number } {
    return { running: this.running, completed: this.completed, failed: this.failed };
  }

  /** Counts, and the last migrations that ended (newest last). */
  status(): { running: number; completed: number; failed: number; recent: readonly ActorMigration[] } {
    return { ...this.counts(), recent: [...this.recent] };
  }

  /** Reacts to a new shard map: migrate what left this node, hold what is on its way here. */
  onMapChange(previous: ShardMap | undefined, next: ShardMap): void {
    if (this.closed || !previous || previous.shardCount !== next.shardCount) {
      if (previous && previous.shardCount !== next.shardCount) this.options.host.evict(() => true);
      return;
    }
    const { nodeId, isLive } = this.options;
    const outgoing: { shard: number; to: string }[] = [];
    let moved = false;
    for (let shard = 0; shard < next.shardCount; shard++) {
      const before = previous.owners[shard];
      const after = next.owners[shard];
      if (before === after) continue;
      this.moving.delete(shard);
      if (before === nodeId && after) outgoing.push({ shard, to: after });
      else if (after === nodeId && before && before !== nodeId && isLive(before)) this.expect(shard, before, next.epoch);
      if (before && after && after !== nodeId && (before === nodeId || isLive(before))) {
        this.moving.set(shard, { from: before, epoch: next.epoch });
        moved = true;
      }
    }
    if (moved) {
      // Like a destination's hold: a report that never comes (lost, or its source hung) ends after holdMs.
      const timer = setTimeout(() => {
        this.movingTimers.delete(timer);
        for (const [shard, entry] of this.moving) if (entry.epoch === next.epoch) this.moving.delete(shard);
      }, this.holdMs);
      timer.unref();
      this.movingTimers.add(timer);
    }
    // Resident actors of shards this node does not own and is not handing over are dropped.
    const handingOver = new Set(outgoing.map((m) => m.shard));
    this.options.host.evict((_type, id) => {
      const shard = shardOf(id, next.shardCount);
      return next.owners[shard] !== nodeId && !handingOver.has(shard);
    });
    if (outgoing.length > 0) {
      const work = this.handleRebalanceRequest({ epoch: next.epoch, moves: outgoing });
      this.inFlight.add(work);
      void work.finally(() => this.inFlight.delete(work));
    }
  }

  /**
   * Source side: migrates every resident actor of the moved shards to its new owner,
   * `concurrency` at a time, then reports each shard done to its destination.
   */
  async handleRebalanceRequest(rebalance: { epoch: number; moves: readonly { shard: number; to: string }[] }): Promise<void> {
    const { host, nodeId } = this.options;
    const map = this.options.shardMap.current;
    const shardCount = map?.shardCount ?? 1;
    // The leader that published this map runs the plan and counts its shards done (see
    // RebalanceSupervisor); if it is gone, the lease holder picked the plan up.
    // (A node that is leaving no longer watches membership: it trusts the publisher.)
    const publisher = map?.leader;
    const leader = publisher && (this.options.isLive(publisher) || !this.options.isLive(nodeId)) ? publisher : (this.options.leader?.() ?? publisher);
    const destination = new Map(rebalance.moves.map((m) => [m.shard, m.to]));
    // Shard by shard: each shard is reported done as early as it can be, and from then on
    // its commands go straight to the new owner instead of through this node.
    const actors = host
      .residentsWhere((_type, id) => destination.has(shardOf(id, shardCount)))
      .map((a) => ({ ...a, shard: shardOf(a.id, shardCount) }))
      .sort((a, b) => a.shard - b.shard);
    // Counted as running from now on, queued or in flight, until each one ends.
    this.running += actors.length;
    const pendingPerShard = new Map<number, number>();
    const failedShards = new Set<number>();
    for (const a of actors) pendingPerShard.set(a.shard, (pendingPerShard.get(a.shard) ?? 0) + 1);
    const finishShard = (shard: number) => {
      const to = destination.get(shard)!;
      const message: ShardDone = { kind: 'shard-done', shard, epoch: rebalance.epoch, from: nodeId, ok: !failedShards.has(shard) };
      if (this.moving.get(shard)?.from === nodeId) this.moving.delete(shard);
      // The destination stops forwarding, the leader counts the shard, and every other node
      // stops sending its commands here first.
      // (The leader may be this node: it hears through the transport like everyone else.)
      const recipients = new Set([to, ...(this.options.shardMap.current?.owners ?? [])]);
      recipients.delete(nodeId);
      if (leader) recipients.add(leader);
      for (const recipient of recipients) if (recipient) void this.shardDone(recipient, message);
    };
    for (const m of rebalance.moves) if (!pendingPerShard.has(m.shard)) finishShard(m.shard);

    // Consecutive actors of one shard travel together, up to `batchSize` per request (and
    // never more than `concurrency`).
    const most = Math.min(this.batchSize, this.concurrency);
    const batches: { shard: number; actors: { type: string; id: string }[] }[] = [];
    for (const a of actors) {
      const last = batches[batches.length - 1];
      if (last && last.shard === a.shard && last.actors.length < most) last.actors.push(a);
      else batches.push({ shard: a.shard, actors: [a] });
    }
    // At most `concurrency` actors in flight, however the batches are filled (a shard with
    // few resident actors makes small batches).
    const slots = new Slots(this.concurrency);
    let next = 0;
    const worker = async () => {
      // Not cut short by close(): the map already routes these actors away, so a node that
      // leaves still hands every one over warm, and every destination hears each shard is
      // done instead of forwarding its commands for holdMs.
      while (next < batches.length) {
        // Embedded transports answer within microtasks: without a turn of the event loop
        // between batches, a big hand-over would keep every other command waiting.
        await yieldToEventLoop();
        if (next >= batches.length) break;
        const batch = batches[next++];
        await slots.take(batch.actors.length);
        try {
          await this.pace(batch.actors.length);
          const { shard } = batch;
          const statuses = await this.migrate(batch.actors, destination.get(shard)!, rebalance.epoch);
          if (statuses.some((status) => status !== 'Deleted')) failedShards.add(shard);
          const left = pendingPerShard.get(shard)! - batch.actors.length;
          pendingPerShard.set(shard, left);
          if (left === 0) finishShard(shard);
        } finally {
          slots.give(batch.actors.length);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, batches.length) }, worker));
  }

  /**
   * Waits for the start slot of `count` migrations (one batch, started together): at most
   * `maxPerSecond` start each second, the batches evenly spaced. Not once the node closes:
   * pacing spares the commands this node serves, and a closing node serves none, so it
   * hands the rest over at once instead of making `close()` wait (at `maxPerSecond: 1`,
   * minutes).
   */
  private async pace(count: number): Promise<void> {
    if (this.interval === 0 || this.closed) return;
    const now = performance.now();
    const slot = Math.max(now, this.nextStart);
    this.nextStart = slot + this.interval * count;
    if (slot - now < 1) return;
    await new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.pacing.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, slot - now);
      timer.unref();
      this.pacing.add(wake);
    });
  }

  /**
   * Actors of one shard, each driven through its own migration machine; they pause,
   * capture and travel together (one `MigrationBatch`, or a lone `MigrationRequest`), and
   * each one ends (its copy dropped, its held commands sent on) as soon as it is acked or
   * failed. Returns each one's final status, in order.
   */
  private async migrate(actors: readonly { readonly type: string; readonly id: string }[], to: string, epoch: number): Promise<MigrationStatus[]> {
    const handovers = actors.map((a) => this.begin(a.type, a.id, to, epoch));
    try {
      // The new map already routes these actors' commands to `to`; let those in flight finish.
      for (const h of handovers) h.machine.send({ type: 'PAUSE' });
      await Promise.all(handovers.map((h) => this.capture(h, epoch)));
      const ready: Handover[] = [];
      for (const h of handovers) {
        if (h.status() === 'Transferring') ready.push(h);
        else this.end(h);
      }
      if (ready.length > 0) await this.transferAll(ready, to);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      for (const h of handovers) h.machine.send({ type: 'FAIL', reason });
    } finally {
      for (const h of handovers) this.end(h);
    }
    return handovers.map((h) => h.status());
  }

  /** Starts one actor's migration machine (journaled); from here on, commands forwarded for it wait until its hand-over ends. */
  private begin(type: string, id: string, to: string, epoch: number): Handover {
    const { nodeId, journal } = this.options;
    const planId = `${epoch}:${nodeId}`;
    const input: MigrationInput = { actorType: type, actorId: id, from: nodeId, to, planId, epoch, maxAttempts: this.maxAttempts };
    const key = `${planId}:${type}:${id}`;
    journal?.record({ type: 'START', key, input });
    const driver = this.drive(input);
    const waiting: ((moved: false) => void)[] = [];
    this.handingOver.set(keyOf(type, id), waiting);
    const status = () => migrationStatus(driver.snapshot());
    return {
      type,
      id,
      waiting,
      driver,
      ended: false,
      machine: {
        send(event: MigrationEvent) {
          // A final machine takes nothing more (a late outcome of an actor already ended).
          if (isFinalMigration(status())) return;
          // Every event the machine takes is journaled in the same order.
          journal?.record({ type: 'STEP', key, event });
          driver.send(event);
        },
      },
      status,
    };
  }

  /**
   * Paused → Capturing → Transferring: waits for the command in flight, then captures the
   * actor's state and version; Failed when it is no longer here or anything goes wrong
   * (for this actor alone).
   */
  private async capture(h: Handover, epoch: number): Promise<void> {
    const { host, nodeId } = this.options;
    const { type, id } = h;
    try {
      await host.whenIdle(type, id);
      h.machine.send({ type: 'DRAINED' });
      let capture = host.capture(type, id);
      if (!capture && host.isResident(type, id)) {
        // Another node wrote to it since it was loaded (the store is ahead): replay the
        // events it missed, then capture.
        await host.dispatch(type, id, undefined, undefined);
        await host.whenIdle(type, id);
        capture = host.capture(type, id);
      }
      if (!capture) {
        h.machine.send({ type: 'FAIL', reason: 'the actor is no longer resident here; its new owner recovers it from the store' });
        return;
      }
      h.machine.send({ type: 'CAPTURED', version: capture.version });
      h.request = { kind: 'migrate', type, id, from: nodeId, epoch, ...capture };
    } catch (error) {
      h.machine.send({ type: 'FAIL', reason: error instanceof Error ? error.message : String(error) });
    }
  }

  /**
   * Transferring: sends the captured actors, each attempt carrying those still
   * transferring, until each one is acked or failed (and ends it then). A batch that
   * cannot be encoded (over the payload limit, or a state the codec refuses) is split;
   * an actor that cannot be encoded alone fails.
   */
  private async transferAll(handovers: readonly Handover[], to: string): Promise<void> {
    const single = handovers.length === 1;
    const what = single ? `migration of ${handovers[0].type}/${handovers[0].id}` : `migration of ${handovers.length} actors`;
    let payload: Uint8Array;
    try {
      const message: MigrationRequest | MigrationBatch = single ? handovers[0].request! : { kind: 'migrate-batch', actors: handovers.map((h) => h.request!) };
      payload = encodeWithin(message, this.options.maxPayload, what);
    } catch (error) {
      // Over the limit, or a state the codec refuses: halves until the actor at fault is alone.
      if (!single) {
        const half = handovers.length >> 1;
        await Promise.all([this.transferAll(handovers.slice(0, half), to), this.transferAll(handovers.slice(half), to)]);
        return;
      }
      for (const h of handovers) {
        h.machine.send({ type: 'FAIL', reason: (error as Error).message });
        this.end(h);
      }
      return;
    }
    // Closing does not cut the attempts short: a leaving node hands its actors over (at most maxAttempts each).
    const replies = await this.transfer(to, payload, handovers.length);
    const again: Handover[] = [];
    handovers.forEach((h, i) => {
      const reply = replies[i];
      if (reply.kind === 'ack') h.machine.send({ type: 'ACK' });
      else if (reply.reason === 'timeout') h.machine.send({ type: 'TIMEOUT' });
      else h.machine.send({ type: 'NACK', reason: reply.reason, retryable: reply.retryable });
      if (h.status() === 'Transferring') again.push(h);
      else this.end(h);
    });
    if (again.length === 0) return;
    // Attempts made so far (they move in step: every actor here has made the same number).
    await sleep(backoffMs(Math.max(...again.map((h) => h.driver.snapshot().context.attempts)) - 1));
    await this.transferAll(again, to);
  }

  /**
   * Acked or failed, this node no longer owns the actor: drop the copy, and send the
   * commands that waited for it back to the new owner, in order. Once per actor.
   */
  private end(h: Handover): void {
    if (h.ended) return;
    h.ended = true;
    this.options.host.release(h.type, h.id);
    this.handingOver.delete(keyOf(h.type, h.id));
    for (const moved of h.waiting) moved(false);
    if (h.status() === 'Acked') h.machine.send({ type: 'DELETED' });
    this.running--;
    this.record(h.driver.snapshot());
    h.driver.stop();
  }

  /** One attempt: a reply per actor (a timeout or a single refusal answers them all). */
  private async transfer(to: string, payload: Uint8Array, count: number): Promise<MigrationReply[]> {
    let reply: MigrationReply;
    try {
      const answer = await this.options.transport.request(to, payload, this.transferTimeoutMs);
      const decoded = decode(answer, isMigrationBatchReply(count), `migration reply from ${to}`);
      if (decoded.kind === 'migrated') {
        // A lone request gets a lone reply; a batch reply to one is read all the same.
        return [...decoded.replies];
      }
      reply = decoded;
    } catch (error) {
      const name = error instanceof Error ? error.name : '';
      if (name === 'TimeoutError' || name === 'NoRespondersError') reply = { kind: 'nack', reason: 'timeout', retryable: true };
      else reply = { kind: 'nack', reason: error instanceof Error ? error.message : String(error), retryable: false };
    }
    return Array.from({ length: count }, () => reply);
  }

  /**
   * Runs one migration machine: a live actor when someone inspects (so the observer sees
   * it), otherwise its transitions, remembered (`migrationSteps`): the initial state and
   * five events took 58-64 µs through XState's `transition` on this machine, 4-9 µs
   * remembered (an unloaded B9 plan: 30% less busy time).
   */
  private drive(input: MigrationInput): Driver {
    if (this.options.inspect) {
      const actor = createActor(migrationMachine, { input, inspect: this.options.inspect }).start();
      return { send: (event) => actor.send(event), snapshot: () => actor.getSnapshot(), stop: () => actor.stop() };
    }
    let current: Stepped<MigrationStatus, MigrationContext> = { state: { value: initialMigrationStatus, context: migrationContext(input) } };
    return {
      send: (event) => (current = migrationSteps.next(current, event)),
      snapshot: () => current.state,
      stop: () => {},
    };
  }

  private record(snapshot: MigrationState): void {
    const migration = toMigration(snapshot);
    if (migration.status === 'Deleted') this.completed++;
    else this.failed++;
    this.recent.push(migration);
    if (this.recent.length > 1000) this.recent.shift();
    try {
      this.options.onMigration?.(migration);
    } catch (error) {
      reportError(this.options.onError, error, 'onMigration');
    }
  }

  /**
   * Tells `to` that a shard is done, sent again (up to `maxAttempts` in all, with backoff)
   * while it times out: a report the leader never gets keeps its plan open until
   * `planTimeoutMs`. A repeat is harmless, both sides settle a shard once.
   */
  private async shardDone(to: string, message: ShardDone): Promise<void> {
    const payload = encodeWithin(message, this.options.maxPayload, 'shard done');
    for (let attempt = 1; ; attempt++) {
      try {
        await this.options.transport.request(to, payload, this.transferTimeoutMs);
        return;
      } catch (error) {
        // Anything else (no responders, closed): the node is gone, and a destination stops holding after holdMs anyway.
        if (!(error instanceof Error && error.name === 'TimeoutError') || attempt >= this.maxAttempts) return;
      }
      await sleep(backoffMs(attempt));
    }
  }

  /** Destination side: validate and install an actor migrated here. */
  async handleMigrationRequest(request: MigrationRequest): Promise<MigrationReply> {
    return this.accept(request, await this.mapAt(request.epoch));
  }

  /**
   * Destination side: every actor of a batch, each checked and installed as a lone
   * request would be, with one look for a newer map for the whole batch and at most
   * `CHECKS_AT_ONCE` store reads at a time.
   */
  async handleMigrationBatch(batch: MigrationBatch): Promise<MigrationBatchReply> {
    const map = await this.mapAt(Math.max(...batch.actors.map((request) => request.epoch)));
    const replies: MigrationReply[] = [];
    for (let i = 0; i < batch.actors.length; i += CHECKS_AT_ONCE) {
      replies.push(...(await Promise.all(batch.actors.slice(i, i + CHECKS_AT_ONCE).map((request) => this.accept(request, map)))));
    }
    return { kind: 'migrated', replies };
  }

  /** The shard map, refreshed first when it is older than `epoch`. */
  private async mapAt(epoch: number): Promise<ShardMap | undefined> {
    const { shardMap } = this.options;
    if (!shardMap.current || shardMap.current.epoch < epoch) await shardMap.refresh().catch(() => undefined);
    return shardMap.current;
  }

  private async accept(request: MigrationRequest, map: ShardMap | undefined): Promise<MigrationReply> {
    const { host, nodeId } = this.options;
    if (!map || map.owners[shardOf(request.id, map.shardCount)] !== nodeId) {
      return { kind: 'nack', reason: `node ${nodeId} does not own the shard of ${request.type}/${request.id}`, retryable: !map || map.epoch < request.epoch };
    }
    let installed: boolean;
    try {
      // This node's store already knows the version of nearly every stream it is sent (the
      // source's last commit reached it as an EventStored before the request did). A known
      // version can lag behind the store, and runs ahead of it only after a false hint or
      // a stream deleted or purged underneath: at or past the captured one it answers the
      // check without a round trip. A write since then by anyone else, or a store behind
      // the cache, still fails this node's first append on its expected sequence (and the
      // actor catches up from the store), as a write between a read and the install would.
      const known = host.knownStoreVersion(request.type, request.id);
      const stored = known !== undefined && known >= request.version ? known : await host.storeVersion(request.type, request.id);
      if (stored !== request.version) {
        return { kind: 'nack', reason: `version mismatch: migrated at ${request.version}, the store is at ${stored}; recovering from the store`, retryable: false };
      }
      installed = host.install(request.type, request.id, request);
    } catch (error) {
      return { kind: 'nack', reason: `rejected: ${error instanceof Error ? error.message : String(error)}; recovering from the store`, retryable: false };
    }
    return { kind: 'ack', installed };
  }

  /** A source failed: the shards it was to hand over come from the store instead, and nobody sends their commands to it. */
  sourceFailed(nodeId: string): void {
    for (const [shard, entry] of [...this.incoming]) if (entry.from === nodeId) this.releaseShard(shard);
    for (const [shard, entry] of this.moving) if (entry.from === nodeId) this.moving.delete(shard);
  }

  /** The source finished a shard: a destination serves its remaining commands itself, any other node sends them to the new owner. */
  handleShardDone(message: ShardDone): void {
    const moving = this.moving.get(message.shard);
    if (moving && moving.from === message.from && moving.epoch <= message.epoch) this.moving.delete(message.shard);
    const entry = this.incoming.get(message.shard);
    if (entry && entry.epoch <= message.epoch) this.releaseShard(message.shard);
    else if (!entry) {
      this.doneEarly.add(`${message.shard}:${message.epoch}`);
      if (this.doneEarly.size > 10_000) this.doneEarly.clear();
    }
  }

  /**
   * Destination side: the node to forward a command for (type, id) to, while the actor is
   * still on its way from there (its shard moved here and it is not resident yet), or
   * undefined when it is served here.
   */
  inTransit(type: string, id: string): string | undefined {
    if (this.incoming.size === 0) return undefined;
    const map = this.options.shardMap.current;
    if (!map) return undefined;
    const entry = this.incoming.get(shardOf(id, map.shardCount));
    return entry && !this.options.host.isResident(type, id) ? entry.from : undefined;
  }

  /**
   * Any node, for a command it routes to another node: the previous owner of the shard
   * while it is moving (not reported done yet), or undefined. The previous owner serves
   * the command warm if its actor has not been handed over yet (it may be this node).
   */
  previousOwner(shard: number): string | undefined {
    return this.moving.get(shard)?.from;
  }

  /**
   * Source side, for a command its new owner forwarded: true to serve it here (the actor
   * is still resident and not handed over yet); false once it is gone, after waiting for
   * a hand-over under way to end. Beyond `maxBuffered` waiting commands per actor, the
   * sender gets `MigrationBufferFullError`.
   */
  admitHandoff(type: string, id: string): Promise<boolean> | boolean {
    const waiting = this.handingOver.get(keyOf(type, id));
    if (!waiting) return this.options.host.isResident(type, id);
    if (waiting.length >= this.maxBuffered) throw new MigrationBufferFullError(type, id, this.maxBuffered);
    return new Promise<boolean>((resolve) => waiting.push(resolve));
  }

  private expect(shard: number, from: string, epoch: number): void {
    if (this.doneEarly.delete(`${shard}:${epoch}`)) return;
    this.releaseShard(shard);
    const timer = setTimeout(() => this.releaseShard(shard), this.holdMs);
    timer.unref();
    this.incoming.set(shard, { from, epoch, timer });
  }

  private releaseShard(shard: number): void {
    const entry = this.incoming.get(shard);
    if (!entry) return;
    this.incoming.delete(shard);
    clearTimeout(entry.timer);
  }

  /**
   * Replays this node's migration journal (from a previous run under the same node id)
   * and closes every migration it left unfinished as Failed: that process and its copies
   * of the actors are gone, and their state is in the store, where their new owners
   * recover it. Returns the migrations it closed (they count as failed in `status()`).
   */
  async recover(): Promise<ActorMigration[]> {
    const { journal } = this.options;
    if (!journal) return [];
    const { events } = await journal.open();
    const open = replayMigrations(events);
    const closed: ActorMigration[] = [];
    for (const [key, actor] of open) {
      if (!isFinalMigration(migrationStatus(actor.getSnapshot()))) {
        const event: MigrationEvent = { type: 'FAIL', reason: 'the source restarted during the migration; the actor recovers from the store' };
        journal.record({ type: 'STEP', key, event });
        actor.send(event);
        const migration = toMigration(actor.getSnapshot());
        closed.push(migration);
        this.failed++;
        this.recent.push(migration);
        if (this.recent.length > 1000) this.recent.shift();
      }
      actor.stop();
    }
    await journal.checkpoint(() => ({}));
    return closed;
  }

  /**
   * Starts no new plan, lets the plans under way end (each of their actors migrated or
   * failed, no longer paced), releases every held command.
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const wake of [...this.pacing]) wake();
    await Promise.all([...this.inFlight]);
    for (const shard of [...this.incoming.keys()]) this.releaseShard(shard);
    for (const timer of this.movingTimers) clearTimeout(timer);
    this.movingTimers.clear();
    this.moving.clear();
    // Every migration is final now: the next start of this node id reads from here.
    await this.options.journal?.checkpoint(() => ({})).catch((error: unknown) => reportError(this.options.onError, error, 'migration journal'));
  }
}

function toMigration(snapshot: MigrationState): ActorMigration {
  const { context } = snapshot;
  return {
    actor: { type: context.actorType, id: context.actorId },
    from: context.from,
    to: context.to,
    planId: context.planId,
    epoch: context.epoch,
    status: migrationStatus(snapshot),
    attempts: context.attempts,
    error: context.error,
  };
}
