import { expect } from 'chai';
import sinon from 'sinon';
import { ActorHost } from '../../lib/actors/actor-host.js';
import { decode, encode } from '../../lib/codec/codec.js';
import { isRouteRequest, type RouteReply } from '../../lib/codec/routing.js';
import { LocalEventBus } from '../../lib/eventbus/local.js';
import { MemoryEventStore } from '../../lib/eventstore/memory.js';
import { ConcurrencyError, DecodeError, InvalidEventError, MigrationBufferFullError, NotOwnerError, RemoteError, TimeoutError, UnknownActorTypeError } from '../../lib/errors.js';
import { Router, type MigrationHooks, type ShardMapView } from '../../lib/cluster/router.js';
import { MemoryTransport, MemoryTransportHub } from '../../lib/cluster/transport/memory.js';
import { NoRespondersError, type Transport } from '../../lib/cluster/transport/transport.js';
import { account } from '../../examples/bank/account.machine.js';

type Map = { epoch: number; shardCount: number; owners: (string | null)[] };

/** A shard map the spec controls: `set()` publishes a new epoch to waiters. */
class FakeShardMap implements ShardMapView {
  current: Map | undefined;
  refreshes = 0;
  private waiters: { predicate: (m: Map) => boolean; resolve: () => void }[] = [];
  constructor(map?: Map) {
    this.current = map;
  }
  set(map: Map): void {
    this.current = map;
    const ready = this.waiters.filter((w) => w.predicate(map));
    this.waiters = this.waiters.filter((w) => !ready.includes(w));
    for (const w of ready) w.resolve();
  }
  async refresh(): Promise<void> {
    this.refreshes++;
  }
  waitFor(predicate: (m: Map) => boolean, timeoutMs: number): Promise<void> {
    if (this.current && predicate(this.current)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = { predicate, resolve };
      this.waiters.push(w);
      setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new TimeoutError('waiting for shard map', timeoutMs));
      }, timeoutMs);
    });
  }
}

const SHARDS = 8;
const everything = (owner: string | null, epoch = 1): Map => ({ epoch, shardCount: SHARDS, owners: new Array(SHARDS).fill(owner) });

