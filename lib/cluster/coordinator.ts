/**
 * `ShardCoordinator`: the leader's planner. While this node holds the lease it keeps
 * the shard map balanced over the live members: on every membership change, when it
 * becomes leader, and every `planIntervalMs`, it runs the pure `rebalanceShards` on the
 * current map and, if anything moves, publishes the result as the next epoch.
 *
 * One plan is in flight at a time; triggers arriving meanwhile collapse into a single
 * follow-up plan, so the coordinator never publishes two maps computed from the same
 * epoch. Across nodes the map's revision check does the same: a publisher whose view was
 * stale (a new leader that has not seen the latest map yet, a deposed one) gets a
 * `RevisionConflictError`, re-reads the map and plans again on top of it — the epoch
 * keeps increasing, a new leader never starts over.
 *
 * With move caps a rebalance is spread over several epochs, one round per interval tick
 * (the coordinator does not re-plan on its own publications).
 */
import { NatstateError } from '../errors.js';
import { RevisionConflictError } from './kv/kv.js';
import type { LeaderLease } from './leader-lease.js';
import type { Membership } from './membership.js';
import { PlacementArgumentError, rebalanceShards, type RebalanceOptions, type ShardMove } from './placement.js';
import type { RebalanceSupervisor } from './rebalance-supervisor.js';
import type { ShardMap, ShardMapStore } from './shard-map.js';

/** The stored shard map has another shard count than this node was configured with. It is left as it is. */
export class ShardCountMismatchError extends NatstateError {
  constructor(
    readonly configuredShardCount: number,
    readonly storedShardCount: number,
    readonly epoch: number,
  ) {
    super(
      'SHARD_COUNT_MISMATCH',
      `the shard map (epoch ${epoch}) has ${storedShardCount} shards but this node is configured with ${configuredShardCount}; the map was not changed`,
    );
  }
}

/** A map the coordinator published, with the moves from the previous one. */
export interface ShardPlan {
  readonly epoch: number;
  readonly moves: readonly ShardMove[];
  readonly owners: readonly string[];
}

export interface ShardCoordinatorOptions {
  readonly membership: Pick<Membership, 'liveNodeIds' | 'subscribe'>;
  readonly lease: Pick<LeaderLease, 'isLeader' | 'subscribe'>;
  readonly shardMap: Pick<ShardMapStore, 'current' | 'refresh' | 'publish'>;
  readonly nodeId: string;
  readonly shardCount: number;
  /** At most this many moves between live nodes per epoch (see `rebalanceShards`). */
  readonly maxMoves?: number;
  /** At most this share of the shards moves between live nodes per epoch. */
  readonly maxMovesRatio?: number;
  /** Interval between two periodic plans. Default 1,000 ms. */
  readonly planIntervalMs?: number;
  /** Called after each map this node published. */
  readonly onPlan?: (plan: ShardPlan) => void;
  /** Failed plans (retried at the next trigger) and `ShardCountMismatchError`. */
  readonly onError?: (error: Error) => void;
  /**
   * Paces plans: none starts while the supervisor waits for the last one's migrations;
   * a change meanwhile is planned right after. Without it, every change is planned at once.
   */
  /**
   * Whether a node that is no longer a member may still hand its shards over (it left
   * gracefully): its moves then name it as `from` instead of null.
   */
  readonly mayHandOver?: (nodeId: string) => boolean;
  readonly supervisor?: Pick<RebalanceSupervisor, 'ready' | 'status' | 'change' | 'planned' | 'planFailed' | 'tick' | 'stop'>;
}

export class ShardCoordinator {
  private readonly caps: RebalanceOptions;
  private readonly planIntervalMs: number;
  private readonly offs: (() => void)[] = [];
  private ticker: ReturnType<typeof setInterval> | undefined;
  private started = false;
  private closed = false;
  private wasLeader = false;
  private planning = false;
  private again = false;
  /** A membership or leadership change arrived since the last plan (not just a tick). */
  private changed = false;
  /** Revision of the mismatching map last reported, so each one is reported once. */
  private reportedMismatch: number | undefined;

