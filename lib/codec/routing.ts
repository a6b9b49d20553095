/**
 * Messages between nodes when a command is routed to the actor's owner. Every reply,
 * including a failure, is encoded into the reply bytes, so the sender always gets a typed
 * answer (or a transport error) and never an ambiguous silence.
 */
import type { AnyEventObject } from 'xstate';
import { isEventObject, isNonNegativeInteger, isRecord } from './codec.js';

export interface RouteRequest {
  readonly type: string;
  readonly id: string;
  /** Absent for a state query. */
  readonly event?: AnyEventObject;
  readonly commandId: string;
  /** Shard-map epoch the sender routed with. */
  readonly epoch: number;
  /** The sender wants the actor's state in the reply (`ask`, `state`). */
  readonly wantState: boolean;
}

export interface RoutedState {
  readonly value: unknown;
  readonly context: unknown;
  readonly status: 'active' | 'done' | 'error' | 'stopped';
}

export type RouteReply =
  | {
      readonly kind: 'ok';
      readonly accepted: boolean;
      readonly version: number;
      readonly commandId: string;
      readonly duplicate: boolean;
      readonly state?: RoutedState;
    }
  /** The receiver does not own the actor's shard in its map at `epoch`. */
  | { readonly kind: 'not-owner'; readonly epoch: number; readonly owner: string | null }
  /** The command failed on the owner; `code` is a `NatstateError` code. */
  | { readonly kind: 'error'; readonly code: string; readonly name: string; readonly message: string; readonly details?: Record<string, unknown> };

export function isRouteRequest(value: unknown): value is RouteRequest {
  return (
    isRecord(value) &&
    typeof value.type === 'string' &&
    typeof value.id === 'string' &&
    (value.event === undefined || isEventObject(value.event)) &&
    typeof value.commandId === 'string' &&
    value.commandId.length > 0 &&
    isNonNegativeInteger(value.epoch) &&
    typeof value.wantState === 'boolean'
  );
}

const STATUSES = new Set(['active', 'done', 'error', 'stopped']);

export function isRouteReply(value: unknown): value is RouteReply {
  if (!isRecord(value)) return false;
  switch (value.kind) {
    case 'ok':
      return (
        typeof value.accepted === 'boolean' &&
        isNonNegativeInteger(value.version) &&
        typeof value.commandId === 'string' &&
        typeof value.duplicate === 'boolean' &&
        (value.state === undefined || (isRecord(value.state) && STATUSES.has(value.state.status as string)))
      );
    case 'not-owner':
      return isNonNegativeInteger(value.epoch) && (value.owner === null || typeof value.owner === 'string');
    case 'error':
      return (
        typeof value.code === 'string' &&
        typeof value.name === 'string' &&
        typeof value.message === 'string' &&
        (value.details === undefined || isRecord(value.details))
      );
    default:
      return false;
  }
}
