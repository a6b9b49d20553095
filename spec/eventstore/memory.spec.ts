import { MemoryEventStore } from '../../lib/eventstore/memory.js';
import { eventStoreContract } from '../contract/eventstore.contract.js';

eventStoreContract('MemoryEventStore', async () => {
  const store = new MemoryEventStore();
  return {
    store,
    // Nodes in one process share one memory store: the other writer is the same instance.
    other: async () => store,
    teardown: () => store.close(),
  };
});