  constructor(private readonly options: ShardCoordinatorOptions) {
    const { shardCount, maxMoves, maxMovesRatio } = options;
    if (!Number.isSafeInteger(shardCount) || shardCount < 1) {
      throw new PlacementArgumentError('shardCount', shardCount, 'must be a positive integer');
    }
    this.caps = { maxMoves, maxMovesRatio };
    // Bad caps fail here, once, rather than at every plan.
    rebalanceShards([null], [options.nodeId], this.caps);
    this.planIntervalMs = options.planIntervalMs ?? 1_000;
  }

  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    const { membership, lease } = this.options;
    this.offs.push(membership.subscribe(() => this.request()));
    this.offs.push(
      lease.subscribe(({ isLeader }) => {
        const became = isLeader && !this.wasLeader;
        if (!isLeader && this.wasLeader) this.options.supervisor?.stop();
        this.wasLeader = isLeader;
        if (became) this.request();
      }),
    );
    this.ticker = setInterval(() => {
      if (this.options.lease.isLeader) this.options.supervisor?.tick();
      this.request(false);
    }, this.planIntervalMs);
    this.ticker.unref();
    this.wasLeader = lease.isLeader;
    this.request();
  }

  /** Stops planning; a plan in flight finishes its write but triggers nothing more. */
  close(): void {
    this.closed = true;
    this.options.supervisor?.stop();
    clearInterval(this.ticker);
    this.ticker = undefined;
    for (const off of this.offs.splice(0)) off();
  }

  /** Plans now, or right after the plan in flight. `change`: a real change, not a periodic tick. */
  request(change = true): void {
    if (this.closed || !this.options.lease.isLeader) return;
    if (change) this.changed = true;
    if (this.planning) {
      this.again = true;
      return;
    }
    this.planning = true;
    void this.run();
  }

  private async run(): Promise<void> {
    try {
      do {
        this.again = false;
        try {
          await this.plan();
        } catch (error) {
          this.report(error);
        }
      } while (this.again && !this.closed && this.options.lease.isLeader);
    } finally {
      this.planning = false;
      this.again = false;
    }
  }

  private async plan(): Promise<void> {
    const { membership, lease, shardMap, nodeId, shardCount, onPlan, supervisor } = this.options;
    if (!lease.isLeader) return;
    const changed = this.changed;
    this.changed = false;
    // While the supervisor waits for a round's migrations, only shards without a live
    // owner are planned (they cannot wait); the rest is planned once the round is over.
    let paced = false;
    if (supervisor) {
      await supervisor.ready();
      if (!lease.isLeader || this.closed) return;
      const status = supervisor.status;
      if (status === 'Migrating' || status === 'Committing') {
        // The supervisor calls back when the round is over.
        if (changed) supervisor.change();
        paced = true;
      }
    }
    const current = shardMap.current;
    if (current && current.shardCount !== shardCount) {
      if (this.reportedMismatch !== current.revision) {
        this.reportedMismatch = current.revision;
        this.report(new ShardCountMismatchError(shardCount, current.shardCount, current.epoch));
      }
      return;
    }
    const nodes = membership.liveNodeIds();
    if (nodes.length === 0) return;
    const planned = rebalanceShards(current?.owners ?? new Array<null>(shardCount).fill(null), nodes, this.caps);
    let { owners } = planned;
    const { mayHandOver } = this.options;
    let moves = mayHandOver
      ? planned.moves.map((move) => {
          const previous = current?.owners[move.shard];
          return move.from === null && previous && mayHandOver(previous) ? { ...move, from: previous } : move;
        })
      : planned.moves;
    if (paced) {
      moves = moves.filter((move) => move.from === null);
      if (!current || moves.length === 0) return;
      const next = [...current.owners];
      for (const move of moves) next[move.shard] = move.to;
      if (next.some((owner) => owner === null)) return;
      owners = next as string[];
    }
    if (current && moves.length === 0) {
      // A change the supervisor kept for later turned out to need nothing.
      if (supervisor?.status === 'Planning') supervisor.planned(current.epoch, []);
      return;
    }
    const epoch = (current?.epoch ?? 0) + 1;
    try {
      await shardMap.publish({ epoch, shardCount, owners, leader: nodeId }, current?.revision);
    } catch (error) {
      if (!paced && (supervisor?.status === 'Planning' || supervisor?.status === 'Idle')) supervisor.planFailed(error instanceof Error ? error.message : String(error));
      if (!(error instanceof RevisionConflictError)) throw error;
      // Someone published first, or this view was stale: plan again on top of the stored map.
      const seen = await shardMap.refresh();
      if (mapChanged(current, seen)) this.again = true;
      else throw error;
      return;
    }
    // Orphans given owners during a round are not a round of their own: nothing to migrate.
    if (!paced) supervisor?.planned(epoch, moves);
    try {
      onPlan?.({ epoch, moves, owners });
    } catch (error) {
      this.report(error);
    }
  }

  private report(error: unknown): void {
    const reported = error instanceof Error ? error : new Error(`non-Error value thrown: ${String(error)}`, { cause: error });
    if (this.options.onError) this.options.onError(reported);
    else process.emitWarning(`natstate shard coordinator of ${this.options.nodeId}: ${reported.message}`);
  }
}

function mapChanged(before: ShardMap | undefined, after: ShardMap | undefined): boolean {
  return before?.revision !== after?.revision;
}
