/**
 * One actor's live migration, as its source node sees it:
 *
 * `Pending → Paused → Capturing → Transferring → Acked → Deleted`, any step `→ Failed`.
 *
 * The machine only records decisions. The runtime (`lib/cluster/migration.ts`) does the
 * I/O (pausing, capturing, sending the `MigrationRequest`, deleting the local copy) and
 * reports each outcome as an event. No clocks, promises or delays live here, so the
 * event log of a migration can be persisted and replayed to the same state.
 */
import { assign, setup, type SnapshotFrom } from 'xstate';

export interface MigrationInput {
  readonly actorType: string;
  readonly actorId: string;
  readonly from: string;
  readonly to: string;
  readonly planId: string;
  readonly epoch: number;
  /** Transfer attempts before the migration fails. Default 3; at least 1. */
  readonly maxAttempts?: number;
}

export interface MigrationContext extends Omit<MigrationInput, 'maxAttempts'> {
  readonly maxAttempts: number;
  /** Transfer attempts made so far (the first one starts with `CAPTURED`). */
  readonly attempts: number;
  /** The actor's version when it was captured. */
  readonly version?: number;
  /** Why the last transfer attempt or the migration failed. */
  readonly error?: string;
}

export type MigrationEvent =
  /** The source stopped taking commands for the actor. */
  | { readonly type: 'PAUSE' }
  /** The command in flight finished. */
  | { readonly type: 'DRAINED' }
  /** Snapshot and version captured; the first transfer attempt starts. */
  | { readonly type: 'CAPTURED'; readonly version: number }
  /** The destination installed the actor. */
  | { readonly type: 'ACK' }
  /** The destination refused the transfer. */
  | { readonly type: 'NACK'; readonly reason: string; readonly retryable: boolean }
  /** The destination did not answer in time (retryable). */
  | { readonly type: 'TIMEOUT' }
  /** The source dropped its copy. */
  | { readonly type: 'DELETED' }
  | { readonly type: 'FAIL'; readonly reason: string };

export type MigrationStatus = 'Pending' | 'Paused' | 'Capturing' | 'Transferring' | 'Acked' | 'Deleted' | 'Failed';

const DEFAULT_MAX_ATTEMPTS = 3;

/** A whole count of at least 1; anything not a finite number (NaN too) means the default. */
function atLeastOne(value: number | undefined, fallback: number): number {
  return value !== undefined && Number.isFinite(value) ? Math.max(1, Math.floor(value)) : fallback;
}

/** The status a migration starts in. */
export const initialMigrationStatus = 'Pending' satisfies MigrationStatus;

/**
 * The only context fields the machine's guards and actions read. The rest is recorded
 * (who moves where, the captured version, the last error) and never decides a step, which
 * lets the runtime remember steps (see `StepCache`); a spec checks that it agrees with XState.
 */
export const migrationDecisionKeys = ['attempts', 'maxAttempts'] as const satisfies readonly (keyof MigrationContext)[];

/**
 * Event fields the machine only copies into its context and never decides on (NACK's
 * `retryable` decides a retry, so NACK is not listed). Also for `StepCache`.
 */
export const migrationRecordedEventFields = { CAPTURED: ['version'], FAIL: ['reason'] } as const satisfies Partial<Record<MigrationEvent['type'], readonly string[]>>;

/** A new migration's context. */
export function migrationContext(input: MigrationInput): MigrationContext {
  return {
    actorType: input.actorType,
    actorId: input.actorId,
    from: input.from,
    to: input.to,
    planId: input.planId,
    epoch: input.epoch,
    // CAPTURED always makes the first attempt, so fewer than one cannot be honoured.
    maxAttempts: atLeastOne(input.maxAttempts, DEFAULT_MAX_ATTEMPTS),
    attempts: 0,
  };
}

export const migrationMachine = setup({
  types: {
    input: {} as MigrationInput,
    context: {} as MigrationContext,
    events: {} as MigrationEvent,
  },
  guards: {
    mayRetry: ({ context }, params: { retryable: boolean }) => params.retryable && context.attempts < context.maxAttempts,
  },
  actions: {
    recordCapture: assign((_, params: { version: number }) => ({ version: params.version, attempts: 1 })),
    countAttempt: assign(({ context }) => ({ attempts: context.attempts + 1 })),
    recordError: assign((_, params: { reason: string }) => ({ error: params.reason })),
  },
}).createMachine({
  id: 'migration',
  context: ({ input }) => migrationContext(input),
  initial: initialMigrationStatus,
  states: {
    Pending: {
      on: {
        PAUSE: 'Paused',
        FAIL: { target: 'Failed', actions: { type: 'recordError', params: ({ event }) => ({ reason: event.reason }) } },
      },
    },
    Paused: {
      on: {
        DRAINED: 'Capturing',
        FAIL: { target: 'Failed', actions: { type: 'recordError', params: ({ event }) => ({ reason: event.reason }) } },
      },
    },
    Capturing: {
      on: {
        CAPTURED: {
          target: 'Transferring',
          actions: { type: 'recordCapture', params: ({ event }) => ({ version: event.version }) },
        },
        FAIL: { target: 'Failed', actions: { type: 'recordError', params: ({ event }) => ({ reason: event.reason }) } },
      },
    },
    Transferring: {
      on: {
        ACK: 'Acked',
        // A retry re-enters Transferring, so every attempt shows up as its own entry.
        NACK: [
          {
            guard: { type: 'mayRetry', params: ({ event }) => ({ retryable: event.retryable }) },
            target: 'Transferring',
            reenter: true,
            actions: ['countAttempt', { type: 'recordError', params: ({ event }) => ({ reason: event.reason }) }],
          },
          { target: 'Failed', actions: { type: 'recordError', params: ({ event }) => ({ reason: event.reason }) } },
        ],
        TIMEOUT: [
          {
            guard: { type: 'mayRetry', params: { retryable: true } },
            target: 'Transferring',
            reenter: true,
            actions: ['countAttempt', { type: 'recordError', params: { reason: 'timeout' } }],
          },
          { target: 'Failed', actions: { type: 'recordError', params: { reason: 'timeout' } } },
        ],
        FAIL: { target: 'Failed', actions: { type: 'recordError', params: ({ event }) => ({ reason: event.reason }) } },
      },
    },
    Acked: {
      on: {
        DELETED: 'Deleted',
        FAIL: { target: 'Failed', actions: { type: 'recordError', params: ({ event }) => ({ reason: event.reason }) } },
      },
    },
    Deleted: { type: 'final' },
    Failed: { type: 'final' },
  },
});

export type MigrationSnapshot = SnapshotFrom<typeof migrationMachine>;

/** What the runtime keeps of a migration: its status and context (an XState snapshot is one). */
export type MigrationState = Pick<MigrationSnapshot, 'value' | 'context'>;

export function migrationStatus(snapshot: Pick<MigrationSnapshot, 'value'>): MigrationStatus {
  return snapshot.value;
}

export function isFinalMigration(status: MigrationStatus): boolean {
  return status === 'Deleted' || status === 'Failed';
}

/**
 * Wait before transfer attempt `attempts + 1`: `baseMs` after the first attempt,
 * doubling per attempt, capped at `maxMs`. No jitter, so the decision replays exactly;
 * the runtime may add its own.
 */
export function backoffMs(attempts: number, baseMs = 50, maxMs = 2000): number {
  if (!(attempts > 1)) return Math.min(baseMs, maxMs);
  // The exponent cap keeps the product finite; the result is capped anyway.
  return Math.min(maxMs, baseMs * 2 ** Math.min(attempts - 1, 30));
}
