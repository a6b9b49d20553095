import { MemoryEventStore } from './eventstore/memory.js';
import { LocalEventHub } from './eventbus/local.js';
import { MemoryKVBucket } from './cluster/kv/memory.js';
import { MemoryTransportHub } from './cluster/transport/memory.js';
import { validateNamespace } from './subjects.js';

/**
 * The embedded "infrastructure" shared by nodes in one process: per namespace an event
 * store, a cluster KV bucket and a transport hub, plus one event hub. Nodes created with
 * the same network form one cluster, as nodes on NATS do, with no server.
 */
export class MemoryNetwork {
  readonly hub = new LocalEventHub();
  private readonly namespaces = new Map<string, { store: MemoryEventStore; kv: MemoryKVBucket; transport: MemoryTransportHub }>();

  private of(namespace: string) {
    validateNamespace(namespace);
    let ns = this.namespaces.get(namespace);
    if (!ns) this.namespaces.set(namespace, (ns = { store: new MemoryEventStore(), kv: new MemoryKVBucket(), transport: new MemoryTransportHub() }));
    return ns;
  }

  /** The shared store of `namespace` (namespaces never see each other's streams). */
  store(namespace: string): MemoryEventStore {
    return this.of(namespace).store;
  }

  /** The shared cluster bucket of `namespace` (members, leader lease, shard map). */
  kvBucket(namespace: string): MemoryKVBucket {
    return this.of(namespace).kv;
  }

  /** The request/reply hub the nodes of `namespace` route commands over. */
  transportHub(namespace: string): MemoryTransportHub {
    return this.of(namespace).transport;
  }
}
