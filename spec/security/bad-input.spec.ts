/**
 * Bad input against a real node on a spawned nats-server (max_payload 64 KB): garbage,
 * mutated and polluting payloads published straight onto the node's own subjects and
 * into its KV bucket with raw nats.js, and commands and snapshots over max_payload.
 * Every time: a typed error (in the reply, or to `onError`), nothing stored (checked with
 * raw JetStream), no unhandled rejection, and the node serves the next valid command.
 */
import { expect } from 'chai';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { Kvm } from '@nats-io/kv';
import { assign, setup } from 'xstate';
import { createNode, crashNode, type NatstateNode } from '../../lib/node.js';
import { decode, encode, isRecord } from '../../lib/codec/codec.js';
import { isRouteReply, type RouteReply } from '../../lib/codec/routing.js';
import { DecodeError, InvalidEventError, PayloadTooLargeError } from '../../lib/errors.js';
import { Subjects } from '../../lib/subjects.js';
import { shardOf } from '../../lib/cluster/placement.js';
import { NatsServer } from '../support/nats-server.js';
import { eventually } from '../support/eventually.js';
import { mulberry32 } from '../support/random.js';
import { storedSubjects } from '../support/stored-subjects.js';

/**
 * A machine that merges whatever it is sent with `Object.assign`, as application code
 * does: an own `__proto__` key reaching it would replace the merged object's prototype.
 */
const bag = setup({
  types: {
    context: {} as { data: Record<string, unknown>; blob: string },
    events: {} as { type: 'MERGE'; patch: Record<string, unknown> } | { type: 'GROW'; text: string },
  },
}).createMachine({
  context: { data: {}, blob: '' },
  on: {
    MERGE: { actions: assign({ data: ({ context, event }) => Object.assign({}, context.data, event.patch) }) },
    GROW: { actions: assign({ blob: ({ context, event }) => context.blob + event.text }) },
  },
});
const actors = { bag };
type BagNode = NatstateNode<typeof actors>;

const MAX_PAYLOAD = 64 * 1024;
const text = (value: string) => new TextEncoder().encode(value);
const polluted = () => ({} as Record<string, unknown>).polluted;

