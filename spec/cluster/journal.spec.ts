import { expect } from 'chai';
import sinon from 'sinon';
import { ConcurrencyError } from '../../lib/errors.js';
import { MemoryEventStore } from '../../lib/eventstore/memory.js';
import { Journal } from '../../lib/cluster/journal.js';

type Entry = { type: 'E'; n: number };
const STREAM = { type: '$natstate.test', id: 'journal' };

describe('Journal', () => {
  it('group-commits records queued while an append is in flight, in order', async () => {
    const store = new MemoryEventStore();
    const append = sinon.spy(store, 'append');
    const journal = new Journal<Entry>({ store, stream: STREAM, onError: (e) => expect.fail(e.message) });
    for (let n = 1; n <= 100; n++) journal.record({ type: 'E', n });
    await journal.flush();
    // The first record goes alone; the 99 queued behind it go in the next append.
    expect(append.callCount).to.equal(2);
    const { events } = await new Journal<Entry>({ store, stream: STREAM, onError: () => {} }).open();
    expect(events.map((e) => e.n)).to.deep.equal(Array.from({ length: 100 }, (_, i) => i + 1));
  });

  it('with coalesce, waits for the rest of the turn: records from several callbacks of one turn share one commit', async () => {
    const store = new MemoryEventStore();
    const append = sinon.spy(store, 'append');
    const journal = new Journal<Entry>({ store, stream: STREAM, coalesce: true, onError: (e) => expect.fail(e.message) });
    // Like migrations that each record a step from their own setImmediate callback.
    await Promise.all(Array.from({ length: 10 }, (_, i) => new Promise<void>((resolve) => setImmediate(() => (journal.record({ type: 'E', n: i + 1 }), resolve())))));
    await journal.flush();
    expect(append.callCount).to.equal(1);
    const { events } = await new Journal<Entry>({ store, stream: STREAM, onError: () => {} }).open();
    expect(events.map((e) => e.n)).to.deep.equal(Array.from({ length: 10 }, (_, i) => i + 1));
  });

  it('opens from its newest checkpoint and continues appending after what it read', async () => {
    const store = new MemoryEventStore();
    const first = new Journal<Entry, { sum: number }>({ store, stream: STREAM, onError: (e) => expect.fail(e.message) });
    await first.open();
    [1, 2, 3].forEach((n) => first.record({ type: 'E', n }));
    expect(await first.checkpoint(() => ({ sum: 6 }))).to.equal(true);
    first.record({ type: 'E', n: 4 });
    await first.flush();

    const second = new Journal<Entry, { sum: number }>({ store, stream: STREAM, onError: (e) => expect.fail(e.message) });
    const { checkpoint, events } = await second.open();
    expect(checkpoint).to.deep.equal({ sum: 6 });
    expect(events.map((e) => e.n)).to.deep.equal([4]);
    second.record({ type: 'E', n: 5 });
    await second.flush();
    expect(await store.version(STREAM)).to.equal(5);
  });

  it('checkpoints only once every record so far is stored, with the version that covers them', async () => {
    const store = new MemoryEventStore();
    const journal = new Journal<Entry, { seen: number }>({ store, stream: STREAM, onError: (e) => expect.fail(e.message) });
    const save = sinon.spy(store, 'saveSnapshot');
    journal.record({ type: 'E', n: 1 });
    let versionWhenSummed = -1;
    const taken = journal.checkpoint(() => ({ seen: 2 }));
    // Recorded while the checkpoint waits for the first write: it must be covered too.
    journal.record({ type: 'E', n: 2 });
    void store.version(STREAM).then((v) => (versionWhenSummed = v));
    expect(await taken).to.equal(true);
    expect(save.callCount).to.equal(1);
    expect(save.firstCall.args[1].version).to.equal(2);
    expect(versionWhenSummed).to.be.lessThan(2);
    const { checkpoint, events } = await new Journal<Entry, { seen: number }>({ store, stream: STREAM, onError: () => {} }).open();
    expect(checkpoint).to.deep.equal({ seen: 2 });
    expect(events).to.deep.equal([]);
  });

  it('reports a second writer’s conflict instead of interleaving its records', async () => {
    const store = new MemoryEventStore();
    const errors: Error[] = [];
    const a = new Journal<Entry>({ store, stream: STREAM, onError: (e) => errors.push(e) });
    const b = new Journal<Entry>({ store, stream: STREAM, onError: (e) => errors.push(e) });
    await a.open();
    await b.open();
    a.record({ type: 'E', n: 1 });
    await a.flush();
    b.record({ type: 'E', n: 99 });
    await b.flush();
    expect(errors).to.have.length(1);
    expect(errors[0]).to.be.instanceOf(ConcurrencyError);
    const { events } = await new Journal<Entry>({ store, stream: STREAM, onError: () => {} }).open();
    expect(events.map((e) => e.n)).to.deep.equal([1]);
  });
});
