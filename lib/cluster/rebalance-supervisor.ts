/**
 * `RebalanceSupervisor`: the leader's rebalance supervisor machine
 * (`machines/rebalance.machine.ts`) at run time, event-sourced through a `Journal` in
 * the namespace's event store.
 *
 * It paces rebalancing one plan at a time. Ownership moves first (the plan is published
 * as the next shard map, which is the commit of ownership); the supervisor then waits in
 * Migrating until every moved shard is settled: its source reported it done (each source
 * reports to the lease holder), its source is no longer live (nothing to hand over: the
 * new owner recovers those actors from the store), a newer map gave it to another node
 * than the plan's destination (the move is superseded), or `planTimeoutMs` passed (ABORT).
 * A report for a later epoch than the plan's settles the shard too: a source that read a
 * newer map before the plan's (a direct refresh overtakes the watch) hands the shard over
 * under that epoch and never sees the plan's own.
 * Committing records the plan's completion durably, then the next plan may start. A
 * membership change during a plan is remembered (`pending`) and planned right after, so
 * two plans never overlap and migrations of one round finish before the next round moves
 * anything.
 *
 * A new leader replays the journal: an unfinished plan is picked up where it stood and
 * waits at most `resumeGraceMs` for the reports still on their way (those sent to the
 * previous leader are lost with it), then is committed with what is done.
 */
import { createActor, type Actor, type InspectionEvent, type Observer } from 'xstate';
import type { EventStore } from '../eventstore/eventstore.js';
import { reportError } from '../errors.js';
import { rebalanceMachine, rebalanceStatus, type RebalanceEvent, type RebalanceMove, type RebalanceStatus } from '../../machines/rebalance.machine.js';
import { Journal, SYSTEM_TYPE_PREFIX } from './journal.js';

/** Where the supervisor of a namespace journals its events. */
export const REBALANCE_STREAM = { type: `${SYSTEM_TYPE_PREFIX}rebalance`, id: 'supervisor' } as const;

export interface RebalanceSupervisorOptions {
  readonly nodeId: string;
  readonly store: EventStore;
  /** Whether a node is a live member. */
  readonly isLive: (nodeId: string) => boolean;
  /** The newest shard map this node knows (to tell a superseded move). */
  readonly currentMap?: () => { readonly epoch: number; readonly owners: readonly (string | null)[] } | undefined;
  /** Longest a plan waits for its shards before it is committed with what is done. Default 30,000 ms. */
  readonly planTimeoutMs?: number;
  /** Longest a plan picked up by a new leader waits for reports still on their way. Default 3,000 ms. */
  readonly resumeGraceMs?: number;
  readonly inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  /** The supervisor is ready for the next plan (back to Idle, or Planning a change it kept). */
  readonly onReady: () => void;
  readonly onError?: (error: Error) => void;
}

/** What `cluster()` shows of the supervisor on the leader. */
export interface RebalanceView {
  readonly status: RebalanceStatus;
  /** The plan running, or the last one. */
  readonly planId?: string;
  readonly epoch?: number;
  /** Shards of the plan not settled yet. */
  readonly remaining: number;
  readonly lastEpoch?: number;
}

type Checkpoint = { readonly snapshot: unknown };

export class RebalanceSupervisor {
  private readonly journal: Journal<RebalanceEvent, Checkpoint>;
  private readonly planTimeoutMs: number;
  private readonly resumeGraceMs: number;
  private actor: Actor<typeof rebalanceMachine> | undefined;
  private resuming: Promise<void> | undefined;
  /** When the plan now Migrating must be over. */
  private deadline = 0;
  private committing = false;
  /**
   * Reports that arrived before the plan they belong to was recorded: a source may see
   * the published map (and finish) before the publish call returns here. By epoch.
   */
  private early = new Map<number, { shard: number; ok: boolean }[]>();

  constructor(private readonly options: RebalanceSupervisorOptions) {
    this.journal = new Journal({ store: options.store, stream: REBALANCE_STREAM, onError: (error) => reportError(options.onError, error, 'rebalance journal') });
    this.planTimeoutMs = options.planTimeoutMs ?? 30_000;
    this.resumeGraceMs = options.resumeGraceMs ?? 3_000;
  }

