import { ClosedError } from '../errors.js';
import { validateNamespace } from '../subjects.js';
import type { EventBus, EventStored, EventStoredFilter, EventStoredHandler, Unsubscribe } from './eventbus.js';

export interface LocalEventBusOptions {
  /** Receives what a subscriber threw (or rejected with); without it the error is dropped. */
  readonly onError?: (error: Error) => void;
}

interface Subscription {
  readonly handler: EventStoredHandler;
  readonly filter?: EventStoredFilter;
  readonly onError?: (error: Error) => void;
}

/** One namespace's subscriptions: those narrowed to a shard are kept by shard, so a commit only meets its own shard's. */
interface Subscribers {
  readonly any: Set<Subscription>;
  readonly byShard: Map<number, Set<Subscription>>;
  /** Subscription order, for delivering in it across the two. */
  readonly order: Map<Subscription, number>;
  next: number;
}

const matches = ({ filter }: Subscription, notification: EventStored) =>
  (filter?.type === undefined || filter.type === notification.type) && (filter?.id === undefined || filter.id === notification.id);

function report(onError: ((error: Error) => void) | undefined, error: unknown): void {
  try {
    onError?.(error instanceof Error ? error : new Error(`non-Error value thrown: ${String(error)}`, { cause: error }));
  } catch {
    // An error reporter that fails has nowhere left to report to.
  }
}

/** Runs one handler so that nothing it throws or rejects with escapes the bus. */
function run({ handler, onError }: Subscription, notification: EventStored): void {
  try {
    const result: unknown = handler(notification);
    if (result instanceof Promise) result.catch((error: unknown) => report(onError, error));
  } catch (error) {
    report(onError, error);
  }
}

/**
 * In-process broadcast hub shared by every `LocalEventBus` of one embedded network.
 * Buses of different namespaces share it but only see their own namespace.
 */
export class LocalEventHub {
  private readonly subscriptions = new Map<string, Subscribers>();

  subscribe(namespace: string, subscription: Subscription): Unsubscribe {
    let subscribers = this.subscriptions.get(namespace);
    if (!subscribers) {
      subscribers = { any: new Set(), byShard: new Map(), order: new Map(), next: 0 };
      this.subscriptions.set(namespace, subscribers);
    }
    const { any, byShard, order } = subscribers;
    const shard = subscription.filter?.shard;
    let set = any;
    if (shard !== undefined) {
      set = byShard.get(shard) ?? new Set();
      byShard.set(shard, set);
    }
    set.add(subscription);
    order.set(subscription, subscribers.next++);
    return () => {
      set.delete(subscription);
      order.delete(subscription);
      if (shard !== undefined && set.size === 0 && byShard.get(shard) === set) byShard.delete(shard);
    };
  }

  deliver(notification: EventStored): void {
    const subscribers = this.subscriptions.get(notification.namespace);
    if (!subscribers) return;
    let matching: Subscription[] | undefined;
    for (const subscription of subscribers.any) if (matches(subscription, notification)) (matching ??= []).push(subscription);
    const ofShard = notification.shard === undefined ? undefined : subscribers.byShard.get(notification.shard);
    if (ofShard) {
      const before = matching?.length ?? 0;
      for (const subscription of ofShard) if (matches(subscription, notification)) (matching ??= []).push(subscription);
      if (before > 0 && matching!.length > before) matching!.sort((a, b) => subscribers.order.get(a)! - subscribers.order.get(b)!);
    }
    if (!matching) return;
    // Delivered asynchronously like a network bus, so a handler never runs inside the
    // publisher's commit; `run` keeps a throwing handler from reaching anyone else. One
    // task for every subscriber, in subscription order (one per subscriber cost a closure
    // each on every commit).
    const subscriptions = matching;
    const { order } = subscribers;
    queueMicrotask(() => {
      for (const subscription of subscriptions) if (order.has(subscription)) run(subscription, notification);
    });
  }
}

/** `EventBus` over an in-process `LocalEventHub`: the embedded default. */
export class LocalEventBus implements EventBus {
  private readonly unsubscribes = new Set<Unsubscribe>();
  private closed = false;

  constructor(
    readonly namespace: string,
    private readonly hub: LocalEventHub = new LocalEventHub(),
    private readonly options: LocalEventBusOptions = {},
  ) {
    validateNamespace(namespace);
  }

  publish(notification: EventStored): void {
    if (this.closed) throw new ClosedError('LocalEventBus');
    if (notification.namespace !== this.namespace) return;
    this.hub.deliver(notification);
  }

  subscribeToEventStored(handler: EventStoredHandler, filter?: EventStoredFilter): Unsubscribe {
    if (this.closed) throw new ClosedError('LocalEventBus');
    const off = this.hub.subscribe(this.namespace, { handler, filter, onError: this.options.onError });
    const unsubscribe = () => {
      off();
      this.unsubscribes.delete(unsubscribe);
    };
    this.unsubscribes.add(unsubscribe);
    return unsubscribe;
  }

  async flush(): Promise<void> {
    // In-process delivery: subscriptions are live at once; let queued deliveries run.
    await new Promise((resolve) => setImmediate(resolve));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const off of [...this.unsubscribes]) off();
  }
}
