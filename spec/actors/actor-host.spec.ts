import { expect } from 'chai';
import sinon from 'sinon';
import { createMachine } from 'xstate';
import { ActorHost, type ActorHostOptions } from '../../lib/actors/actor-host.js';
import { MemoryEventStore } from '../../lib/eventstore/memory.js';
import { LocalEventBus, LocalEventHub } from '../../lib/eventbus/local.js';
import { ConcurrencyError, InvalidActorIdError, InvalidEventError, UnknownActorTypeError } from '../../lib/errors.js';
import type { EventStored } from '../../lib/codec/messages.js';
import type { RecordedEvent } from '../../lib/eventstore/eventstore.js';
import { account } from '../../examples/bank/account.machine.js';

const stream = (id: string) => ({ type: 'account', id });

async function events(store: MemoryEventStore, id: string): Promise<RecordedEvent[]> {
  const out: RecordedEvent[] = [];
  for await (const e of store.read(stream(id))) out.push(e);
  return out;
}

describe('ActorHost (event-sourced actors on one node)', () => {
  let store: MemoryEventStore;
  let hub: LocalEventHub;
  let audits: { kind: string; amount: number }[];
  const hosts: ActorHost[] = [];

  function host(overrides: Partial<ActorHostOptions> = {}): ActorHost {
    const audited = account.provide({ actions: { audit: (_, params) => void audits.push(params) } });
    const h = new ActorHost({
      namespace: 'bank',
      nodeId: `node-${hosts.length + 1}`,
      actors: { account: audited },
      store,
      bus: new LocalEventBus('bank', hub),
      passivateAfterMs: 0,
      ...overrides,
    });
    hosts.push(h);
    return h;
  }

  beforeEach(() => {
    store = new MemoryEventStore();
    hub = new LocalEventHub();
    audits = [];
  });

  afterEach(async () => {
    await Promise.all(hosts.splice(0).map((h) => h.close()));
    sinon.restore();
  });

  describe('commands', () => {
    it('stores an accepted event, bumps the version and replies accepted', async () => {
      const h = host();
      const reply = await h.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 10 }, 'cmd-1');
      expect(reply).to.include({ accepted: true, version: 1, commandId: 'cmd-1', duplicate: false });
      expect(reply.snapshot.context.balance).to.equal(10);
      const stored = await events(store, 'a1');
      expect(stored.map((e) => [e.event, e.version, e.commandId])).to.deep.equal([[{ type: 'DEPOSIT', amount: 10 }, 1, 'cmd-1']]);
    });

    it('does not store a command the machine takes no transition for (guard false, wrong state, final state)', async () => {
      const h = host();
      await h.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 10 }, undefined);
      const overdraft = await h.dispatch('account', 'a1', { type: 'WITHDRAW', amount: 50 }, undefined);
      expect(overdraft).to.include({ accepted: false, version: 1 });
      const unfreeze = await h.dispatch('account', 'a1', { type: 'UNFREEZE' }, undefined);
      expect(unfreeze).to.include({ accepted: false, version: 1 });
      await h.dispatch('account', 'a1', { type: 'WITHDRAW', amount: 10 }, undefined);
      const closed = await h.dispatch('account', 'a1', { type: 'CLOSE' }, undefined);
      expect(closed.snapshot.status).to.equal('done');
      const afterDone = await h.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 1 }, undefined);
      expect(afterDone).to.include({ accepted: false, version: 3 });
      expect((await events(store, 'a1')).map((e) => e.event.type)).to.deep.equal(['DEPOSIT', 'WITHDRAW', 'CLOSE']);
    });

    it('rejects bad input with typed errors, stores nothing and keeps serving other actors', async () => {
      const h = host();
      await expectRejection(h.dispatch('account', 'a1', { type: 'TRANSFER' }, undefined), InvalidEventError, /never handles "TRANSFER"/);
      await expectRejection(h.dispatch('account', 'a1', 'DEPOSIT' as never, undefined), InvalidEventError, /non-empty string "type"/);
      await expectRejection(h.dispatch('account', 'a1', { type: '' }, undefined), InvalidEventError);
      await expectRejection(h.dispatch('wallet', 'a1', { type: 'DEPOSIT' }, undefined), UnknownActorTypeError, /hosts: account/);
      await expectRejection(h.dispatch('account', '', { type: 'DEPOSIT', amount: 1 } as never, undefined), InvalidActorIdError);
      await expectRejection(h.dispatch('account', 'x'.repeat(1025), { type: 'DEPOSIT', amount: 1 } as never, undefined), InvalidActorIdError);
      expect(await store.version(stream('a1'))).to.equal(0);
      expect((await h.dispatch('account', 'a2', { type: 'DEPOSIT', amount: 3 }, undefined)).accepted).to.equal(true);
    });

    it('runs side effects only after the append is acknowledged, and not at all if it fails', async () => {
      const h = host();
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const append = store.append.bind(store);
      const stub = sinon.stub(store, 'append').callsFake(async (...args) => {
        await gate;
        return append(...args);
      });
      const pending = h.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 7 }, undefined);
      await new Promise((r) => setTimeout(r, 10));
      expect(audits).to.deep.equal([]);
      release();
      await pending;
      expect(audits).to.deep.equal([{ kind: 'deposit', amount: 7 }]);

      stub.rejects(new Error('disk on fire'));
      await expectRejection(h.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 1 }, undefined), Error, /disk on fire/);
      expect(audits).to.have.length(1);
      stub.restore();
      const reply = await h.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 2 }, undefined);
      expect(reply).to.include({ accepted: true, version: 2 });
      expect(reply.snapshot.context.balance).to.equal(9);
    });

    it('publishes EventStored after each commit', async () => {
      const h = host();
      const seen: EventStored[] = [];
      new LocalEventBus('bank', hub).subscribeToEventStored((n) => seen.push(n));
      await h.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 4 }, 'c1');
      await new Promise((r) => setImmediate(r));
      expect(seen).to.have.length(1);
      expect(seen[0]).to.deep.include({ namespace: 'bank', type: 'account', id: 'a1', version: 1, origin: 'node-1' });
      expect(seen[0].commandIds).to.deep.equal(['c1']);
    });
  });

  describe('mailbox', () => {
    it('applies commands to one actor one at a time, in arrival order', async () => {
      const h = host();
      const replies = await Promise.all(Array.from({ length: 100 }, (_, i) => h.dispatch('account', 'a1', { type: 'DEPOSIT', amount: i + 1 }, `c${i}`)));
      expect(replies.map((r) => r.version)).to.deep.equal(Array.from({ length: 100 }, (_, i) => i + 1));
      const stored = await events(store, 'a1');
      expect(stored.map((e) => e.commandId)).to.deep.equal(Array.from({ length: 100 }, (_, i) => `c${i}`));
      expect(replies[99].snapshot.context.balance).to.equal(5050);
    });

    it('group-commits commands queued behind an append into one append', async () => {
      const h = host();
      await h.dispatch('account', 'hot', { type: 'DEPOSIT', amount: 1 }, undefined);
      const spy = sinon.spy(store, 'append');
      await Promise.all(Array.from({ length: 200 }, () => h.dispatch('account', 'hot', { type: 'DEPOSIT', amount: 1 }, undefined)));
      expect(await store.version(stream('hot'))).to.equal(201);
      expect(spy.callCount).to.be.at.most(3);
      expect(spy.getCalls().reduce((n, c) => n + c.args[1].length, 0)).to.equal(200);
    });

    it('caps a group commit at maxBatch commands', async () => {
      const h = host({ maxBatch: 10 });
      const spy = sinon.spy(store, 'append');
      await Promise.all(Array.from({ length: 50 }, () => h.dispatch('account', 'hot', { type: 'DEPOSIT', amount: 1 }, undefined)));
      expect(spy.getCalls().every((c) => c.args[1].length <= 10)).to.equal(true);
      expect(await store.version(stream('hot'))).to.equal(50);
    });

    it('runs different actors concurrently: a slow append on one does not hold up another', async () => {
      const h = host();
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const append = store.append.bind(store);
      sinon.stub(store, 'append').callsFake(async (s, ...rest) => {
        if (s.id === 'slow') await gate;
        return append(s, ...rest);
      });
      const slow = h.dispatch('account', 'slow', { type: 'DEPOSIT', amount: 1 }, undefined);
      const fast = await h.dispatch('account', 'fast', { type: 'DEPOSIT', amount: 1 }, undefined);
      expect(fast.accepted).to.equal(true);
      expect(await store.version(stream('slow'))).to.equal(0);
      release();
      expect((await slow).version).to.equal(1);
    });
  });

  describe('recovery', () => {
    it('rebuilds state by replay on another host without re-running side effects', async () => {
      const first = host();
      for (let i = 1; i <= 5; i++) await first.dispatch('account', 'a1', { type: 'DEPOSIT', amount: i }, undefined);
      await first.dispatch('account', 'a1', { type: 'FREEZE' }, undefined);
      expect(audits).to.have.length(5);
      const second = host();
      const state = await second.dispatch('account', 'a1', undefined, undefined);
      expect(state.snapshot.value).to.equal('frozen');
      expect(state.snapshot.context.balance).to.equal(15);
      expect(state.version).to.equal(6);
      expect(audits).to.have.length(5);
    });

    it('saves a snapshot every N events and recovers from it, replaying only the rest', async () => {
      const first = host({ snapshotEvery: 10 });
      for (let i = 0; i < 25; i++) await first.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 1 }, undefined);
      const snap = await store.loadSnapshot(stream('a1'));
      expect(snap?.version).to.equal(20);
      expect(snap?.recentCommands).to.deep.equal([]);
      const read = sinon.spy(store, 'read');
      const second = host({ snapshotEvery: 10 });
      const state = await second.dispatch('account', 'a1', undefined, undefined);
      expect(state.snapshot.context.balance).to.equal(25);
      expect(state.version).to.equal(25);
      expect(read.firstCall.args[1]?.fromVersion).to.equal(20);
    });

    it('ignores a snapshot taken with another machine and replays every event', async () => {
      const first = host({ snapshotEvery: 5 });
      for (let i = 0; i < 5; i++) await first.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 2 }, undefined);
      const snap = await store.loadSnapshot(stream('a1'));
      await store.saveSnapshot(stream('a1'), { ...snap!, fingerprint: 'other-machine', state: { ...(snap!.state as object), context: { id: 'a1', balance: 999, deposits: 0 } } });
      const read = sinon.spy(store, 'read');
      const state = await host().dispatch('account', 'a1', undefined, undefined);
      expect(state.snapshot.context.balance).to.equal(10);
      expect(read.firstCall.args[1]?.fromVersion).to.equal(0);
    });

    it('passivates idle actors and recovers them transparently on their next command', async () => {
      const h = host({ passivateAfterMs: 20 });
      await h.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 5 }, undefined);
      expect(h.isResident('account', 'a1')).to.equal(true);
      const deadline = Date.now() + 2000;
      while (h.isResident('account', 'a1') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(h.isResident('account', 'a1')).to.equal(false);
      const reply = await h.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 5 }, undefined);
      expect(reply).to.include({ accepted: true, version: 2 });
      expect(reply.snapshot.context.balance).to.equal(10);
    });
  });

  describe('idempotency', () => {
    it('applies a command retried with the same id once', async () => {
      const h = host();
      const first = await h.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 5 }, 'same');
      const retry = await h.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 5 }, 'same');
      expect(retry).to.include({ accepted: true, duplicate: true, version: first.version });
      expect(retry.snapshot.context.balance).to.equal(5);
      expect(await store.version(stream('a1'))).to.equal(1);
      expect(audits).to.have.length(1);
    });

    it('recognises a retried command id within one group commit', async () => {
      const h = host();
      const [a, b] = await Promise.all([
        h.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 5 }, 'same'),
        h.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 5 }, 'same'),
      ]);
      expect(a.duplicate).to.equal(false);
      expect(b).to.include({ duplicate: true, version: 1 });
      expect(await store.version(stream('a1'))).to.equal(1);
    });

    it('remembers command ids across passivation, replay and snapshot recovery', async () => {
      const first = host({ snapshotEvery: 3 });
      for (let i = 0; i < 4; i++) await first.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 1 }, `c${i}`);
      const second = host({ snapshotEvery: 3 });
      for (let i = 0; i < 4; i++) {
        const retry = await second.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 1 }, `c${i}`);
        expect(retry).to.include({ duplicate: true, version: i + 1 });
      }
      expect(await store.version(stream('a1'))).to.equal(4);
    });
  });

  describe('other writers', () => {
    it('catches up and re-decides when another node appended to the same stream (nothing lost)', async () => {
      const a = host();
      const b = host();
      await a.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 1 }, undefined);
      await b.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 10 }, undefined);
      // Nothing told a about b's commit: its append meets a ConcurrencyError, it catches up and retries.
      const reply = await a.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 100 }, undefined);
      expect(reply).to.include({ accepted: true, version: 3 });
      expect(reply.snapshot.context.balance).to.equal(111);
      expect((await events(store, 'a1')).map((e) => e.event)).to.deep.equal([
        { type: 'DEPOSIT', amount: 1 },
        { type: 'DEPOSIT', amount: 10 },
        { type: 'DEPOSIT', amount: 100 },
      ]);
    });

    it('marks a resident actor stale on a foreign EventStored and reads the new events first', async () => {
      const a = host();
      await a.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 1 }, undefined);
      await store.append(stream('a1'), [{ type: 'DEPOSIT', amount: 4 }], { expectedVersion: 1 });
      const append = sinon.spy(store, 'append');
      a.noteForeignCommit({ namespace: 'bank', type: 'account', id: 'a1', version: 2, sequence: 2, events: [], commandIds: [], origin: 'x' });
      const state = await a.dispatch('account', 'a1', undefined, undefined);
      expect(state.snapshot.context.balance).to.equal(5);
      expect(append.callCount).to.equal(0);
    });

    it('gives up with ConcurrencyError when the stream keeps moving', async () => {
      const h = host();
      await h.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 1 }, undefined);
      sinon.stub(store, 'append').rejects(new ConcurrencyError('account.a1', 1, 2));
      await expectRejection(h.dispatch('account', 'a1', { type: 'DEPOSIT', amount: 1 }, undefined), ConcurrencyError);
    });
  });

  it('accepts any event for a machine with a wildcard transition', async () => {
    const echo = createMachine({ id: 'echo', context: { n: 0 }, on: { '*': { actions: () => {} } } });
    const h = new ActorHost({ namespace: "x", nodeId: "n", actors: { echo }, store, bus: new LocalEventBus('x', hub), passivateAfterMs: 0 });
    hosts.push(h);
    expect((await h.dispatch('echo', 'e', { type: 'ANYTHING' }, undefined)).accepted).to.equal(true);
  });
});

async function expectRejection(promise: Promise<unknown>, type: new (...args: never[]) => Error, message?: RegExp): Promise<void> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(type);
    if (message) expect((error as Error).message).to.match(message);
    return;
  }
  expect.fail(`expected a ${type.name}`);
}