  /** Replays the journal once per leadership term; every other call waits for that. */
  ready(): Promise<void> {
    this.resuming ??= this.resume().catch((error: unknown) => {
      this.resuming = undefined;
      throw error;
    });
    return this.resuming;
  }

  /** The leader lost its lease: forget the machine (the next leader replays the journal). */
  stop(): void {
    this.actor?.stop();
    this.actor = undefined;
    this.resuming = undefined;
    this.committing = false;
    this.early.clear();
  }

  get status(): RebalanceStatus | undefined {
    return this.actor ? rebalanceStatus(this.actor.getSnapshot()) : undefined;
  }

  view(): RebalanceView | undefined {
    if (!this.actor) return undefined;
    const { context } = this.actor.getSnapshot();
    return { status: rebalanceStatus(this.actor.getSnapshot()), planId: context.planId, epoch: context.epoch, remaining: context.remaining.length, lastEpoch: context.lastEpoch };
  }

  /** Membership changed: plan now if idle, or right after the running plan. */
  change(): void {
    this.send({ type: 'CHANGE' });
  }

  /** The coordinator published `epoch` with `moves` (empty: nothing to do). */
  planned(epoch: number, moves: readonly RebalanceMove[]): void {
    if (this.status === 'Idle') this.send({ type: 'CHANGE' });
    this.deadline = Date.now() + this.planTimeoutMs;
    this.send({ type: 'PLANNED', planId: `${epoch}:${this.options.nodeId}`, epoch, moves });
    const early = this.early.get(epoch) ?? [];
    this.early.clear();
    for (const report of early) this.shardDone({ ...report, epoch });
    // Shards with no live source have nothing to hand over.
    this.settleUnowed();
  }

  planFailed(reason: string): void {
    if (this.status === 'Idle') this.send({ type: 'CHANGE' });
    this.send({ type: 'PLAN_FAILED', reason });
  }

  /** A source finished its migrations of one shard of `epoch`. */
  shardDone(report: { readonly shard: number; readonly epoch: number; readonly ok: boolean }): void {
    const snapshot = this.actor?.getSnapshot();
    if (!snapshot) return;
    const status = rebalanceStatus(snapshot);
    if (status === 'Idle' || status === 'Planning') {
      // Kept only for the plan being published now (its epoch follows the last one).
      if (report.epoch > (snapshot.context.lastEpoch ?? 0) && this.early.size < 4) {
        const list = this.early.get(report.epoch) ?? [];
        if (list.length < 100_000) list.push({ shard: report.shard, ok: report.ok });
        this.early.set(report.epoch, list);
      }
      return;
    }
    if (status !== 'Migrating' || report.epoch < (snapshot.context.epoch ?? Infinity)) return;
    if (!snapshot.context.remaining.includes(report.shard)) return;
    this.send({ type: 'SHARD_DONE', shard: report.shard, ok: report.ok });
  }

  /**
   * `nodeId` (re)joined: it holds no actor of a plan made before, so shards the plan
   * still expects from it are settled (a source restarted under its id).
   */
  memberJoined(nodeId: string): void {
    const snapshot = this.actor?.getSnapshot();
    if (!snapshot || rebalanceStatus(snapshot) !== 'Migrating') return;
    const from = new Map(snapshot.context.moves.map((m) => [m.shard, m.from]));
    for (const shard of snapshot.context.remaining) if (from.get(shard) === nodeId) this.send({ type: 'SHARD_DONE', shard, ok: false });
  }

  /** Periodic: settles shards whose source is gone or whose move a newer map superseded, and ends a plan past its deadline. */
  tick(): void {
    const snapshot = this.actor?.getSnapshot();
    if (!snapshot) return;
    // Never expected: a machine that errored, or one left in Migrating with nothing
    // remaining (what a checkpoint of a stopped machine led to, see commit()). Report it
    // and recover rather than pace every later plan behind it.
    if (snapshot.status === 'error') {
      reportError(this.options.onError, snapshot.error, 'rebalance supervisor failed; replaying its journal');
      this.stop();
      this.options.onReady();
      return;
    }
    if (rebalanceStatus(snapshot) === 'Migrating' && snapshot.context.remaining.length === 0) {
      reportError(this.options.onError, new Error('supervisor in Migrating with no shard remaining'), 'rebalance supervisor');
      this.send({ type: 'ABORT', reason: 'no shard remaining' });
      return;
    }
    if (this.status !== 'Migrating') return;
    this.settleUnowed();
    if (this.status === 'Migrating' && Date.now() > this.deadline) this.send({ type: 'ABORT', reason: `plan not done after ${this.planTimeoutMs} ms` });
  }

