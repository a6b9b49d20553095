import { ClosedError } from '../errors.js';
import { validateNamespace } from '../subjects.js';
import type { EventBus, EventStored, EventStoredFilter, EventStoredHandler, Unsubscribe } from './eventbus.js';

interface Subscription {
  readonly handler: EventStoredHandler;
  readonly filter?: EventStoredFilter;
}

/**
 * In-process broadcast hub shared by every `LocalEventBus` of one embedded network.
 * Buses of different namespaces share it but only see their own namespace.
 */
export class LocalEventHub {
  private readonly subscriptions = new Map<string, Set<Subscription>>();

  subscribe(namespace: string, subscription: Subscription): Unsubscribe {
    let set = this.subscriptions.get(namespace);
    if (!set) {
      set = new Set();
      this.subscriptions.set(namespace, set);
    }
    set.add(subscription);
    return () => set.delete(subscription);
  }

  deliver(notification: EventStored): void {
    const set = this.subscriptions.get(notification.namespace);
    if (!set) return;
    for (const { handler, filter } of set) {
      if (filter?.type !== undefined && filter.type !== notification.type) continue;
      if (filter?.id !== undefined && filter.id !== notification.id) continue;
      // Delivered asynchronously like a network bus, so a handler never runs inside
      // the publisher's commit and one throwing handler cannot break the others.
      queueMicrotask(() => handler(notification));
    }
  }
}

/** `EventBus` over an in-process `LocalEventHub`: the embedded default. */
export class LocalEventBus implements EventBus {
  private readonly unsubscribes = new Set<Unsubscribe>();
  private closed = false;

  constructor(
    readonly namespace: string,
    private readonly hub: LocalEventHub = new LocalEventHub(),
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
    const off = this.hub.subscribe(this.namespace, { handler, filter });
    const unsubscribe = () => {
      off();
      this.unsubscribes.delete(unsubscribe);
    };
    this.unsubscribes.add(unsubscribe);
    return unsubscribe;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const off of [...this.unsubscribes]) off();
  }
}
