/**
 * The behaviour every `EventStore` adapter shares, run against each adapter by its own
 * spec. `MemoryEventStore` is the reference: whatever holds for it here must hold for
 * every other store, and whatever a store does beyond this is adapter-specific.
 */
import { expect } from 'chai';
import type { SnapshotRecord } from '../../lib/codec/messages.js';
import { ClosedError, ConcurrencyError, InvalidActorIdError, InvalidNameError } from '../../lib/errors.js';
import type { EventStore, RecordedEvent, StreamId } from '../../lib/eventstore/eventstore.js';
import { streamKey } from '../../lib/subjects.js';

export interface EventStoreFixture {
  /** A fresh, empty store (or an empty namespace of one). */
  readonly store: EventStore;
  /**
   * Another store over the same backend, as another node would have: for JetStream a
   * second connection. Without it the suite uses `store` for both writers.
   */
  other?(): Promise<EventStore>;
  /** Closes what the fixture made. */
  teardown(): Promise<void>;
}

export async function collect(events: AsyncIterable<RecordedEvent>): Promise<RecordedEvent[]> {
  const out: RecordedEvent[] = [];
  for await (const e of events) out.push(e);
  return out;
}

/** Awaits `promise`, which must reject with an instance of `type`; returns the error. */
export async function rejection<E extends Error>(promise: Promise<unknown>, type: new (...args: never[]) => E): Promise<E> {
  try {
    await promise;
  } catch (error) {
    expect(error, String(error)).to.be.instanceOf(type);
    return error as E;
  }
  expect.fail(`expected a ${type.name}, but it resolved`);
}

export function snapshot(version: number, fields: Partial<SnapshotRecord> = {}): SnapshotRecord {
  return {
    version,
    sequence: version,
    fingerprint: 'fp-1',
    state: { value: 'open', context: { balance: version * 10, since: new Date(1_700_000_000_000) } },
    recentCommands: [[`cmd-${version}`, version]],
    time: 1_700_000_000_000 + version,
    ...fields,
  };
}

const account = (id: string): StreamId => ({ type: 'Account', id });
const ev = (type: string, extra: Record<string, unknown> = {}) => ({ type, ...extra });

/** Ids that must all work and never reach each other's stream. */
export const AWKWARD_IDS: readonly string[] = [
  'a',
  'a.b',
  'a_2Eb',
  'a.*',
  'a.>',
  '*',
  '>',
  '.',
  '..',
  ' ',
  'a b',
  'a/b',
  'a\tb',
  'user@example.com',
  'ünïcødé 日本語 🎉',
  'x'.repeat(1024),
  'é'.repeat(512),
  '.'.repeat(1024),
];