  private async resume(): Promise<void> {
    this.stop();
    const { checkpoint, events } = await this.journal.open();
    // Replayed without the inspector (it would show history as if live), then inspected from there.
    const replay = createActor(rebalanceMachine, {
      input: { leader: this.options.nodeId },
      // A checkpoint an older version took from a stopped machine is still a state of it.
      ...(checkpoint ? { snapshot: { ...(checkpoint.snapshot as object), status: 'active' } as never } : {}),
    }).start();
    for (const event of events) replay.send(event);
    const persisted = replay.getPersistedSnapshot();
    replay.stop();
    const actor = createActor(rebalanceMachine, { input: { leader: this.options.nodeId }, snapshot: persisted as never, inspect: this.options.inspect });
    this.actor = actor;
    actor.subscribe((snapshot) => this.onSnapshot(rebalanceStatus(snapshot)));
    actor.start();
    const status = rebalanceStatus(actor.getSnapshot());
    // A plan the last leader never published (it died while planning) is gone with it.
    if (status === 'Planning') this.send({ type: 'PLAN_FAILED', reason: 'the leader changed while planning' });
    else if (status === 'Migrating') this.deadline = Date.now() + Math.min(this.resumeGraceMs, this.planTimeoutMs);
    else this.onSnapshot(status);
  }

  private send(event: RebalanceEvent): void {
    if (!this.actor) return;
    // Only events the machine takes are history (a stale SHARD_DONE changes nothing).
    if (!this.actor.getSnapshot().can(event)) return;
    this.journal.record(event);
    this.actor.send(event);
  }

  /**
   * Settles the remaining shards nothing of this plan is owed for any more: those with no
   * live source (nothing to hand over), and those a newer map gives to another node than
   * the plan's destination (it was seen as failed meanwhile, say: the move is superseded,
   * not ok, and their actors recover from the store on their owner).
   */
  private settleUnowed(): void {
    const snapshot = this.actor?.getSnapshot();
    if (!snapshot || rebalanceStatus(snapshot) !== 'Migrating') return;
    const map = this.options.currentMap?.();
    const newer = map && map.epoch > (snapshot.context.epoch ?? Infinity) ? map : undefined;
    const moves = new Map(snapshot.context.moves.map((m) => [m.shard, m]));
    for (const shard of snapshot.context.remaining) {
      const move = moves.get(shard);
      if (!move?.from || !this.options.isLive(move.from)) this.send({ type: 'SHARD_DONE', shard, ok: true });
      else if (newer && newer.owners[shard] !== move.to) this.send({ type: 'SHARD_DONE', shard, ok: false });
    }
  }

  private onSnapshot(status: RebalanceStatus): void {
    if (status === 'Committing' && !this.committing) {
      this.committing = true;
      void this.commit();
    } else if (status === 'Idle' || status === 'Planning') {
      try {
        this.options.onReady();
      } catch (error) {
        reportError(this.options.onError, error, 'rebalance supervisor');
      }
    }
  }

  /** The plan is over: store its record, then let the next plan start. */
  private async commit(): Promise<void> {
    const actor = this.actor;
    try {
      await this.journal.flush();
      if (this.actor !== actor || !actor) return;
      const epoch = actor.getSnapshot().context.epoch ?? 0;
      this.committing = false;
      this.send({ type: 'COMMITTED', epoch });
      // Only while this machine is still the running one: a stopped actor's snapshot
      // (leadership lost, node closing meanwhile) says "stopped", and a machine restored
      // from it takes events but never its eventless transitions (seen as a supervisor
      // stuck in Migrating with nothing remaining, or in Committing).
      await this.journal.checkpoint(() => (this.actor === actor ? { snapshot: actor.getPersistedSnapshot() } : undefined));
    } catch (error) {
      this.committing = false;
      reportError(this.options.onError, error, 'rebalance commit');
      if (this.actor === actor) this.send({ type: 'COMMIT_FAILED', reason: error instanceof Error ? error.message : String(error) });
    }
  }
}
