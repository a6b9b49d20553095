import { expect } from 'chai';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { assign, setup } from 'xstate';
import {
  ClosedError,
  createNode,
  InvalidActorIdError,
  InvalidEventError,
  InvalidNameError,
  JetStreamEventStore,
  MemoryNetwork,
  NATSEventBus,
  PayloadTooLargeError,
  shardOf,
  UnknownActorTypeError,
  type EventStored,
  type NatstateNode,
} from '../lib/index.js';
import { account } from '../examples/bank/account.machine.js';
import { Subjects } from '../lib/subjects.js';
import { NatsServer } from './support/nats-server.js';
import { eventually } from './support/eventually.js';

const actors = { account };
type Bank = NatstateNode<typeof actors>;

let counter = 0;
const uniqueNamespace = (label: string) => `node-spec-${label}-${process.pid}-${++counter}`;

/** Runs the same behaviour against the embedded default and against NATS. */
function nodeBehaviour(label: string, make: (namespace: string, nodeId: string) => Promise<Bank>) {
  describe(`createNode (${label})`, () => {
    const nodes: Bank[] = [];
    const node = async (namespace = uniqueNamespace(label), nodeId = `n${nodes.length + 1}`) => {
      const n = await make(namespace, nodeId);
      nodes.push(n);
      return n;
    };
    afterEach(async () => {
      await Promise.all(nodes.splice(0).map((n) => n.close()));
    });

    it('send → { accepted, version }, ask → plus state, state → current state', async () => {
      const n = await node();
      expect(await n.send('account', 'acc-1', { type: 'DEPOSIT', amount: 10 })).to.include({ accepted: true, version: 1, duplicate: false });
      const asked = await n.ask('account', 'acc-1', { type: 'WITHDRAW', amount: 4 });
      expect(asked).to.include({ accepted: true, version: 2 });
      expect(asked.state).to.deep.equal({ value: 'open', context: { id: 'acc-1', balance: 6, deposits: 1 }, status: 'active' });
      const refused = await n.ask('account', 'acc-1', { type: 'WITHDRAW', amount: 100 });
      expect(refused).to.include({ accepted: false, version: 2 });
      expect(refused.state.context.balance).to.equal(6);
      expect(await n.state('account', 'acc-1')).to.deep.equal({ value: 'open', context: { id: 'acc-1', balance: 6, deposits: 1 }, status: 'active', version: 2 });
      expect(await n.state('account', 'never-used')).to.include({ value: 'open', version: 0 });
    });

    it('applies a command retried with the same command id once', async () => {
      const n = await node();
      const first = await n.send('account', 'acc-1', { type: 'DEPOSIT', amount: 5 }, { commandId: 'pay-1' });
      const retry = await n.send('account', 'acc-1', { type: 'DEPOSIT', amount: 5 }, { commandId: 'pay-1' });
      expect(retry).to.deep.equal({ ...first, duplicate: true });
      expect((await n.state('account', 'acc-1')).context.balance).to.equal(5);
    });

    it('recovers every actor on a new node over the same store', async () => {
      const namespace = uniqueNamespace(label);
      const first = await node(namespace, 'first');
      await Promise.all(Array.from({ length: 20 }, (_, i) => first.send('account', `acc-${i % 4}`, { type: 'DEPOSIT', amount: i })));
      await first.close();
      const second = await node(namespace, 'second');
      const balances = await Promise.all([0, 1, 2, 3].map(async (k) => (await second.state('account', `acc-${k}`)).context.balance));
      expect(balances).to.deep.equal([0, 1, 2, 3].map((k) => Array.from({ length: 20 }, (_, i) => i).filter((i) => i % 4 === k).reduce((a, b) => a + b, 0)));
    });

    it('notifies EventStored subscribers, filtered by type and id', async () => {
      const n = await node();
      const all: EventStored[] = [];
      const one: EventStored[] = [];
      n.subscribeToEventStored((e) => all.push(e));
      n.subscribeToEventStored((e) => one.push(e), { type: 'account', id: 'a.b' });
      await new Promise((r) => setTimeout(r, 50));
      await n.send('account', 'a.b', { type: 'DEPOSIT', amount: 1 });
      await n.send('account', 'a', { type: 'DEPOSIT', amount: 1 });
      const deadline = Date.now() + 5000;
      while (all.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(all.map((e) => e.id).sort()).to.deep.equal(['a', 'a.b']);
      expect(one.map((e) => e.id)).to.deep.equal(['a.b']);
      expect(one[0]).to.deep.include({ type: 'account', version: 1, events: [{ type: 'DEPOSIT', amount: 1 }] });
    });

    it('rejects bad input with typed errors and keeps serving other actors', async () => {
      const n = await node();
      const bad: [Promise<unknown>, new (...a: never[]) => Error][] = [
        // @ts-expect-error unknown actor type
        [n.send('wallet', 'w', { type: 'DEPOSIT', amount: 1 }), UnknownActorTypeError],
        // @ts-expect-error not an event of the account machine
        [n.send('account', 'acc', { type: 'TRANSFER' }), InvalidEventError],
        [n.send('account', '', { type: 'DEPOSIT', amount: 1 }), InvalidActorIdError],
      ];
      for (const [promise, type] of bad) {
        const error = await promise.then(() => undefined, (e: unknown) => e);
        expect(error).to.be.instanceOf(type);
      }
      expect(await n.state('account', 'acc')).to.include({ version: 0 });
      expect((await n.send('account', 'other', { type: 'DEPOSIT', amount: 1 })).accepted).to.equal(true);
    });

    it('any string is an actor id, and ids never share a stream', async () => {
      const n = await node();
      const ids = ['a', 'a.b', 'a.*', 'a.>', '>', '*', 'a b', 'a/b', 'ü-🎉', 'a_2Eb', 'x'.repeat(1024)];
      for (const [i, id] of ids.entries()) await n.send('account', id, { type: 'DEPOSIT', amount: i + 1 });
      for (const [i, id] of ids.entries()) {
        const s = await n.state('account', id);
        expect([s.version, s.context.balance, s.context.id]).to.deep.equal([1, i + 1, id]);
      }
    });

    it('refuses commands after close with ClosedError', async () => {
      const n = await node();
      await n.send('account', 'acc', { type: 'DEPOSIT', amount: 1 });
      await n.close();
      const error = await n.send('account', 'acc', { type: 'DEPOSIT', amount: 1 }).catch((e: unknown) => e);
      expect(error).to.be.instanceOf(ClosedError);
    });

    it('finishes queued commands before close() resolves', async () => {
      const namespace = uniqueNamespace(label);
      const n = await node(namespace);
      const pending = Array.from({ length: 50 }, () => n.send('account', 'acc', { type: 'DEPOSIT', amount: 1 }));
      await n.close();
      const results = await Promise.all(pending);
      expect(results.every((r) => r.accepted)).to.equal(true);
      const again = await node(namespace);
      expect(await again.state('account', 'acc')).to.include({ version: 50 });
    });

    it('two nodes writing the same actor never lose or reorder an acknowledged event', async () => {
      const namespace = uniqueNamespace(label);
      const a = await node(namespace, 'a');
      const b = await node(namespace, 'b');
      const sent = await Promise.all(
        Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).send('account', 'shared', { type: 'DEPOSIT', amount: i + 1 }, { commandId: `c${i}` })),
      );
      expect(sent.every((r) => r.accepted)).to.equal(true);
      expect(new Set(sent.map((r) => r.version)).size).to.equal(40);
      const fresh = await node(namespace, 'c');
      const s = await fresh.state('account', 'shared');
      expect([s.version, s.context.balance]).to.deep.equal([40, (40 * 41) / 2]);
    });
  });
}

