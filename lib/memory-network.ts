import { MemoryEventStore } from './eventstore/memory.js';
import { LocalEventHub } from './eventbus/local.js';
import { validateNamespace } from './subjects.js';

/**
 * The embedded "infrastructure" shared by nodes in one process: one event store per
 * namespace and one event hub. Nodes created with the same network behave like nodes
 * of one cluster on NATS, with no server.
 */
export class MemoryNetwork {
  readonly hub = new LocalEventHub();
  private readonly stores = new Map<string, MemoryEventStore>();

  /** The shared store of `namespace` (namespaces never see each other's streams). */
  store(namespace: string): MemoryEventStore {
    validateNamespace(namespace);
    let store = this.stores.get(namespace);
    if (!store) this.stores.set(namespace, (store = new MemoryEventStore()));
    return store;
  }
}