describe('Router (sendMessage)', () => {
  const hosts: ActorHost[] = [];
  let store: MemoryEventStore;
  beforeEach(() => {
    store = new MemoryEventStore();
  });
  afterEach(async () => {
    sinon.restore();
    await Promise.all(hosts.splice(0).map((h) => h.close()));
  });

  function node(nodeId: string, shardMap: ShardMapView, transport: Transport, options: { deadlineMs?: number; requestTimeoutMs?: number; migrations?: MigrationHooks } = {}) {
    const host = new ActorHost({ namespace: 'bank', nodeId, actors: { account }, store, bus: new LocalEventBus('bank'), passivateAfterMs: 0 });
    hosts.push(host);
    const router = new Router({ nodeId, host, shardMap, transport, deadlineMs: options.deadlineMs ?? 2000, requestTimeoutMs: options.requestTimeoutMs ?? 500, migrations: options.migrations });
    return { host, router };
  }

  it('dispatches locally when this node owns the shard, without touching the transport', async () => {
    const transport = new MemoryTransport();
    const request = sinon.spy(transport, 'request');
    const { router } = node('a', new FakeShardMap(everything('a')), transport);
    const reply = await router.sendMessage('account', 'acc', { type: 'DEPOSIT', amount: 3 }, undefined, true);
    expect(reply).to.deep.include({ accepted: true, version: 1, duplicate: false });
    expect(reply.state?.context).to.deep.include({ balance: 3 });
    expect(request.callCount).to.equal(0);
  });

  /** `a` routes over the transport to `b`, which owns every shard. */
  async function remoteOwner() {
    const hub = new MemoryTransportHub();
    const map = new FakeShardMap(everything('b'));
    const a = node('a', map, new MemoryTransport(hub));
    const b = node('b', map, new MemoryTransport(hub));
    await new MemoryTransport(hub).serve('b', b.router.handleRequest);
    return { a, b };
  }

  it('routes to the remote owner and brings its reply back', async () => {
    const { a, b } = await remoteOwner();
    const reply = await a.router.sendMessage('account', 'acc', { type: 'DEPOSIT', amount: 5 }, 'c1', true);
    expect(reply).to.deep.include({ accepted: true, version: 1, commandId: 'c1' });
    expect(reply.state).to.deep.equal({ value: 'open', context: { id: 'acc', balance: 5, deposits: 1 }, status: 'active' });
    expect(b.host.isResident('account', 'acc')).to.equal(true);
    expect(a.host.isResident('account', 'acc')).to.equal(false);
  });

  it('gives the owner its own context object and another node a copy whose change leaves the actor alone', async () => {
    const { a, b } = await remoteOwner();
    const remote = await a.router.sendMessage('account', 'acc', { type: 'DEPOSIT', amount: 5 }, 'c1', true);
    const local = await b.router.sendMessage('account', 'acc', undefined, undefined, true);
    const own = await b.router.sendMessage('account', 'acc', undefined, undefined, true);
    // Between the owner's own replies, the same (never changed) context object.
    expect(own.state?.context).to.equal(local.state?.context);
    expect(remote.state?.context).to.not.equal(local.state?.context);
    (remote.state!.context as { balance: number }).balance = 1_000;
    expect((await b.router.sendMessage('account', 'acc', undefined, undefined, true)).state?.context).to.deep.include({ balance: 5 });
  });

  it('rejects bad input locally before anything is sent', async () => {
    const transport = new MemoryTransport();
    const request = sinon.spy(transport, 'request');
    const { router } = node('a', new FakeShardMap(everything('b')), transport);
    await expectError(router.sendMessage('wallet', 'x', { type: 'DEPOSIT' }, undefined, false), UnknownActorTypeError);
    await expectError(router.sendMessage('account', 'x', { type: 'NOPE' }, undefined, false), InvalidEventError);
    expect(request.callCount).to.equal(0);
  });

  it('follows a not-owner answer to the new owner after refreshing the map', async () => {
    const hub = new MemoryTransportHub();
    const senderMap = new FakeShardMap(everything('b', 1));
    const truth = everything('c', 2);
    const b = node('b', new FakeShardMap(truth), new MemoryTransport(hub));
    const c = node('c', new FakeShardMap(truth), new MemoryTransport(hub));
    await new MemoryTransport(hub).serve('b', b.router.handleRequest);
    await new MemoryTransport(hub).serve('c', c.router.handleRequest);
    const a = node('a', senderMap, new MemoryTransport(hub));
    setTimeout(() => senderMap.set(truth), 20);
    const reply = await a.router.sendMessage('account', 'acc', { type: 'DEPOSIT', amount: 1 }, undefined, false);
    expect(reply.version).to.equal(1);
    expect(c.host.isResident('account', 'acc')).to.equal(true);
    expect(b.host.isResident('account', 'acc')).to.equal(false);
    expect(senderMap.refreshes).to.be.greaterThan(0);
  });

  it('bounds a not-owner loop by the deadline with NotOwnerError', async () => {
    const hub = new MemoryTransportHub();
    // b and c each believe the other owns everything, at the same epoch: nobody ever takes it.
    const b = node('b', new FakeShardMap(everything('c')), new MemoryTransport(hub));
    const c = node('c', new FakeShardMap(everything('b')), new MemoryTransport(hub));
    await new MemoryTransport(hub).serve('b', b.router.handleRequest);
    await new MemoryTransport(hub).serve('c', c.router.handleRequest);
    const transport = new MemoryTransport(hub);
    const request = sinon.spy(transport, 'request');
    const a = node('a', new FakeShardMap(everything('b')), transport, { deadlineMs: 300 });
    const started = Date.now();
    const error = await expectError(a.router.sendMessage('account', 'acc', { type: 'DEPOSIT', amount: 1 }, undefined, false), NotOwnerError);
    expect(error).to.include({ epoch: 1, owner: 'c' });
    expect(Date.now() - started).to.be.lessThan(2000);
    expect(request.callCount).to.be.greaterThan(1).and.lessThan(100);
    expect(await store.version({ type: 'account', id: 'acc' })).to.equal(0);
  });

  it('retries after a timeout with the same command id, so the command is applied once', async () => {
    const hub = new MemoryTransportHub();
    const map = new FakeShardMap(everything('b'));
    const b = node('b', map, new MemoryTransport(hub));
    let calls = 0;
    // The first reply is lost (arrives after the sender's timeout); the command was applied.
    await new MemoryTransport(hub).serve('b', async (payload) => {
      const reply = await b.router.handleRequest(payload);
      if (++calls === 1) await new Promise((r) => setTimeout(r, 200));
      return reply;
    });
    const a = node('a', map, new MemoryTransport(hub), { requestTimeoutMs: 50 });
    const reply = await a.router.sendMessage('account', 'acc', { type: 'DEPOSIT', amount: 7 }, undefined, true);
    expect(calls).to.be.at.least(2);
    expect(reply).to.deep.include({ version: 1, duplicate: true });
    expect(await store.version({ type: 'account', id: 'acc' })).to.equal(1);
  });

  it('waits for a new map when the owner has no responders, then reaches the new owner', async () => {
    const hub = new MemoryTransportHub();
    const map = new FakeShardMap(everything('dead'));
    const b = node('b', map, new MemoryTransport(hub));
    await new MemoryTransport(hub).serve('b', b.router.handleRequest);
    const transport = new MemoryTransport(hub);
    const request = sinon.spy(transport, 'request');
    const a = node('a', map, transport);
    setTimeout(() => map.set(everything('b', 2)), 50);
    const reply = await a.router.sendMessage('account', 'acc', { type: 'DEPOSIT', amount: 1 }, undefined, false);
    expect(reply.version).to.equal(1);
    expect(request.firstCall.args[0]).to.equal('dead');
    expect(request.lastCall.args[0]).to.equal('b');
  });

  it('gives up on an owner that never answers with a typed error at the deadline', async () => {
    const transport = new MemoryTransport();
    sinon.stub(transport, 'request').rejects(new NoRespondersError('gone'));
    const { router } = node('a', new FakeShardMap(everything('gone')), transport, { deadlineMs: 200 });
    await expectError(router.sendMessage('account', 'acc', { type: 'DEPOSIT', amount: 1 }, undefined, false), NotOwnerError);
  });

  it('turns an undecodable reply into DecodeError and a failure on the owner into its typed error', async () => {
    const transport = new MemoryTransport();
    const stub = sinon.stub(transport, 'request').resolves(new TextEncoder().encode('{"json": not json'));
    const { router } = node('a', new FakeShardMap(everything('b')), transport);
    await expectError(router.sendMessage('account', 'acc', { type: 'DEPOSIT', amount: 1 }, undefined, false), DecodeError);

    const failure = (reply: RouteReply) => stub.resolves(encode(reply));
    failure({ kind: 'error', code: 'CONCURRENCY', name: 'ConcurrencyError', message: 'x', details: { stream: 'account.acc', expectedVersion: 1, actualVersion: 2 } });
    const conflict = await expectError(router.sendMessage('account', 'acc', { type: 'DEPOSIT', amount: 1 }, undefined, false), ConcurrencyError);
    expect(conflict).to.include({ expectedVersion: 1, actualVersion: 2 });
    failure({ kind: 'error', code: 'EVENT_STORE', name: 'EventStoreError', message: 'disk full' });
    const remote = await expectError(router.sendMessage('account', 'acc', { type: 'DEPOSIT', amount: 1 }, undefined, false), RemoteError);
    expect(remote.message).to.contain('disk full');
  });

  it('answers garbage requests with an error reply instead of throwing', async () => {
    const { router } = node('b', new FakeShardMap(everything('b')), new MemoryTransport());
    const reply = decode(await router.handleRequest(new Uint8Array([1, 2, 3])), (v): v is RouteReply => true, 'reply');
    expect(reply).to.include({ kind: 'error', code: 'DECODE' });
  });

  describe('while an actor is on its way from its previous owner', () => {
    /** Hooks of a node whose shards all moved here from `source`, with `admit` deciding on the source side. */
    const hooks = (source: string | undefined, admit: (type: string, id: string) => Promise<boolean> | boolean = () => false): MigrationHooks => ({
      inTransit: () => source,
      admitHandoff: admit,
      handleMigrationRequest: async () => ({ kind: 'nack', reason: 'unused', retryable: false }),
      handleMigrationBatch: async () => ({ kind: 'migrated', replies: [] }),
      handleShardDone: () => undefined,
    });

    it('forwards commands to the previous owner, which serves them on its copy while it still has it', async () => {
      const hub = new MemoryTransportHub();
      const map = new FakeShardMap(everything('b', 2));
      const a = node('a', map, new MemoryTransport(hub), { migrations: hooks(undefined, (type, id) => a.host.isResident(type, id)) });
      await new MemoryTransport(hub).serve('a', a.router.handleRequest);
      await a.host.dispatch('account', 'acc', { type: 'DEPOSIT', amount: 1 }, 'c1');
      const b = node('b', map, new MemoryTransport(hub), { migrations: hooks('a') });
      // From this node (local path) and from a third one (routed path).
      const local = await b.router.send('account', 'acc', { type: 'DEPOSIT', amount: 2 }, undefined);
      const c = node('c', map, new MemoryTransport(hub));
      await new MemoryTransport(hub).serve('b', b.router.handleRequest);
      const routed = await c.router.sendMessage('account', 'acc', { type: 'DEPOSIT', amount: 4 }, 'c3', true);
      expect(local.version).to.equal(2);
      expect(routed).to.deep.include({ version: 3, commandId: 'c3' });
      expect(routed.state?.context).to.deep.include({ balance: 7 });
      expect(b.host.isResident('account', 'acc')).to.equal(false);
    });

    it('serves them itself once the previous owner says the actor left, or cannot answer', async () => {
      const hub = new MemoryTransportHub();
      const map = new FakeShardMap(everything('b', 2));
      const a = node('a', map, new MemoryTransport(hub), { migrations: hooks(undefined, () => false) });
      await new MemoryTransport(hub).serve('a', a.router.handleRequest);
      await store.append({ type: 'account', id: 'acc' }, [{ type: 'DEPOSIT', amount: 10 }], { expectedVersion: 0, commandIds: ['c0'] });
      const b = node('b', map, new MemoryTransport(hub), { migrations: hooks('a') });
      const moved = await b.router.send('account', 'acc', { type: 'DEPOSIT', amount: 1 }, 'c1');
      expect(moved.version).to.equal(2);
      expect(b.host.isResident('account', 'acc')).to.equal(true);
      expect(a.host.isResident('account', 'acc')).to.equal(false);
      // A source nobody serves any more (it crashed): served here at once, from the store.
      const orphan = node('d', new FakeShardMap(everything('d', 2)), new MemoryTransport(hub), { migrations: hooks('gone') });
      const reply = await orphan.router.sendMessage('account', 'acc-2', { type: 'DEPOSIT', amount: 1 }, undefined, true);
      expect(reply.state?.context).to.deep.include({ balance: 1 });
    });

    it('a third node sends to the previous owner first while the shard moves, then to the new owner once the actor left', async () => {
      const hub = new MemoryTransportHub();
      const map = new FakeShardMap(everything('b', 2));
      const a = node('a', map, new MemoryTransport(hub), { migrations: hooks(undefined, (type, id) => a.host.isResident(type, id)) });
      const b = node('b', map, new MemoryTransport(hub), { migrations: hooks(undefined) });
      const served = { a: 0, b: 0 };
      await new MemoryTransport(hub).serve('a', (payload) => (served.a++, a.router.handleRequest(payload)));
      await new MemoryTransport(hub).serve('b', (payload) => (served.b++, b.router.handleRequest(payload)));
      await a.host.dispatch('account', 'acc', { type: 'DEPOSIT', amount: 1 }, 'c1');
      const c = node('c', map, new MemoryTransport(hub), { migrations: { ...hooks(undefined), previousOwner: () => 'a' } });
      // Warm on the previous owner: served there in one hop, the new owner never hears of it.
      const warm = await c.router.sendMessage('account', 'acc', { type: 'DEPOSIT', amount: 2 }, 'c2', true);
      expect(warm.state?.context).to.deep.include({ balance: 3 });
      expect(served).to.deep.equal({ a: 1, b: 0 });
      // Gone from there: the previous owner says so, and the new owner serves it (from the store here).
      a.host.release('account', 'acc');
      const moved = await c.router.sendMessage('account', 'acc', { type: 'DEPOSIT', amount: 4 }, 'c3', true);
      expect(moved.state?.context).to.deep.include({ balance: 7 });
      expect(served).to.deep.equal({ a: 2, b: 1 });
      expect(b.host.isResident('account', 'acc')).to.equal(true);
    });

    it('the previous owner sending for its own moving actor serves it locally while it still has it', async () => {
      const hub = new MemoryTransportHub();
      const map = new FakeShardMap(everything('b', 2));
      const transport = new MemoryTransport(hub);
      const request = sinon.spy(transport, 'request');
      const a = node('a', map, transport, { migrations: { ...hooks(undefined, (type, id) => a.host.isResident(type, id)), previousOwner: () => 'a' } });
      await a.host.dispatch('account', 'acc', { type: 'DEPOSIT', amount: 1 }, 'c1');
      const reply = await a.router.sendMessage('account', 'acc', { type: 'DEPOSIT', amount: 2 }, 'c2', true);
      expect(reply.state?.context).to.deep.include({ balance: 3 });
      expect(request.callCount).to.equal(0);
    });

    it("brings the previous owner's typed error back (a full hand-over buffer)", async () => {
      const hub = new MemoryTransportHub();
      const map = new FakeShardMap(everything('b', 2));
      const a = node('a', map, new MemoryTransport(hub), {
        migrations: hooks(undefined, (type, id) => {
          throw new MigrationBufferFullError(type, id, 0);
        }),
      });
      await new MemoryTransport(hub).serve('a', a.router.handleRequest);
      const b = node('b', map, new MemoryTransport(hub), { migrations: hooks('a') });
      await expectError(b.router.send('account', 'acc', { type: 'DEPOSIT', amount: 1 }, undefined), MigrationBufferFullError);
      expect(b.host.isResident('account', 'acc')).to.equal(false);
    });
  });

  it('carries the sender epoch; an owner with an older map refreshes before answering', async () => {
    const ownerMap = new FakeShardMap(everything('c', 1));
    const refresh = sinon.stub(ownerMap, 'refresh').callsFake(async () => ownerMap.set(everything('b', 3)));
    const { router } = node('b', ownerMap, new MemoryTransport());
    const payload = encode({ type: 'account', id: 'acc', event: { type: 'DEPOSIT', amount: 1 }, commandId: 'k', epoch: 3, wantState: false });
    expect(isRouteRequest(decode(payload, isRouteRequest, 'req'))).to.equal(true);
    const reply = decode(await router.handleRequest(payload), (v): v is RouteReply => true, 'reply');
    expect(refresh.callCount).to.equal(1);
    expect(reply).to.include({ kind: 'ok', version: 1 });
  });
});

async function expectError<E extends Error>(promise: Promise<unknown>, type: new (...args: never[]) => E): Promise<E> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(type);
    return error as E;
  }
  return expect.fail(`expected ${type.name}`);
}
