import { expect } from 'chai';
import { ConcurrencyError } from '../../lib/errors.js';
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

describe('MemoryEventStore commit ids', () => {
  const s = { type: 'account', id: 'a-1' };
  const ev = (type: string) => ({ type });

  it('recognises a retried commit among the last 64 commits of its stream, and not an older one', async () => {
    const store = new MemoryEventStore();
    for (let i = 0; i < 65; i++) await store.append(s, [ev('E')], { expectedVersion: i, commitId: `c-${i}` });
    // c-1 is the 64th commit back: still in the window. c-0 is the 65th: gone.
    expect(await store.append(s, [ev('E')], { expectedVersion: 1, commitId: 'c-1' })).to.deep.equal({ version: 2, sequence: 2, duplicate: true });
    expect(await store.append(s, [ev('E')], { expectedVersion: 64, commitId: 'c-64' })).to.deep.equal({ version: 65, sequence: 65, duplicate: true });
    const error = await store.append(s, [ev('E')], { expectedVersion: 0, commitId: 'c-0' }).catch((e: unknown) => e);
    expect(error).to.be.instanceOf(ConcurrencyError);
    expect(await store.version(s)).to.equal(65);
  });

  it('answers a retry of a multi-event commit with the version after its last event, storing nothing', async () => {
    const store = new MemoryEventStore();
    await store.append(s, [ev('A'), ev('B'), ev('C')], { expectedVersion: 0, commitId: 'batch' });
    await store.append(s, [ev('D')], { expectedVersion: 3, commitId: 'next' });
    expect(await store.append(s, [ev('A'), ev('B'), ev('C')], { expectedVersion: 0, commitId: 'batch' })).to.deep.equal({ version: 3, sequence: 1, duplicate: true });
    const events: string[] = [];
    for await (const e of store.read(s)) events.push(e.event.type);
    expect(events).to.deep.equal(['A', 'B', 'C', 'D']);
  });
});
