/**
 * Actor ids and namespaces on a real nats-server: any non-empty id of at most
 * `MAX_ACTOR_ID_BYTES` works end to end and its events land only on its own encoded
 * subject (checked with raw JetStream); two namespaces on one server share nothing.
 */
import { expect } from 'chai';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { createNode, type EventStored, type NatstateNode } from '../../lib/index.js';
import { crashNode } from '../../lib/node.js';
import { InvalidActorIdError } from '../../lib/errors.js';
import { Subjects } from '../../lib/subjects.js';
import { account } from '../../examples/bank/account.machine.js';
import { NatsServer } from '../support/nats-server.js';
import { eventually } from '../support/eventually.js';
import { storedSubjects } from '../support/stored-subjects.js';

const actors = { account };
type Bank = NatstateNode<typeof actors>;

const IDS = ['a.*', '>', 'a.>', '*', '.', 'a b', 'a\tb', 'a\nb', 'a\u0000b', '_', '_2E', 'a_2Eb', 'ü-🎉', '\u{10FFFF}', 'x'.repeat(1024), '€'.repeat(341)];

describe('actor ids and namespaces on NATS', function () {
  this.timeout(60_000);
  let server: NatsServer;
  let raw: NatsConnection;
  const nodes: Bank[] = [];
  let counter = 0;
  const cluster = { heartbeatMs: 200, failureTimeoutMs: 1_500, leaseMs: 1_000, planIntervalMs: 200 };

  before(async () => {
    server = await NatsServer.start();
    raw = await connect({ servers: server.url });
  });
  after(async () => {
    await raw.close();
    await server.stop();
  });
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.close()));
  });

  async function node(namespace: string, nodeId: string): Promise<Bank> {
    const n = await createNode({ actors, namespace, nodeId, nats: { servers: server.url }, snapshotEvery: 2, cluster });
    nodes.push(n);
    return n;
  }

  const accountSubjects = (namespace: string) => storedSubjects(raw, namespace, 'account');

  it('every id works, survives recovery on another node, and writes only to its own subject', async () => {
    const namespace = `ids-${process.pid}-${++counter}`;
    const subjects = new Subjects(namespace);
    const first = await node(namespace, 'first');
    for (const [i, id] of IDS.entries()) {
      await first.send('account', id, { type: 'DEPOSIT', amount: i + 1 });
      await first.send('account', id, { type: 'DEPOSIT', amount: 1 });
      await first.send('account', id, { type: 'WITHDRAW', amount: 1 });
    }
    const expected = Object.fromEntries(IDS.map((id) => [subjects.events({ type: 'account', id }), 3]));
    expect(await accountSubjects(namespace)).to.deep.equal(expected);
    // One token per id after the type: no id widened into a wildcard or split into more tokens.
    for (const subject of Object.keys(expected)) expect(subject.split('.')).to.have.length(5);

    await crashNode(first);
    const second = await node(namespace, 'second');
    for (const [i, id] of IDS.entries()) {
      const state = await second.state('account', id);
      expect([state.version, state.context.balance, state.context.id], JSON.stringify(id)).to.deep.equal([3, i + 1, id]);
    }
  });

  it('refuses the empty id and ids over 1 KB with InvalidActorIdError, storing nothing', async () => {
    const namespace = `ids-${process.pid}-${++counter}`;
    const n = await node(namespace, 'n');
    for (const id of ['', 'x'.repeat(1025), '€'.repeat(342)]) {
      const error = await n.send('account', id, { type: 'DEPOSIT', amount: 1 }).catch((e: unknown) => e);
      expect(error).to.be.instanceOf(InvalidActorIdError);
    }
    expect(await accountSubjects(namespace)).to.deep.equal({});
  });

  it('two namespaces on one server share no stream, KV entry, member or bus message, even for identical ids', async () => {
    // `x` and `x_` are the kind of pair a naive name mapping would confuse.
    const [nsA, nsB] = [`ns-${process.pid}-${++counter}`, `ns-${process.pid}-${counter}_`];
    const a = await node(nsA, 'same-node-id');
    const b = await node(nsB, 'same-node-id-b');
    const seenByA: EventStored[] = [];
    const seenByB: EventStored[] = [];
    a.subscribeToEventStored((e) => seenByA.push(e));
    b.subscribeToEventStored((e) => seenByB.push(e));
    await new Promise((resolve) => setTimeout(resolve, 100));

    await a.send('account', 'shared', { type: 'DEPOSIT', amount: 5 });
    await a.send('account', 'shared', { type: 'DEPOSIT', amount: 5 });
    await b.send('account', 'shared', { type: 'DEPOSIT', amount: 1 });
    await eventually(() => seenByA.length + seenByB.length, (n) => n >= 3, 5_000, 'EventStored of both namespaces');
    expect(seenByA.map((e) => [e.namespace, e.version])).to.deep.equal([[nsA, 1], [nsA, 2]]);
    expect(seenByB.map((e) => [e.namespace, e.version])).to.deep.equal([[nsB, 1]]);

    expect((await a.state('account', 'shared')).context.balance).to.equal(10);
    expect((await b.state('account', 'shared')).context.balance).to.equal(1);
    expect(a.cluster().members).to.deep.equal(['same-node-id']);
    expect(b.cluster().members).to.deep.equal(['same-node-id-b']);

    // Raw JetStream: each namespace's stream and buckets hold only its own data.
    const [subjectsA, subjectsB] = [new Subjects(nsA), new Subjects(nsB)];
    expect(subjectsA.eventStream).to.not.equal(subjectsB.eventStream);
    expect(await accountSubjects(nsA)).to.deep.equal({ [subjectsA.events({ type: 'account', id: 'shared' })]: 2 });
    expect(await accountSubjects(nsB)).to.deep.equal({ [subjectsB.events({ type: 'account', id: 'shared' })]: 1 });
    const jsm = await jetstreamManager(raw);
    for (const [subjects, other] of [[subjectsA, subjectsB], [subjectsB, subjectsA]]) {
      const info = await jsm.streams.info(subjects.eventStream);
      expect(info.config.subjects).to.deep.equal([subjects.eventStreamSubjects]);
      expect(info.config.subjects).to.not.include(other.eventStreamSubjects);
    }
    const kvm = new Kvm(raw);
    const keysOf = async (bucket: string) => {
      const keys: string[] = [];
      for await (const key of await (await kvm.open(bucket)).keys()) keys.push(key);
      return keys.sort();
    };
    expect(await keysOf(subjectsA.clusterBucket)).to.include(subjectsA.memberKey('same-node-id')).and.not.include(subjectsB.memberKey('same-node-id-b'));
    expect(await keysOf(subjectsB.clusterBucket)).to.include(subjectsB.memberKey('same-node-id-b')).and.not.include(subjectsA.memberKey('same-node-id'));
  });
});
