/**
 * The `EventBus` port: broadcasts `EventStored` after each commit so other nodes keep
 * their version caches current and applications can react to stored events.
 */
import type { EventStored } from '../codec/messages.js';

export type { EventStored } from '../codec/messages.js';

export interface EventStoredFilter {
  readonly type?: string;
  readonly id?: string;
  /** Only notifications of actors of this shard (`EventStored.shard`, the shard in the writer's map). */
  readonly shard?: number;
}

export type EventStoredHandler = (notification: EventStored) => void;
export type Unsubscribe = () => void;

export interface EventBus {
  /** Namespace this bus is bound to; it never carries another namespace's events. */
  readonly namespace: string;
  /** Publishes a notification; fire-and-forget (the commit is already durable). */
  publish(notification: EventStored): void;
  subscribeToEventStored(handler: EventStoredHandler, filter?: EventStoredFilter): Unsubscribe;
  /** Resolves once every subscription made so far is live and every publish has left. */
  flush(): Promise<void>;
  close(): Promise<void>;
}