export function eventStoreContract(name: string, factory: () => Promise<EventStoreFixture>): void {
  describe(`EventStore contract: ${name}`, () => {
    let fixture: EventStoreFixture;
    let store: EventStore;

    beforeEach(async () => {
      fixture = await factory();
      store = fixture.store;
    });

    afterEach(async () => {
      await fixture.teardown();
    });

    const secondWriter = () => (fixture.other ? fixture.other() : Promise.resolve(store));

    describe('versions', () => {
      it('puts a new stream at version 0', async () => {
        expect(await store.version(account('new'))).to.equal(0);
      });

      it('counts events, not commits', async () => {
        const s = account('count');
        const first = await store.append(s, [ev('OPENED')], { expectedVersion: 0 });
        const second = await store.append(s, [ev('A'), ev('B'), ev('C')], { expectedVersion: 1 });
        expect(first).to.include({ version: 1, duplicate: false });
        expect(second).to.include({ version: 4, duplicate: false });
        expect(second.sequence).to.be.greaterThan(first.sequence);
        expect(await store.version(s)).to.equal(4);
      });

      it('knows without a round trip the version it wrote or read, and never one the store has not reached', async () => {
        const other = await secondWriter();
        const s = account('known');
        expect(store.knownVersion(s) ?? 0).to.equal(0);
        await store.append(s, [ev('A'), ev('B')], { expectedVersion: 0 });
        expect(store.knownVersion(s)).to.equal(2);
        await other.append(s, [ev('C')], { expectedVersion: 2 });
        // Another writer's commit: a store may not have heard of it yet, but never knows more.
        expect(store.knownVersion(s)).to.be.oneOf([2, 3]);
        expect(await store.version(s)).to.equal(3);
        expect(store.knownVersion(s)).to.equal(3);
      });

      it('accepts an empty append at the current version without storing anything', async () => {
        const s = account('empty');
        const stored = await store.append(s, [ev('A'), ev('B')], { expectedVersion: 0 });
        const result = await store.append(s, [], { expectedVersion: 2 });
        expect(result).to.deep.equal({ version: 2, sequence: stored.sequence, duplicate: false });
        await rejection(store.append(s, [], { expectedVersion: 1 }), ConcurrencyError);
        expect((await collect(store.read(s))).length).to.equal(2);
      });
    });

    describe('append and read', () => {
      it('returns the events with their versions, commit sequence, command ids and time', async () => {
        const s = account('round-trip');
        const before = Date.now();
        const one = await store.append(s, [ev('OPENED', { owner: 'ann' })], { expectedVersion: 0, commandIds: ['c1'] });
        const two = await store.append(s, [ev('DEPOSITED', { amount: 5 }), ev('WITHDRAWN', { amount: 2 })], {
          expectedVersion: 1,
          commandIds: ['c2', 'c3'],
        });
        const events = await collect(store.read(s));
        expect(events.map((e) => [e.event, e.version, e.sequence, e.commandId])).to.deep.equal([
          [{ type: 'OPENED', owner: 'ann' }, 1, one.sequence, 'c1'],
          [{ type: 'DEPOSITED', amount: 5 }, 2, two.sequence, 'c2'],
          [{ type: 'WITHDRAWN', amount: 2 }, 3, two.sequence, 'c3'],
        ]);
        for (const e of events) expect(e.time).to.be.within(before, Date.now());
        expect(events[1].time).to.equal(events[2].time);
      });

      it('keeps nested data, Dates and Maps of an event', async () => {
        const s = account('rich');
        const at = new Date(1_700_000_000_123);
        const event = ev('TAGGED', { at, tags: new Map([['k', ['v', 1]]]), nested: { list: [1, { deep: null }] } });
        await store.append(s, [event], { expectedVersion: 0 });
        const [read] = await collect(store.read(s));
        expect(read.event).to.deep.equal(event);
        expect(read.event.at).to.be.instanceOf(Date);
      });

      it('generates a distinct command id for each event when none is given', async () => {
        const s = account('generated');
        await store.append(s, [ev('A'), ev('B')], { expectedVersion: 0 });
        await store.append(s, [ev('C')], { expectedVersion: 2 });
        const ids = (await collect(store.read(s))).map((e) => e.commandId);
        expect(ids).to.have.length(3);
        for (const id of ids) expect(id).to.be.a('string').that.is.not.empty;
        expect(new Set(ids).size).to.equal(3);
      });

      it('reads nothing from a stream without events', async () => {
        expect(await collect(store.read(account('nothing')))).to.deep.equal([]);
        expect(await collect(store.read(account('nothing'), { fromVersion: 3 }))).to.deep.equal([]);
      });

      it('reads from a version, including from the middle of a commit', async () => {
        const s = account('from');
        await store.append(s, [ev('E1'), ev('E2')], { expectedVersion: 0 });
        await store.append(s, [ev('E3'), ev('E4'), ev('E5')], { expectedVersion: 2 });
        await store.append(s, [ev('E6')], { expectedVersion: 5 });
        const types = async (fromVersion: number) => (await collect(store.read(s, { fromVersion }))).map((e) => e.event.type);
        expect(await types(0)).to.deep.equal(['E1', 'E2', 'E3', 'E4', 'E5', 'E6']);
        expect(await types(2)).to.deep.equal(['E3', 'E4', 'E5', 'E6']);
        expect(await types(3)).to.deep.equal(['E4', 'E5', 'E6']);
        expect(await types(4)).to.deep.equal(['E5', 'E6']);
        expect(await types(5)).to.deep.equal(['E6']);
        expect(await types(6)).to.deep.equal([]);
        expect(await types(9)).to.deep.equal([]);
        const fourth = (await collect(store.read(s, { fromVersion: 3 })))[0];
        expect(fourth).to.include({ version: 4 });
      });

      it('gives the same events when told the sequence of the commit holding fromVersion', async () => {
        const s = account('from-sequence');
        await store.append(account('noise'), [ev('N')], { expectedVersion: 0 });
        await store.append(s, [ev('E1'), ev('E2')], { expectedVersion: 0 });
        await store.append(account('noise'), [ev('N')], { expectedVersion: 1 });
        await store.append(s, [ev('E3'), ev('E4'), ev('E5')], { expectedVersion: 2 });
        await store.append(s, [ev('E6')], { expectedVersion: 5 });
        const all = await collect(store.read(s));
        for (const from of all.slice(0, -1)) {
          const expected = all.filter((e) => e.version > from.version);
          const got = await collect(store.read(s, { fromVersion: from.version, fromSequence: from.sequence }));
          expect(got, `from version ${from.version}`).to.deep.equal(expected);
        }
      });

      it('ends a read at the events present when it started', async () => {
        const s = account('bounded');
        await store.append(s, [ev('A'), ev('B')], { expectedVersion: 0 });
        await store.append(s, [ev('C')], { expectedVersion: 2 });
        const iterator = store.read(s)[Symbol.asyncIterator]();
        const first = await iterator.next();
        await store.append(s, [ev('D')], { expectedVersion: 3 });
        const rest: RecordedEvent[] = [];
        for (let r = await iterator.next(); !r.done; r = await iterator.next()) rest.push(r.value);
        expect([first.value.event.type, ...rest.map((e) => e.event.type)]).to.deep.equal(['A', 'B', 'C']);
        expect((await collect(store.read(s))).length).to.equal(4);
      });

      it('stays usable after a read is abandoned half way', async () => {
        const s = account('abandoned');
        await store.append(s, [ev('A'), ev('B'), ev('C')], { expectedVersion: 0 });
        await store.append(s, [ev('D')], { expectedVersion: 3 });
        for await (const e of store.read(s)) if (e.version === 2) break;
        await store.append(s, [ev('E')], { expectedVersion: 4 });
        expect((await collect(store.read(s))).map((e) => e.event.type)).to.deep.equal(['A', 'B', 'C', 'D', 'E']);
      });
    });

    describe('optimistic concurrency', () => {
      it('rejects an append at a stale version with both versions and stores nothing', async () => {
        const s = account('stale');
        await store.append(s, [ev('A'), ev('B')], { expectedVersion: 0 });
        const behind = await rejection(store.append(s, [ev('X')], { expectedVersion: 1 }), ConcurrencyError);
        expect(behind).to.include({ expectedVersion: 1, actualVersion: 2, stream: streamKey(s) });
        const ahead = await rejection(store.append(s, [ev('X')], { expectedVersion: 5 }), ConcurrencyError);
        expect(ahead).to.include({ expectedVersion: 5, actualVersion: 2 });
        const fresh = await rejection(store.append(account('fresh'), [ev('X')], { expectedVersion: 1 }), ConcurrencyError);
        expect(fresh).to.include({ expectedVersion: 1, actualVersion: 0 });
        expect(await store.version(s)).to.equal(2);
        expect(await store.version(account('fresh'))).to.equal(0);
        expect((await collect(store.read(s))).map((e) => e.event.type)).to.deep.equal(['A', 'B']);
      });

      it('lets exactly one of several concurrent appends at the same version win', async () => {
        const s = account('race');
        await store.append(s, [ev('A')], { expectedVersion: 0 });
        const results = await Promise.allSettled(
          [1, 2, 3, 4, 5].map((n) => store.append(s, [ev(`W${n}`), ev(`W${n}b`)], { expectedVersion: 1 })),
        );
        const won = results.filter((r) => r.status === 'fulfilled');
        const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        expect(won).to.have.length(1);
        for (const r of lost) {
          expect(r.reason).to.be.instanceOf(ConcurrencyError);
          expect(r.reason).to.include({ expectedVersion: 1, actualVersion: 3 });
        }
        const events = await collect(store.read(s));
        expect(events.map((e) => e.version)).to.deep.equal([1, 2, 3]);
        expect(events[1].event.type + 'b').to.equal(events[2].event.type);
      });

      it('sees the other writer: a stale append fails, one at the new version succeeds', async () => {
        const other = await secondWriter();
        const s = account('two-writers');
        await store.append(s, [ev('A')], { expectedVersion: 0 });
        expect(await other.version(s)).to.equal(1);
        await other.append(s, [ev('B')], { expectedVersion: 1 });
        const error = await rejection(store.append(s, [ev('X')], { expectedVersion: 1 }), ConcurrencyError);
        expect(error).to.include({ expectedVersion: 1, actualVersion: 2 });
        await store.append(s, [ev('C')], { expectedVersion: 2 });
        await rejection(other.append(s, [ev('X')], { expectedVersion: 2 }), ConcurrencyError);
        await other.append(s, [ev('D')], { expectedVersion: 3 });
        const fromOne = (await collect(store.read(s))).map((e) => e.event.type);
        expect(fromOne).to.deep.equal(['A', 'B', 'C', 'D']);
        expect((await collect(other.read(s))).map((e) => e.event.type)).to.deep.equal(fromOne);
      });

      it('lets exactly one of two writers win a concurrent append at the same version', async () => {
        const other = await secondWriter();
        const s = account('two-racers');
        await store.append(s, [ev('A')], { expectedVersion: 0 });
        await other.append(s, [ev('B')], { expectedVersion: 1 });
        const results = await Promise.allSettled([
          store.append(s, [ev('MINE')], { expectedVersion: 2 }),
          other.append(s, [ev('THEIRS')], { expectedVersion: 2 }),
        ]);
        expect(results.filter((r) => r.status === 'fulfilled')).to.have.length(1);
        const lost = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        expect(lost?.reason).to.be.instanceOf(ConcurrencyError);
        expect(await store.version(s)).to.equal(3);
        expect(await other.version(s)).to.equal(3);
      });
    });

    describe('idempotent commits', () => {
      it('stores a retried commit id once and reports the original result', async () => {
        const s = account('retry');
        const first = await store.append(s, [ev('A'), ev('B')], { expectedVersion: 0, commitId: 'commit-1' });
        const retry = await store.append(s, [ev('A'), ev('B')], { expectedVersion: 0, commitId: 'commit-1' });
        expect(retry).to.deep.equal({ version: 2, sequence: first.sequence, duplicate: true });
        expect(await store.version(s)).to.equal(2);
        expect((await collect(store.read(s))).map((e) => e.event.type)).to.deep.equal(['A', 'B']);
      });

      it('recognises a retry after later commits, and one from the other writer', async () => {
        const other = await secondWriter();
        const s = account('late-retry');
        const first = await store.append(s, [ev('A')], { expectedVersion: 0, commitId: 'commit-a' });
        await store.append(s, [ev('B'), ev('C')], { expectedVersion: 1, commitId: 'commit-b' });
        expect(await store.append(s, [ev('A')], { expectedVersion: 0, commitId: 'commit-a' })).to.deep.equal({
          version: 1,
          sequence: first.sequence,
          duplicate: true,
        });
        expect(await other.append(s, [ev('A')], { expectedVersion: 0, commitId: 'commit-a' })).to.include({
          version: 1,
          duplicate: true,
        });
        expect(await store.version(s)).to.equal(3);
        const fresh = await rejection(store.append(s, [ev('Z')], { expectedVersion: 0, commitId: 'commit-z' }), ConcurrencyError);
        expect(fresh).to.include({ expectedVersion: 0, actualVersion: 3 });
      });

      it('treats the same commit id on two streams as two commits', async () => {
        const one = await store.append(account('first'), [ev('A')], { expectedVersion: 0, commitId: 'shared' });
        const two = await store.append(account('second'), [ev('B')], { expectedVersion: 0, commitId: 'shared' });
        expect(one.duplicate).to.equal(false);
        expect(two.duplicate).to.equal(false);
        expect((await collect(store.read(account('second')))).map((e) => e.event.type)).to.deep.equal(['B']);
      });
    });

    describe('snapshots', () => {
      it('loads nothing for a stream without a snapshot', async () => {
        expect(await store.loadSnapshot(account('no-snapshot'))).to.equal(undefined);
      });

      it('saves, loads and overwrites the latest snapshot', async () => {
        const s = account('snap');
        await store.saveSnapshot(s, snapshot(3));
        const loaded = await store.loadSnapshot(s);
        expect(loaded).to.deep.equal(snapshot(3));
        expect((loaded?.state as { context: { since: unknown } }).context.since).to.be.instanceOf(Date);
        await store.saveSnapshot(s, snapshot(7, { fingerprint: 'fp-2' }));
        expect(await store.loadSnapshot(s)).to.deep.equal(snapshot(7, { fingerprint: 'fp-2' }));
      });

      it('keeps snapshots of different actors and types apart', async () => {
        await store.saveSnapshot(account('a.b'), snapshot(1));
        await store.saveSnapshot(account('a_2Eb'), snapshot(2));
        await store.saveSnapshot({ type: 'Ledger', id: 'a.b' }, snapshot(3));
        expect((await store.loadSnapshot(account('a.b')))?.version).to.equal(1);
        expect((await store.loadSnapshot(account('a_2Eb')))?.version).to.equal(2);
        expect((await store.loadSnapshot({ type: 'Ledger', id: 'a.b' }))?.version).to.equal(3);
        expect(await store.loadSnapshot(account('a'))).to.equal(undefined);
      });
    });

    describe('actor ids', () => {
      it('accepts any non-empty id up to 1024 bytes and keeps every stream apart', async () => {
        for (const [i, id] of AWKWARD_IDS.entries()) {
          await store.append(account(id), [ev('OPENED', { id })], { expectedVersion: 0 });
          if (i % 2 === 0) await store.append(account(id), [ev('TOUCHED', { id })], { expectedVersion: 1 });
        }
        for (const [i, id] of AWKWARD_IDS.entries()) {
          const events = await collect(store.read(account(id)));
          expect(events.map((e) => e.event), JSON.stringify(id)).to.deep.equal(
            i % 2 === 0 ? [ev('OPENED', { id }), ev('TOUCHED', { id })] : [ev('OPENED', { id })],
          );
          expect(await store.version(account(id))).to.equal(i % 2 === 0 ? 2 : 1);
        }
        expect(await store.version(account('a.c'))).to.equal(0);
        expect(await store.version(account('ab'))).to.equal(0);
      });

      it('keeps the same id under different actor types apart', async () => {
        await store.append({ type: 'Account', id: 'same' }, [ev('A')], { expectedVersion: 0 });
        await store.append({ type: 'Ledger', id: 'same' }, [ev('L1'), ev('L2')], { expectedVersion: 0 });
        await store.append({ type: 'Account.same', id: 'x' }, [ev('X')], { expectedVersion: 0 });
        expect(await store.version({ type: 'Account', id: 'same' })).to.equal(1);
        expect(await store.version({ type: 'Ledger', id: 'same' })).to.equal(2);
        expect((await collect(store.read({ type: 'Account', id: 'same' }))).map((e) => e.event.type)).to.deep.equal(['A']);
      });

      it('rejects the empty id, ids over 1024 bytes and non-strings, storing nothing', async () => {
        const invalid: unknown[] = ['', 'x'.repeat(1025), 'é'.repeat(513), 42, null, undefined, { id: 'a' }];
        for (const id of invalid) {
          const s = { type: 'Account', id } as unknown as StreamId;
          const label = String(id).slice(0, 20);
          await rejection(store.append(s, [ev('A')], { expectedVersion: 0 }), InvalidActorIdError).then(
            (e) => expect(e.actorId, label).to.equal(id),
          );
          await rejection(store.version(s), InvalidActorIdError);
          expect(() => store.knownVersion(s), label).to.throw(InvalidActorIdError);
          await rejection(collect(store.read(s)), InvalidActorIdError);
          await rejection(store.saveSnapshot(s, snapshot(1)), InvalidActorIdError);
          await rejection(store.loadSnapshot(s), InvalidActorIdError);
        }
        expect(await store.version(account('x'.repeat(1024)))).to.equal(0);
        expect(await store.version(account('é'.repeat(512)))).to.equal(0);
      });

      it('rejects an empty or non-string actor type', async () => {
        for (const type of ['', 7]) {
          const s = { type, id: 'a' } as unknown as StreamId;
          await rejection(store.append(s, [ev('A')], { expectedVersion: 0 }), InvalidNameError);
          await rejection(store.version(s), InvalidNameError);
          expect(() => store.knownVersion(s)).to.throw(InvalidNameError);
        }
      });
    });

    describe('close', () => {
      it('refuses every operation once closed', async () => {
        const s = account('closing');
        await store.append(s, [ev('A')], { expectedVersion: 0 });
        await store.close();
        await rejection(store.append(s, [ev('B')], { expectedVersion: 1 }), ClosedError);
        await rejection(store.version(s), ClosedError);
        expect(() => store.knownVersion(s)).to.throw(ClosedError);
        await rejection(collect(store.read(s)), ClosedError);
        await rejection(store.saveSnapshot(s, snapshot(1)), ClosedError);
        await rejection(store.loadSnapshot(s), ClosedError);
        await store.close();
      });
    });
  });
}