describe('bad input on NATS', function () {
  this.timeout(60_000);
  let server: NatsServer;
  let raw: NatsConnection;
  const nodes: BagNode[] = [];
  let errors: { error: unknown; context: string }[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  let counter = 0;

  before(async () => {
    server = await NatsServer.start({ config: `max_payload: ${MAX_PAYLOAD}` });
    raw = await connect({ servers: server.url });
    process.on('unhandledRejection', onUnhandled);
  });
  after(async () => {
    process.off('unhandledRejection', onUnhandled);
    await raw.close();
    await server.stop();
  });
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.close()));
    errors = [];
    expect(unhandled, 'unhandled rejections').to.deep.equal([]);
    expect(polluted()).to.equal(undefined);
  });

  async function node(namespace = `bad-${process.pid}-${++counter}`, nodeId = `n${counter}`): Promise<BagNode> {
    const n = await createNode({
      actors,
      namespace,
      nodeId,
      nats: { servers: server.url },
      snapshotEvery: 1,
      onError: (error, context) => errors.push({ error, context }),
      cluster: { heartbeatMs: 200, failureTimeoutMs: 1_500, leaseMs: 1_000, planIntervalMs: 200 },
    });
    nodes.push(n);
    return n;
  }

  /** Subjects of `bag` actors and their message counts in the namespace's event stream. */
  const storedBags = (namespace: string) => storedSubjects(raw, namespace, 'bag');

  async function snapshotKeys(namespace: string): Promise<string[]> {
    const kv = await new Kvm(raw).open(new Subjects(namespace).snapshotBucket);
    const keys: string[] = [];
    for await (const key of await kv.keys('bag.>')) keys.push(key);
    return keys;
  }

  async function ask(n: BagNode, payload: Uint8Array): Promise<RouteReply> {
    const reply = await raw.request(new Subjects(n.namespace).node(n.id), payload, { timeout: 5_000 });
    return decode(reply.data, isRouteReply, 'reply');
  }

  const command = (n: BagNode, id: string, event: unknown, commandId: string) => ({ type: 'bag', id, event, commandId, epoch: n.cluster().epoch, wantState: true });

  it('answers garbage and mutated commands on its node subject with a typed error, stores nothing and keeps serving', async () => {
    const n = await node();
    const seed = 6001;
    const random = mulberry32(seed);
    const valid = encode(command(n, 'target', { type: 'MERGE', patch: { a: 1 } }, 'c-valid'));
    const garbage: Uint8Array[] = [
      new Uint8Array(0),
      new Uint8Array([0xff, 0xfe, 0x00]),
      text('not json'),
      text('{"json":'),
      text('{"json":null}'),
      text(`{"json":${'['.repeat(30_000)}${']'.repeat(30_000)}}`),
      text('{"json":{"type":"bag"},"meta":{"values":{"type":"number"}}}'),
      encode({ ...command(n, 'target', { type: 'MERGE', patch: {} }, 'c'), epoch: -1 }),
      encode({ ...command(n, 'target', { type: 'MERGE', patch: {} }, ''), commandId: '' }),
      encode({ kind: 'migrate', type: 'bag', id: 'target' }),
      encode({ kind: 'shard-done', shard: 'x' }),
    ];
    // Mutations of a valid command that no longer decode (bit flips, truncations).
    while (garbage.length < 60) {
      const bytes = valid.slice(0, random() < 0.5 ? valid.length : Math.floor(random() * valid.length));
      for (let i = 0; i < 3; i++) bytes[Math.floor(random() * bytes.length)] ^= 1 << Math.floor(random() * 8);
      try {
        decode(bytes, isRecord, 'probe');
      } catch {
        garbage.push(bytes);
      }
    }
    for (const [i, payload] of garbage.entries()) {
      const reply = await ask(n, payload);
      expect(reply, `seed ${seed}, payload ${i}: ${new TextDecoder().decode(payload.slice(0, 120))}`).to.include({ kind: 'error', code: 'DECODE' });
    }
    // Well formed but invalid: typed errors of the actor host.
    const invalid: [unknown, string][] = [
      [command(n, 'target', { type: 'NOPE' }, 'c-1'), 'INVALID_EVENT'],
      [{ ...command(n, 'target', { type: 'MERGE', patch: {} }, 'c-2'), type: 'wallet' }, 'UNKNOWN_ACTOR_TYPE'],
      [command(n, '', { type: 'MERGE', patch: {} }, 'c-3'), 'INVALID_ACTOR_ID'],
      [command(n, 'x'.repeat(1025), { type: 'MERGE', patch: {} }, 'c-4'), 'INVALID_ACTOR_ID'],
    ];
    for (const [request, code] of invalid) expect(await ask(n, encode(request))).to.include({ kind: 'error', code });

    expect(await storedBags(n.namespace)).to.deep.equal({});
    expect(await snapshotKeys(n.namespace)).to.deep.equal([]);
    expect(await ask(n, valid)).to.include({ kind: 'ok', accepted: true, version: 1 });
    expect((await n.send('bag', 'target', { type: 'MERGE', patch: { b: 2 } })).version).to.equal(2);
    expect(Object.values(await storedBags(n.namespace))).to.deep.equal([2]);
  });

  it('reports garbage on its bus subject and in its KV bucket as DecodeError and keeps serving', async () => {
    const n = await node();
    const subjects = new Subjects(n.namespace);
    await n.send('bag', 'b', { type: 'MERGE', patch: { a: 1 } });
    // The node listens to the shards it owns: garbage on the actor's shard reaches it.
    const onBus = subjects.eventStored({ type: 'bag', id: 'b' }, shardOf('b', n.cluster().shardCount));
    for (const payload of [text('garbage'), new Uint8Array([0xc3]), encode({ namespace: n.namespace, type: 'bag', id: 'b', version: 'x' })]) raw.publish(onBus, payload);
    const kv = await new Kvm(raw).open(subjects.clusterBucket);
    await kv.put(subjects.memberKey('intruder'), text('{"json":{"nodeId":7}}'));
    await kv.put(subjects.memberKey('other'), text('\u0000\u0001'));
    await kv.put(subjects.shardMapKey, text('{"json":{"epoch":"∞"}}'));
    const decodeErrors = () => errors.filter(({ error }) => error instanceof DecodeError).length;
    await eventually(decodeErrors, (count) => count >= 6, 10_000, 'DecodeErrors reported');
    expect(errors.every(({ error }) => error instanceof DecodeError), errors.map(({ context, error }) => `${context}: ${String(error)}`).join('\n')).to.equal(true);
    // The intruders never count as members, and the node still routes with the map it had.
    expect(n.cluster().members).to.deep.equal([n.id]);
    expect((await n.send('bag', 'b', { type: 'MERGE', patch: { c: 3 } })).version).to.equal(2);
    expect(Object.values(await storedBags(n.namespace))).to.deep.equal([2]);
  });

  describe('prototype pollution', () => {
    const forged = [
      '{"type":"MERGE","patch":{"__proto__":{"polluted":true},"a":1}}',
      '{"type":"MERGE","patch":{"\\u005f_proto__":{"polluted":true},"a":1}}',
      '{"type":"MERGE","patch":{"constructor":{"prototype":{"polluted":true}},"a":1}}',
      '{"type":"MERGE","patch":{"prototype":{"polluted":true},"a":1}}',
    ];
    const isInert = (data: Record<string, unknown>) => Object.getPrototypeOf(data) === Object.prototype && data.polluted === undefined && polluted() === undefined;

    it('is inert in routed commands, stored events, snapshots and after recovery', async () => {
      const namespace = `pollution-${process.pid}-${++counter}`;
      const n = await node(namespace, 'first');
      for (const [i, event] of forged.entries()) {
        const payload = text(`{"json":{"type":"bag","id":"p","event":${event},"commandId":"c-${i}","epoch":${n.cluster().epoch},"wantState":true}}`);
        const reply = await ask(n, payload);
        expect(reply).to.include({ kind: 'ok', accepted: true, version: i + 1 });
        expect(isInert((await n.state('bag', 'p')).context.data)).to.equal(true);
      }
      expect(await snapshotKeys(namespace)).to.have.length(1);
      // Replayed on another node from the snapshot and the stored events.
      await crashNode(n);
      const again = await node(namespace, 'second');
      const state = await again.state('bag', 'p');
      expect(state.version).to.equal(forged.length);
      expect(isInert(state.context.data)).to.equal(true);
      expect(state.context.data).to.deep.include({ a: 1 });
    });

    it('a command built by JSON.parse with an own __proto__ key is refused locally with InvalidEventError', async () => {
      const n = await node();
      const event = JSON.parse(forged[0]) as { type: 'MERGE'; patch: Record<string, unknown> };
      const error = await n.send('bag', 'local', event).catch((e: unknown) => e);
      expect(error).to.be.instanceOf(InvalidEventError);
      expect(await n.state('bag', 'local')).to.include({ version: 0 });
      expect(isInert((await n.state('bag', 'local')).context.data)).to.equal(true);
    });
  });

  describe('over max_payload', () => {
    it('refuses a command over max_payload with PayloadTooLargeError before anything is stored', async () => {
      const n = await node();
      const error = await n.send('bag', 'big', { type: 'GROW', text: 'x'.repeat(MAX_PAYLOAD) }).catch((e: unknown) => e);
      expect(error).to.be.instanceOf(PayloadTooLargeError);
      expect(await storedBags(n.namespace)).to.deep.equal({});
      expect((await n.send('bag', 'big', { type: 'GROW', text: 'y' })).version).to.equal(1);
    });

    it('skips a snapshot over max_payload with PayloadTooLargeError and keeps the events and the actor', async () => {
      const n = await node();
      // Each event fits; the state they add up to does not.
      for (let i = 0; i < 5; i++) await n.send('bag', 'growing', { type: 'GROW', text: String(i).repeat(20_000) });
      const tooLarge = errors.filter(({ error }) => error instanceof PayloadTooLargeError);
      expect(tooLarge.length).to.be.greaterThan(0);
      expect((tooLarge[0].error as PayloadTooLargeError).limit).to.be.at.most(MAX_PAYLOAD);
      const kv = await new Kvm(raw).open(new Subjects(n.namespace).snapshotBucket);
      const snapshot = await kv.get(new Subjects(n.namespace).snapshotKey({ type: 'bag', id: 'growing' }));
      // The last snapshot that fitted (3 events of 20 KB), never a larger one.
      expect(snapshot?.value.length ?? 0).to.be.at.most(MAX_PAYLOAD);
      expect(Object.values(await storedBags(n.namespace))).to.deep.equal([5]);
      expect((await n.state('bag', 'growing')).context.blob).to.have.length(100_000);
    });
  });
});
