/**
 * The leader's rebalance supervisor: one plan at a time.
 *
 * `Idle → Planning → Migrating → Committing → Idle`.
 *
 * The machine only records decisions. The runtime plans (the pure `rebalanceShards`),
 * runs the shard migrations, commits the new shard-map epoch and reports each outcome
 * as an event. No clocks, promises or delays live here, so the supervisor's event log
 * can be persisted and replayed to the same state. A membership change that arrives
 * while a plan runs never starts a second one: it is remembered (`pending`) and
 * planned as soon as the current plan is over.
 */
import { assign, setup, type SnapshotFrom } from 'xstate';

export interface RebalanceMove {
  readonly shard: number;
  /** The live node giving the shard up, or null when it had no live owner. */
  readonly from: string | null;
  readonly to: string;
}

export interface RebalanceInput {
  readonly leader: string;
  /** Shard migrations running at once. Default 64; at least 1. */
  readonly maxConcurrent?: number;
}

export interface RebalanceContext {
  readonly leader: string;
  readonly maxConcurrent: number;
  /** A change arrived that the current (or last) plan does not account for. */
  readonly pending: boolean;
  /** The plan being run, or the last one run (cleared when planning starts). */
  readonly planId?: string;
  readonly epoch?: number;
  readonly moves: readonly RebalanceMove[];
  /** Shards of the plan not settled yet, ascending. */
  readonly remaining: readonly number[];
  /** Shards whose migration succeeded, ascending. */
  readonly done: readonly number[];
  /** Shards whose migration failed, ascending. */
  readonly failed: readonly number[];
  /** The last shard-map epoch committed. */
  readonly lastEpoch?: number;
  /** Why the last round did not complete; cleared when the next plan arrives. */
  readonly error?: string;
}

export type RebalanceEvent =
  /** Membership changed, or a planning tick. */
  | { readonly type: 'CHANGE' }
  | { readonly type: 'PLANNED'; readonly planId: string; readonly epoch: number; readonly moves: readonly RebalanceMove[] }
  | { readonly type: 'PLAN_FAILED'; readonly reason: string }
  /** One shard's migrations are over; `ok` false when any of them failed. */
  | { readonly type: 'SHARD_DONE'; readonly shard: number; readonly ok: boolean }
  /** Stop starting migrations and commit what is done. */
  | { readonly type: 'ABORT'; readonly reason: string }
  | { readonly type: 'COMMITTED'; readonly epoch: number }
  | { readonly type: 'COMMIT_FAILED'; readonly reason: string };

export type RebalanceStatus = 'Idle' | 'Planning' | 'Migrating' | 'Committing';

const DEFAULT_MAX_CONCURRENT = 64;

const ascending = (a: number, b: number) => a - b;

export const rebalanceMachine = setup({
  types: {
    input: {} as RebalanceInput,
    context: {} as RebalanceContext,
    events: {} as RebalanceEvent,
  },
  guards: {
    pending: ({ context }) => context.pending,
    emptyPlan: (_, params: { moves: readonly RebalanceMove[] }) => params.moves.length === 0,
    isRemaining: ({ context }, params: { shard: number }) => context.remaining.includes(params.shard),
    allSettled: ({ context }) => context.remaining.length === 0,
  },
  actions: {
    markPending: assign({ pending: true }),
    startPlanning: assign({
      pending: false,
      planId: undefined,
      epoch: undefined,
      moves: [],
      remaining: [],
      done: [],
      failed: [],
    }),
    acceptPlan: assign((_, params: { planId: string; epoch: number; moves: readonly RebalanceMove[] }) => ({
      planId: params.planId,
      epoch: params.epoch,
      moves: params.moves,
      remaining: [...new Set(params.moves.map((move) => move.shard))].sort(ascending),
      done: [],
      failed: [],
      error: undefined,
    })),
    settleShard: assign(({ context }, params: { shard: number; ok: boolean }) => {
      const remaining = context.remaining.filter((shard) => shard !== params.shard);
      return params.ok
        ? { remaining, done: [...context.done, params.shard].sort(ascending) }
        : { remaining, failed: [...context.failed, params.shard].sort(ascending) };
    }),
    // Unsettled shards are simply not part of this commit; the next plan sees them again.
    dropRemaining: assign({ remaining: [] }),
    recordCommit: assign((_, params: { epoch: number }) => ({ lastEpoch: params.epoch })),
    recordError: assign((_, params: { reason: string }) => ({ error: params.reason })),
  },
}).createMachine({
  id: 'rebalance',
  context: ({ input }) => ({
    leader: input.leader,
    // Zero would never start a migration and never settle the plan.
    maxConcurrent:
      input.maxConcurrent !== undefined && Number.isFinite(input.maxConcurrent) ? Math.max(1, Math.floor(input.maxConcurrent)) : DEFAULT_MAX_CONCURRENT,
    pending: false,
    moves: [],
    remaining: [],
    done: [],
    failed: [],
  }),
  initial: 'Idle',
  states: {
    Idle: {
      // A change that arrived during the last round is planned at once.
      always: { guard: 'pending', target: 'Planning' },
      on: { CHANGE: 'Planning' },
    },
    Planning: {
      entry: 'startPlanning',
      on: {
        CHANGE: { actions: 'markPending' },
        PLANNED: [
          {
            guard: { type: 'emptyPlan', params: ({ event }) => ({ moves: event.moves }) },
            target: 'Idle',
            actions: assign({ error: undefined }),
          },
          {
            target: 'Migrating',
            actions: {
              type: 'acceptPlan',
              params: ({ event }) => ({ planId: event.planId, epoch: event.epoch, moves: event.moves }),
            },
          },
        ],
        PLAN_FAILED: { target: 'Idle', actions: { type: 'recordError', params: ({ event }) => ({ reason: event.reason }) } },
      },
    },
    Migrating: {
      always: { guard: 'allSettled', target: 'Committing' },
      on: {
        CHANGE: { actions: 'markPending' },
        SHARD_DONE: {
          // A shard outside the plan, or settled already, changes nothing.
          guard: { type: 'isRemaining', params: ({ event }) => ({ shard: event.shard }) },
          actions: { type: 'settleShard', params: ({ event }) => ({ shard: event.shard, ok: event.ok }) },
        },
        ABORT: {
          target: 'Committing',
          actions: ['dropRemaining', { type: 'recordError', params: ({ event }) => ({ reason: event.reason }) }],
        },
      },
    },
    Committing: {
      on: {
        CHANGE: { actions: 'markPending' },
        COMMITTED: { target: 'Idle', actions: { type: 'recordCommit', params: ({ event }) => ({ epoch: event.epoch }) } },
        // The map did not change, so the moves still have to happen: plan again.
        COMMIT_FAILED: {
          target: 'Idle',
          actions: ['markPending', { type: 'recordError', params: ({ event }) => ({ reason: event.reason }) }],
        },
      },
    },
  },
});

export type RebalanceSnapshot = SnapshotFrom<typeof rebalanceMachine>;

export function rebalanceStatus(snapshot: Pick<RebalanceSnapshot, 'value'>): RebalanceStatus {
  return snapshot.value;
}

/**
 * The shards to start now: remaining ones not in flight, as many as the free slots
 * (`maxConcurrent` minus those in flight) allow, in ascending order.
 */
export function nextBatch(
  context: Pick<RebalanceContext, 'remaining' | 'maxConcurrent'>,
  inFlight: readonly number[],
): number[] {
  const running = new Set(inFlight);
  const free = context.maxConcurrent - running.size;
  if (free <= 0) return [];
  return context.remaining.filter((shard) => !running.has(shard)).slice(0, free);
}
