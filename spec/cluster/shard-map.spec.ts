import { expect } from 'chai';
import sinon from 'sinon';
import { encode } from '../../lib/codec/codec.js';
import { RevisionConflictError } from '../../lib/cluster/kv/kv.js';
import { MemoryKV, MemoryKVBucket } from '../../lib/cluster/kv/memory.js';
import { InvalidShardMapError, ShardMapStore, type ShardMap } from '../../lib/cluster/shard-map.js';
import { DecodeError, TimeoutError } from '../../lib/errors.js';
import { Subjects } from '../../lib/subjects.js';

const subjects = new Subjects('shard-map-spec');
const draft = (epoch: number, owners: (string | null)[] = ['a', 'b', null]) => ({ epoch, shardCount: owners.length, owners, leader: 'a' });

describe('ShardMapStore', () => {
  let bucket: MemoryKVBucket;
  let stores: ShardMapStore[];

  beforeEach(() => {
    bucket = new MemoryKVBucket();
    stores = [];
  });

  afterEach(() => {
    for (const s of stores) s.close();
  });

  async function store(errors: Error[] = [], start = true): Promise<ShardMapStore> {
    const s = new ShardMapStore({ kv: new MemoryKV(bucket), subjects, onError: (e) => errors.push(e) });
    stores.push(s);
    if (start) await s.start();
    return s;
  }

  const flush = () => new Promise((resolve) => setImmediate(resolve));

  it('creates the first map, and every watching store sees it', async () => {
    const writer = await store();
    const reader = await store();
    const seen: ShardMap[] = [];
    reader.subscribe((m) => seen.push(m));
    expect(writer.current).to.equal(undefined);
    const published = await writer.publish(draft(1), undefined);
    expect(published).to.include({ epoch: 1, shardCount: 3, leader: 'a' });
    expect(published.owners).to.deep.equal(['a', 'b', null]);
    expect(writer.current).to.equal(published);
    await flush();
    expect(seen.map((m) => [m.epoch, m.revision])).to.deep.equal([[1, published.revision]]);
    expect(reader.ownerOf(0)).to.equal('a');
    expect(reader.ownerOf(2)).to.equal(undefined);
    expect(Object.isFrozen(reader.current!.owners)).to.equal(true);
    // A store started later reads the stored map before `start` resolves.
    const late = await store();
    expect(late.current?.epoch).to.equal(1);
  });

  it('updates only at the expected revision and rejects a second create', async () => {
    const a = await store();
    const b = await store();
    const first = await a.publish(draft(1), undefined);
    let caught: unknown;
    await b.publish(draft(1, ['b', 'b', 'b']), undefined).catch((e: unknown) => (caught = e));
    expect(caught).to.be.instanceOf(RevisionConflictError);
    const second = await a.publish(draft(2, ['a', 'b', 'b']), first.revision);
    expect(second.epoch).to.equal(2);
    caught = undefined;
    await b.publish(draft(2, ['b', 'b', 'b']), first.revision).catch((e: unknown) => (caught = e));
    expect(caught).to.be.instanceOf(RevisionConflictError);
    expect((caught as RevisionConflictError).expectedRevision).to.equal(first.revision);
    await flush();
    expect(b.current?.owners).to.deep.equal(['a', 'b', 'b']);
  });

  it('never moves back to a lower epoch, from the watch or from refresh', async () => {
    const errors: Error[] = [];
    const s = await store(errors);
    const raw = new MemoryKV(bucket);
    const epochs: number[] = [];
    s.subscribe((m) => epochs.push(m.epoch));
    await raw.put(subjects.shardMapKey, encode({ ...draft(3), time: 1 }));
    await raw.put(subjects.shardMapKey, encode({ ...draft(2), time: 2 }));
    await flush();
    expect(s.current?.epoch).to.equal(3);
    expect(await s.refresh().then((m) => m?.epoch)).to.equal(3);
    await raw.put(subjects.shardMapKey, encode({ ...draft(4), time: 3 }));
    await raw.put(subjects.shardMapKey, encode({ ...draft(1), time: 4 }));
    await flush();
    expect(epochs).to.deep.equal([3, 4]);
    expect(errors).to.deep.equal([]);
  });

  it('refresh reads the map directly, without a watch', async () => {
    const writer = await store();
    const reader = await store([], false);
    expect(await reader.refresh()).to.equal(undefined);
    await writer.publish(draft(1), undefined);
    expect((await reader.refresh())?.epoch).to.equal(1);
    expect(reader.current?.epoch).to.equal(1);
  });

  it('waitFor resolves with the current map or the first later one that fits', async () => {
    const s = await store();
    const first = await s.publish(draft(1), undefined);
    expect(await s.waitFor(() => true, 10)).to.equal(first);
    const waiting = s.waitFor((m) => m.epoch >= 3, 1_000);
    const second = await s.publish(draft(2), first.revision);
    const third = await s.publish(draft(3), second.revision);
    expect(await waiting).to.equal(third);
  });

  it('waitFor rejects with a TimeoutError when no map fits in time', async () => {
    const clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    try {
      const s = await store();
      let caught: unknown;
      const waiting = s.waitFor(() => true, 500).catch((e: unknown) => (caught = e));
      await clock.tickAsync(499);
      expect(caught).to.equal(undefined);
      await clock.tickAsync(1);
      await waiting;
      expect(caught).to.be.instanceOf(TimeoutError);
      expect((caught as TimeoutError).timeoutMs).to.equal(500);
    } finally {
      clock.restore();
    }
  });

  it('ignores and reports an undecodable map, and refuses to publish an invalid one', async () => {
    const errors: Error[] = [];
    const s = await store(errors);
    const raw = new MemoryKV(bucket);
    await raw.put(subjects.shardMapKey, encode({ epoch: 1, shardCount: 3, owners: ['a'], leader: 'a', time: 0 }));
    await flush();
    expect(s.current).to.equal(undefined);
    expect(errors).to.have.length(1);
    expect(errors[0]).to.be.instanceOf(DecodeError);
    let caught: unknown;
    await s.publish({ epoch: 1, shardCount: 2, owners: ['a'], leader: 'a' }, undefined).catch((e: unknown) => (caught = e));
    expect(caught).to.be.instanceOf(InvalidShardMapError);
    caught = undefined;
    await s.publish({ epoch: -1, shardCount: 1, owners: ['a'], leader: 'a' }, undefined).catch((e: unknown) => (caught = e));
    expect(caught).to.be.instanceOf(InvalidShardMapError);
    expect(bucket.get(subjects.shardMapKey)?.revision).to.equal(1);
  });
});