describe('createNode', () => {
  it('rejects an invalid namespace or actor type name with InvalidNameError', async () => {
    for (const namespace of ['', 'x'.repeat(65)]) {
      const error = await createNode({ actors, namespace }).catch((e: unknown) => e);
      expect(error).to.be.instanceOf(InvalidNameError);
    }
    const error = await createNode({ actors: { '': account }, namespace: 'ok' }).catch((e: unknown) => e);
    expect(error).to.be.instanceOf(InvalidNameError);
  });

  it('keeps namespaces apart on one embedded network', async () => {
    const network = new MemoryNetwork();
    const a = await createNode({ actors, namespace: 'a', network });
    const b = await createNode({ actors, namespace: 'b', network });
    await a.send('account', 'acc', { type: 'DEPOSIT', amount: 1 });
    expect(await b.state('account', 'acc')).to.include({ version: 0 });
    await Promise.all([a.close(), b.close()]);
  });
});

nodeBehaviour('embedded', (() => {
  const network = new MemoryNetwork();
  return (namespace: string, nodeId: string) => createNode({ actors, namespace, nodeId, network });
})());

describe('on NATS', function () {
  this.timeout(30_000);
  let server: NatsServer;
  const connections: NatsConnection[] = [];
  before(async () => {
    server = await NatsServer.start({ config: 'max_payload: 65536' });
  });
  after(async () => {
    await Promise.all(connections.splice(0).map((nc) => nc.close()));
    await server.stop();
  });

  // Each node opens its own connection, as a separate process would.
  nodeBehaviour('NATS', (namespace, nodeId) => createNode({ actors, namespace, nodeId, nats: { servers: server.url } }));

  it("publishes commit notices on the actor's shard and hears those of its own shards only", async () => {
    const namespace = uniqueNamespace('sync');
    const shards = 8;
    const a = await createNode({ actors, namespace, nodeId: 'a', nats: { servers: server.url }, cluster: { shards } });
    const nc = await connect({ servers: server.url });
    connections.push(nc);
    const subjects = new Subjects(namespace);
    const heard: string[] = [];
    nc.subscribe(subjects.eventStoredFilter(), {
      callback: (_error, msg) => {
        heard.push(msg.subject);
      },
    });
    await nc.flush();
    const x = { type: 'account', id: 'x' };
    await a.send('account', 'x', { type: 'DEPOSIT', amount: 1 });
    await eventually(() => heard.length, (n) => n === 1, 5_000, "the node's notice");
    expect(heard).to.deep.equal([subjects.eventStored(x, shardOf('x', shards))]);

    // A stale writer appends to x (the store lets it: it knows the version) and says so.
    const store = await JetStreamEventStore.create(nc, { namespace });
    const deposit = { type: 'DEPOSIT', amount: 4 };
    const foreign = await store.append(x, [deposit], { expectedVersion: 1 });
    const bus = new NATSEventBus(nc, namespace);
    const notice: EventStored = { namespace, ...x, version: 2, sequence: foreign.sequence, events: [deposit], commandIds: ['stale'], origin: 'stale' };
    // On a shard the node does not own (there is no shard 8 of 8), it does not hear it:
    // its resident copy still reads 1 after another of its commits has made a round trip.
    bus.publish({ ...notice, shard: shards });
    await nc.flush();
    await a.send('account', 'y', { type: 'DEPOSIT', amount: 1 });
    expect((await a.state('account', 'x')).context.balance).to.equal(1);
    // On x's shard it does, and reads the store before serving x again.
    bus.publish({ ...notice, shard: shardOf('x', shards) });
    await eventually(async () => (await a.state('account', 'x')).context.balance, (balance) => balance === 5, 5_000, "the stale writer's deposit");
    expect(await a.send('account', 'x', { type: 'DEPOSIT', amount: 10 })).to.include({ accepted: true, version: 3 });
    await bus.close();
    await a.close();
  });

  it('uses a connection it is given and leaves it open on close', async () => {
    const nc = await connect({ servers: server.url });
    connections.push(nc);
    const n = await createNode({ actors, namespace: uniqueNamespace('given'), nats: nc });
    await n.send('account', 'acc', { type: 'DEPOSIT', amount: 1 });
    await n.close();
    expect(nc.isClosed()).to.equal(false);
  });

  it('rejects a command whose commit exceeds max_payload with PayloadTooLargeError and stores nothing', async () => {
    const namespace = uniqueNamespace('big');
    const n = await createNode({ actors: { echo: bigEcho }, namespace, nats: { servers: server.url } });
    try {
      const error = await n.send('echo', 'e', { type: 'SAY', text: 'x'.repeat(70_000) }).catch((e: unknown) => e);
      expect(error).to.be.instanceOf(PayloadTooLargeError);
      expect(await n.state('echo', 'e')).to.include({ version: 0 });
      expect((await n.send('echo', 'e', { type: 'SAY', text: 'small' })).version).to.equal(1);
      const nc = await connect({ servers: server.url });
      connections.push(nc);
      const store = await JetStreamEventStore.create(nc, { namespace });
      expect(await store.version({ type: 'echo', id: 'e' })).to.equal(1);
    } finally {
      await n.close();
    }
  });
});

const bigEcho = setup({ types: { context: {} as { last: string }, events: {} as { type: 'SAY'; text: string } } }).createMachine({
  context: { last: '' },
  on: { SAY: { actions: assign({ last: ({ event }) => event.text }) } },
});
