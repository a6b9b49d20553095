import { expect } from 'chai';
import sinon from 'sinon';
import type { InspectionEvent } from 'xstate';
import { createMemoryCluster, MigrationBufferFullError, MigrationOptionError, type MemoryCluster, type NatstateNode, type RecordedEvent } from '../../lib/index.js';
import { MigrationCoordinator, type ActorMigration, type MigrationRecord } from '../../lib/cluster/migration.js';
import { Journal } from '../../lib/cluster/journal.js';
import { decode, encode, isRecord } from '../../lib/codec/codec.js';
import { isMigrationBatchReply, isNodeRequest, type MigrationRequest, type NodeRequest } from '../../lib/codec/routing.js';
import { ActorHost } from '../../lib/actors/actor-host.js';
import { hashOf } from '../../lib/actors/recent-commands.js';
import { LocalEventBus } from '../../lib/eventbus/local.js';
import { MemoryEventStore } from '../../lib/eventstore/memory.js';
import { MemoryTransport } from '../../lib/cluster/transport/memory.js';
import type { ShardMap } from '../../lib/cluster/shard-map.js';
import { shardOf } from '../../lib/cluster/placement.js';
import { actors } from '../../examples/bank/actors.js';
import { account } from '../../examples/bank/account.machine.js';
import { eventually } from '../support/eventually.js';

type Bank = typeof actors;
const FAST = { heartbeatMs: 25, failureTimeoutMs: 250, leaseMs: 250, planIntervalMs: 25, shards: 32 };

async function settled(cluster: MemoryCluster<Bank>): Promise<void> {
  const ids = cluster.nodes.map((n) => n.id).sort();
  await eventually(
    () => cluster.nodes.map((n) => n.cluster()),
    (views) =>
      new Set(views.map((v) => v.epoch)).size === 1 &&
      views.every((v) => JSON.stringify(v.members) === JSON.stringify(ids) && v.migrations.running === 0) &&
      views.reduce((n, v) => n + v.ownedShards, 0) === views[0].shardCount,
  );
}

const migrated = (cluster: MemoryCluster<Bank>, left: NatstateNode<Bank>[] = []) =>
  [...cluster.nodes, ...left].reduce((n, node) => n + node.cluster().migrations.completed, 0);

/** Every stream: versions 1..n without gaps, and no command id applied twice. */
/** A source node's host with `count` resident accounts (one deposit each, applied). */
async function residentAccounts(count: number): Promise<{ host: ActorHost; ids: string[] }> {
  const host = new ActorHost({ namespace: 'bank', nodeId: 'a', actors: { account }, store: new MemoryEventStore(), bus: new LocalEventBus('bank'), passivateAfterMs: 0 });
  const ids = Array.from({ length: count }, (_, i) => `acc-${i}`);
  for (const id of ids) await host.dispatch('account', id, { type: 'DEPOSIT', amount: 1 }, `c-${id}`);
  await host.whenIdle('account', ids[0]);
  return { host, ids };
}

/** What a destination that installs every actor it is sent answers (one reply per actor of a batch). */
function installEverything(message: NodeRequest): Uint8Array {
  if (message.kind === 'migrate-batch') return encode({ kind: 'migrated', replies: message.actors.map(() => ({ kind: 'ack', installed: true })) });
  return encode({ kind: 'ack', installed: true });
}

async function historiesClean(cluster: MemoryCluster<Bank>, ids: string[]): Promise<void> {
  const store = cluster.network.store('bank');
  for (const id of ids) {
    const events: RecordedEvent[] = [];
    for await (const e of store.read({ type: 'account', id })) events.push(e);
    expect(events.map((e) => e.version)).to.deep.equal(events.map((_, i) => i + 1));
    expect(new Set(events.map((e) => e.commandId)).size).to.equal(events.length);
  }
}

describe('live migration (embedded cluster)', function () {
  this.timeout(30_000);
  let cluster: MemoryCluster<Bank>;
  afterEach(async () => cluster?.close());

  it('moves resident actors warm to a joining node under continuous deposits: nothing lost, nothing doubled', async () => {
    cluster = await createMemoryCluster({ actors, namespace: 'bank', nodes: 3, cluster: FAST });
    await settled(cluster);
    const ids = Array.from({ length: 200 }, (_, i) => `acc-${i}`);
    const acknowledged = new Map<string, number>();
    let stop = false;
    let sent = 0;
    const load = Promise.all(
      cluster.nodes.map(async (node, n) => {
        for (let round = 0; !stop; round++) {
          // Embedded sends settle in microtasks: yield so timers (heartbeats, planning) run.
          await new Promise((r) => setImmediate(r));
          await Promise.all(
            ids.map(async (id, i) => {
              const amount = n + 1;
              const reply = await node.send('account', id, { type: 'DEPOSIT', amount }, { commandId: `${node.id}-${round}-${i}` });
              if (reply.accepted) acknowledged.set(id, (acknowledged.get(id) ?? 0) + amount);
              sent++;
            }),
          );
        }
      }),
    );
    await eventually(() => sent, (n) => n > 1000);
    await cluster.addNode();
    await settled(cluster);
    await eventually(() => sent, (n) => n > 3000);
    stop = true;
    await load;

    expect(migrated(cluster)).to.be.greaterThan(0);
    expect(cluster.nodes.reduce((n, node) => n + node.cluster().migrations.failed, 0)).to.equal(0);
    expect(cluster.nodes[3].cluster().residentActors).to.be.greaterThan(0);
    for (const id of ids) expect((await cluster.nodes[0].state('account', id)).context.balance, id).to.equal(acknowledged.get(id));
    await historiesClean(cluster, ids);
  });

  it('hands a gracefully leaving node’s actors to the others, warm', async () => {
    cluster = await createMemoryCluster({ actors, namespace: 'bank', nodes: 3, cluster: FAST });
    await settled(cluster);
    const ids = Array.from({ length: 60 }, (_, i) => `acc-${i}`);
    for (const id of ids) await cluster.nodes[0].send('account', id, { type: 'DEPOSIT', amount: 5 });
    const leaving = cluster.nodes[1];
    const resident = leaving.cluster().residentActors;
    expect(resident).to.be.greaterThan(0);
    const read = sinon.spy(cluster.network.store('bank'), 'read');
    await cluster.removeNode(leaving);
    await settled(cluster);
    expect(leaving.cluster().migrations.completed).to.equal(resident);
    for (const id of ids) expect((await cluster.nodes[0].state('account', id)).context.balance).to.equal(5);
    // Warm: the migrated actors were installed, not replayed from the store (the
    // framework's own journals may be read, e.g. by a new leader).
    expect(read.getCalls().filter((call) => call.args[0].type === 'account')).to.have.length(0);
    read.restore();
  });

  it('paces nothing on a leader that left: its successor gets the reports and plans the next join at once', async () => {
    cluster = await createMemoryCluster({ actors, namespace: 'bank', nodes: 3, cluster: FAST });
    await settled(cluster);
    for (let i = 0; i < 60; i++) await cluster.nodes[0].send('account', `acc-${i}`, { type: 'DEPOSIT', amount: 1 });
    const leader = cluster.nodes.find((n) => n.cluster().isLeader)!;
    await cluster.removeNode(leader);
    await settled(cluster);
    // With the reports of the leaving leader lost, this plan would wait planTimeoutMs (30 s).
    const joined = await cluster.addNode();
    await eventually(() => joined.cluster().ownedShards, (n) => n > 0, 5_000);
    await settled(cluster);
    for (let i = 0; i < 60; i++) expect((await joined.state('account', `acc-${i}`)).context.balance).to.equal(1);
  });

  it('starts at most maxPerSecond migrations per second on a source, a batch at a time', async () => {
    const ended: number[] = [];
    const migration = { maxPerSecond: 50, batchSize: 4, onMigration: () => ended.push(performance.now()) };
    // Two shards: the one that moves holds about half of the 40 actors, so batches are full.
    cluster = await createMemoryCluster({ actors, namespace: 'bank', nodes: 1, cluster: { ...FAST, shards: 2, migration } });
    await settled(cluster);
    for (let i = 0; i < 40; i++) await cluster.nodes[0].send('account', `acc-${i}`, { type: 'DEPOSIT', amount: 1 });
    await cluster.addNode();
    await settled(cluster);
    expect(ended.length).to.be.greaterThan(10);
    // One source, batches of 4 starting 4 × 20 ms apart: the last batch ends at least
    // (n - 4) × 20 ms after the first (unpaced, an embedded hand-over of this size takes a
    // few milliseconds).
    expect(ended[ended.length - 1] - ended[0]).to.be.at.least((ended.length - 4) * 20 - 5);
    for (let i = 0; i < 40; i++) expect((await cluster.nodes[1].state('account', `acc-${i}`)).context.balance).to.equal(1);
  });

  it('stops pacing a source once it closes: close() hands the rest over at once instead of waiting for the pace', async () => {
    const ended: ActorMigration[] = [];
    // One a second: the ~30 actors of the moving shard would take half a minute paced.
    const migration = { maxPerSecond: 1, batchSize: 1, onMigration: (m: ActorMigration) => ended.push(m) };
    cluster = await createMemoryCluster({ actors, namespace: 'bank', nodes: 1, cluster: { ...FAST, shards: 2, migration } });
    await settled(cluster);
    const ids = Array.from({ length: 60 }, (_, i) => `acc-${i}`);
    for (const id of ids) await cluster.nodes[0].send('account', id, { type: 'DEPOSIT', amount: 1 });
    const [source] = cluster.nodes;
    const joined = await cluster.addNode();
    await eventually(() => ended.length, (n) => n >= 1, 5_000);
    const moving = ids.filter((id) => shardOf(id, 2) === shardOf(ended[0].actor.id, 2)).length;
    expect(moving).to.be.greaterThan(10);
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      source.close().then(() => 'closed'),
      new Promise<string>((resolve) => (timer = setTimeout(() => resolve('still pacing'), 5_000))),
    ]).finally(() => clearTimeout(timer));
    expect(outcome).to.equal('closed');
    // Every actor of the moving shard went over warm; none failed.
    expect(ended.map((m) => m.status)).to.deep.equal(Array.from({ length: moving }, () => 'Deleted'));
    for (const id of ids) expect((await joined.state('account', id)).context.balance).to.equal(1);
  });

  it('paces an embedded source at 330 migrations a second by default, 16 to a batch', async () => {
    const ended: number[] = [];
    cluster = await createMemoryCluster({ actors, namespace: 'bank', nodes: 1, cluster: { ...FAST, shards: 2, migration: { onMigration: () => ended.push(performance.now()) } } });
    await settled(cluster);
    for (let i = 0; i < 120; i++) await cluster.nodes[0].send('account', `acc-${i}`, { type: 'DEPOSIT', amount: 1 });
    await cluster.addNode();
    await settled(cluster);
    expect(ended.length).to.be.greaterThan(40);
    // Batches of 16 start 16 / 330 s (48 ms) apart: the last batch ends at least
    // (n - 16) / 330 s after the first. At the former default of 400 a second the gap
    // would be about a sixth shorter than that bound.
    expect(ended[ended.length - 1] - ended[0]).to.be.at.least(((ended.length - 16) * 1000) / 330 - 5);
    for (let i = 0; i < 120; i++) expect((await cluster.nodes[1].state('account', `acc-${i}`)).context.balance).to.equal(1);
  });

  it('refuses migration options it cannot honour with MigrationOptionError', async () => {
    for (const migration of [{ maxPerSecond: 0 }, { maxPerSecond: Number.NaN }, { concurrency: 0 }, { concurrency: 1.5 }, { batchSize: 0 }, { batchSize: 1025 }, { batchSize: 2.5 }]) {
      let error: unknown;
      try {
        cluster = await createMemoryCluster({ actors, namespace: 'bank', nodes: 1, cluster: { ...FAST, migration } });
      } catch (e) {
        error = e;
      }
      expect(error, JSON.stringify(migration)).to.be.instanceOf(MigrationOptionError);
    }
  });

  it('stops holding the commands of a crashed source’s shards as soon as it is known failed', async () => {
    cluster = await createMemoryCluster({ actors, namespace: 'bank', nodes: 3, cluster: { ...FAST, migration: { holdMs: 20_000 } } });
    await settled(cluster);
    for (let i = 0; i < 60; i++) await cluster.nodes[0].send('account', `acc-${i}`, { type: 'DEPOSIT', amount: 1 });
    const victim = cluster.nodes.find((n) => !n.cluster().isLeader)!;
    await cluster.crashNode(victim);
    await settled(cluster);
    // Every account answers long before holdMs: nothing waits for a hand-over that cannot come.
    const started = Date.now();
    for (let i = 0; i < 60; i++) expect((await cluster.nodes[0].send('account', `acc-${i}`, { type: 'DEPOSIT', amount: 1 })).accepted).to.equal(true);
    expect(Date.now() - started).to.be.lessThan(10_000);
    for (let i = 0; i < 60; i++) expect((await cluster.nodes[1].state('account', `acc-${i}`)).context.balance).to.equal(2);
  });

  it('shows each migration Pending → Paused → Capturing → Transferring → Acked → Deleted to an inspect observer', async () => {
    const events: InspectionEvent[] = [];
    cluster = await createMemoryCluster({ actors, namespace: 'bank', nodes: 2, cluster: FAST, inspect: (e) => events.push(e) });
    await settled(cluster);
    for (let i = 0; i < 20; i++) await cluster.nodes[0].send('account', `acc-${i}`, { type: 'DEPOSIT', amount: 1 });
    await cluster.addNode();
    await settled(cluster);
    const machineOf = (e: InspectionEvent) => (e.actorRef as unknown as { logic: { id: string } }).logic.id;
    const statusesOf = (ref: unknown) =>
      events.filter((e) => e.type === '@xstate.snapshot' && e.actorRef === ref).map((e) => (e as unknown as { snapshot: { value: string } }).snapshot.value);
    const created = events.filter((e) => e.type === '@xstate.actor' && machineOf(e) === 'migration');
    expect(created.length).to.be.greaterThan(0);
    expect(statusesOf(created[0].actorRef)).to.deep.equal(['Pending', 'Paused', 'Capturing', 'Transferring', 'Acked', 'Deleted']);
    // The leader's supervisor is inspected too: it ran the join's plan to its end.
    const supervisors = events.filter((e) => e.type === '@xstate.actor' && machineOf(e) === 'rebalance');
    expect(supervisors.length).to.be.greaterThan(0);
    const run = supervisors.flatMap((e) => statusesOf(e.actorRef)).filter((v, i, all) => v !== all[i - 1]);
    expect(run.join(' → ')).to.contain('Planning → Migrating → Committing → Idle');
  });
});

describe('migration requests on the wire', () => {
  let cluster: MemoryCluster<Bank> | undefined;
  afterEach(async () => cluster?.close());

  it('answers a corrupt or malformed MigrationRequest or MigrationBatch with a typed DecodeError and installs nothing', async () => {
    cluster = await createMemoryCluster({ actors, namespace: 'bank', nodes: 1, cluster: FAST });
    const [node] = cluster.nodes;
    await node.send('account', 'acc-1', { type: 'DEPOSIT', amount: 7 });
    const transport = new MemoryTransport(cluster.network.transportHub('bank'));
    const ask = async (payload: Uint8Array) => decode(await transport.request(node.id, payload, 1000), isRecord, 'reply');
    // By hand, in the codec's envelope, so that only the shape is wrong.
    const encodeRaw = (value: unknown) => new TextEncoder().encode(`{"json":${JSON.stringify(value)}}`);
    const garbage = await ask(new Uint8Array([0xff, 0x00, 0x7b, 0x22]));
    expect(garbage).to.include({ kind: 'error', code: 'DECODE' });
    // A migration without its state, and one whose version is not a count.
    const base = { kind: 'migrate', type: 'account', id: 'acc-1', version: 1, sequence: 1, fingerprint: 'x', state: { value: 'open' }, recentCommands: { ids: [], versions: [] }, from: 'ghost', epoch: 1 };
    expect(await ask(encodeRaw({ ...base, state: undefined }))).to.include({ kind: 'error', code: 'DECODE' });
    expect(await ask(encodeRaw({ ...base, version: -1 }))).to.include({ kind: 'error', code: 'DECODE' });
    // Recent commands as pairs (the old shape), with lists of different lengths, or an id that is not a string.
    for (const recentCommands of [[['c', 1]], { ids: ['c', 'd'], versions: [1] }, { ids: [7], versions: [1] }, { ids: ['c'], versions: [-1] }, { hashes: [1, 2], versions: [1] }, { hashes: ['c'], versions: [1] }, { hashes: [2 ** 30], versions: [1] }, { hashes: [-1], versions: [1] }, { hashes: [1], ids: ['c'], versions: [1] }]) {
      expect(await ask(encodeRaw({ ...base, recentCommands }))).to.include({ kind: 'error', code: 'DECODE' });
    }
    const polluting = `{"json":${JSON.stringify({ ...base, recentCommands: { ids: ['c'], versions: ['not-a-version'] } }).replace('{', '{"__proto__":{"polluted":true},')}}`;
    expect(await ask(new TextEncoder().encode(polluting))).to.include({ kind: 'error', code: 'DECODE' });
    expect(({} as Record<string, unknown>).polluted).to.equal(undefined);
    // A batch with one malformed actor is refused whole; an empty one, or one over 1,024 actors, too.
    expect(await ask(encodeRaw({ kind: 'migrate-batch', actors: [base, { ...base, version: -1 }] }))).to.include({ kind: 'error', code: 'DECODE' });
    expect(await ask(encodeRaw({ kind: 'migrate-batch', actors: [] }))).to.include({ kind: 'error', code: 'DECODE' });
    expect(await ask(encodeRaw({ kind: 'migrate-batch', actors: Array.from({ length: 1025 }, () => base) }))).to.include({ kind: 'error', code: 'DECODE' });
    // Well formed, it reaches the destination's checks (and is refused there: no such machine version).
    expect(await ask(encodeRaw(base))).to.include({ kind: 'nack', retryable: false });
    const batch = await ask(encodeRaw({ kind: 'migrate-batch', actors: [base, base] }));
    expect(batch).to.include({ kind: 'migrated' });
    expect(batch.replies).to.have.length(2).and.to.satisfy((replies: { kind: string }[]) => replies.every((r) => r.kind === 'nack'));
    // The actor is untouched and the node keeps serving.
    expect((await node.state('account', 'acc-1')).context.balance).to.equal(7);
    expect((await node.send('account', 'acc-1', { type: 'DEPOSIT', amount: 1 })).version).to.equal(2);
    await transport.close();
  });
});

describe('migration batch replies', () => {
  it('answers several actors with one reply each; a lone reply only refuses them all', () => {
    const ack = { kind: 'ack', installed: true };
    const nack = { kind: 'nack', reason: 'off', retryable: false };
    expect(isMigrationBatchReply(1)(ack)).to.equal(true);
    expect(isMigrationBatchReply(2)(ack)).to.equal(false);
    expect(isMigrationBatchReply(2)(nack)).to.equal(true);
    expect(isMigrationBatchReply(2)({ kind: 'migrated', replies: [ack, nack] })).to.equal(true);
    expect(isMigrationBatchReply(3)({ kind: 'migrated', replies: [ack, nack] })).to.equal(false);
  });
});

describe('MigrationCoordinator (destination side)', () => {
  const map = (owners: (string | null)[], epoch = 2): ShardMap => ({ epoch, shardCount: owners.length, owners, leader: 'a', time: 0, revision: epoch });

  function destination(options: { maxBuffered?: number; holdMs?: number; snapshotEvery?: number } = {}) {
    const store = new MemoryEventStore();
    const host = new ActorHost({ namespace: 'bank', nodeId: 'b', actors: { account }, store, bus: new LocalEventBus('bank'), passivateAfterMs: 0, snapshotEvery: options.snapshotEvery });
    const shardMap = { current: map(['b']), refresh: async () => undefined };
    const coordinator = new MigrationCoordinator({ nodeId: 'b', host, transport: new MemoryTransport(), shardMap, isLive: () => true, maxPayload: 1 << 20, ...options });
    return { store, host, shardMap, coordinator };
  }

  async function capturedFrom(deposits: number[], commandIds = deposits.map((amount) => `c${amount}`)) {
    const store = new MemoryEventStore();
    const source = new ActorHost({ namespace: 'bank', nodeId: 'a', actors: { account }, store, bus: new LocalEventBus('bank'), passivateAfterMs: 0 });
    for (const [i, amount] of deposits.entries()) await source.dispatch('account', 'acc', { type: 'DEPOSIT', amount }, commandIds[i]);
    await source.whenIdle('account', 'acc');
    const capture = source.capture('account', 'acc');
    if (!capture) throw new Error('an idle resident actor must be capturable');
    await source.close();
    return { store, capture };
  }

  it('installs a valid migration and serves the next command from it', async () => {
    const { capture, store: sourceStore } = await capturedFrom([1, 2, 3]);
    const { host, store, coordinator } = destination();
    for await (const e of sourceStore.read({ type: 'account', id: 'acc' })) await store.append({ type: 'account', id: 'acc' }, [e.event], { expectedVersion: e.version - 1, commandIds: [e.commandId] });
    const reply = await coordinator.handleMigrationRequest({ kind: 'migrate', type: 'account', id: 'acc', from: 'a', epoch: 2, ...capture });
    expect(reply).to.deep.equal({ kind: 'ack', installed: true });
    const read = sinon.spy(store, 'read');
    const next = await host.dispatch('account', 'acc', { type: 'DEPOSIT', amount: 4 }, undefined);
    expect(next.version).to.equal(4);
    expect(next.snapshot.context.balance).to.equal(10);
    expect(read.callCount).to.equal(0);
    const retry = await host.dispatch('account', 'acc', { type: 'DEPOSIT', amount: 2 }, 'c2');
    expect(retry).to.include({ duplicate: true, version: 2 });
    await host.close();
  });

  /** Copies the source's events into the destination's store, as a shared store would hold them. */
  async function copyEvents(from: MemoryEventStore, to: MemoryEventStore) {
    for await (const e of from.read({ type: 'account', id: 'acc' })) await to.append({ type: 'account', id: 'acc' }, [e.event], { expectedVersion: e.version - 1, commandIds: [e.commandId] });
  }

  /** Two command ids with one hash. */
  function collidingIds(): [string, string] {
    const seen = new Map<number, string>();
    for (let i = 0; ; i++) {
      const id = `cmd-${i}`;
      const other = seen.get(hashOf(id));
      if (other !== undefined) return [other, id];
      seen.set(hashOf(id), id);
    }
  }

  it('carries recent commands by hash; the destination reads their ids from the store once, when a hash matches, and never takes a hash for an id', async () => {
    const [first, second] = collidingIds();
    const { capture, store: sourceStore } = await capturedFrom([1, 2], [first, 'c2']);
    expect(capture.recentCommands).to.deep.equal({ hashes: [hashOf(first), hashOf('c2')], versions: [1, 2] });
    const { host, store, coordinator } = destination();
    await copyEvents(sourceStore, store);
    expect(await coordinator.handleMigrationRequest({ kind: 'migrate', type: 'account', id: 'acc', from: 'a', epoch: 2, ...capture })).to.deep.equal({ kind: 'ack', installed: true });
    const read = sinon.spy(store, 'read');
    // A new command whose hash is that of a carried one: the store tells it apart.
    const fresh = await host.dispatch('account', 'acc', { type: 'DEPOSIT', amount: 5 }, second);
    expect(fresh).to.include({ accepted: true, duplicate: false, version: 3 });
    expect(read.callCount).to.equal(1);
    expect(await host.dispatch('account', 'acc', { type: 'DEPOSIT', amount: 1 }, first)).to.include({ duplicate: true, version: 1 });
    expect(await host.dispatch('account', 'acc', { type: 'DEPOSIT', amount: 2 }, 'c2')).to.include({ duplicate: true, version: 2 });
    expect(await host.dispatch('account', 'acc', { type: 'DEPOSIT', amount: 5 }, second)).to.include({ duplicate: true, version: 3 });
    expect(read.callCount).to.equal(1);
    expect((await host.dispatch('account', 'acc', undefined, undefined)).snapshot.context.balance).to.equal(8);
    await host.close();
  });

  it('still installs recent commands carried as ids (a source from before hashes), answering retries without the store', async () => {
    const { capture, store: sourceStore } = await capturedFrom([1, 2, 3]);
    const { host, store, coordinator } = destination();
    await copyEvents(sourceStore, store);
    const legacy = { ...capture, recentCommands: { ids: ['c1', 'c2', 'c3'], versions: [1, 2, 3] } };
    expect(await coordinator.handleMigrationRequest({ kind: 'migrate', type: 'account', id: 'acc', from: 'a', epoch: 2, ...legacy })).to.deep.equal({ kind: 'ack', installed: true });
    const read = sinon.spy(store, 'read');
    expect(await host.dispatch('account', 'acc', { type: 'DEPOSIT', amount: 2 }, 'c2')).to.include({ duplicate: true, version: 2 });
    expect(read.callCount).to.equal(0);
    await host.close();
  });

  it('fails only the commands waiting on an unreadable store to resolve carried ids; the actor keeps serving and resolves on the next try', async () => {
    const { capture, store: sourceStore } = await capturedFrom([1, 2, 3]);
    const { host, store, coordinator } = destination();
    await copyEvents(sourceStore, store);
    await coordinator.handleMigrationRequest({ kind: 'migrate', type: 'account', id: 'acc', from: 'a', epoch: 2, ...capture });
    const read = sinon.stub(store, 'read').callsFake(() => {
      throw new Error('store down');
    });
    let failure: unknown;
    await host.dispatch('account', 'acc', { type: 'DEPOSIT', amount: 3 }, 'c3').catch((error: unknown) => (failure = error));
    expect(failure).to.be.instanceOf(Error).with.property('message', 'store down');
    expect(await host.dispatch('account', 'acc', { type: 'DEPOSIT', amount: 4 }, undefined)).to.include({ accepted: true, version: 4 });
    read.restore();
    expect(await host.dispatch('account', 'acc', { type: 'DEPOSIT', amount: 3 }, 'c3')).to.include({ duplicate: true, version: 3 });
    expect((await host.dispatch('account', 'acc', undefined, undefined)).snapshot.context.balance).to.equal(10);
    await host.close();
  });

  it('saves no snapshot while carried ids are unresolved, so a snapshot always holds every remembered id', async () => {
    const { capture, store: sourceStore } = await capturedFrom([1, 2, 3]);
    const { host, store, coordinator } = destination({ snapshotEvery: 1 });
    await copyEvents(sourceStore, store);
    await coordinator.handleMigrationRequest({ kind: 'migrate', type: 'account', id: 'acc', from: 'a', epoch: 2, ...capture });
    const save = sinon.spy(store, 'saveSnapshot');
    await host.dispatch('account', 'acc', { type: 'DEPOSIT', amount: 4 }, 'c4');
    expect(save.callCount).to.equal(0);
    expect(await host.dispatch('account', 'acc', { type: 'DEPOSIT', amount: 1 }, 'c1')).to.include({ duplicate: true, version: 1 });
    await host.dispatch('account', 'acc', { type: 'DEPOSIT', amount: 5 }, 'c5');
    expect(save.callCount).to.equal(1);
    expect(save.firstCall.args[1].recentCommands).to.deep.equal([['c1', 1], ['c2', 2], ['c3', 3], ['c4', 4], ['c5', 5]]);
    await host.close();
  });

  it('refuses a version the store does not have, and a corrupt or foreign state; the actor then recovers from the store', async () => {
    const { capture } = await capturedFrom([1, 2, 3]);
    const { host, store, coordinator } = destination();
    await store.append({ type: 'account', id: 'acc' }, [{ type: 'DEPOSIT', amount: 100 }], { expectedVersion: 0 });
    const mismatch = await coordinator.handleMigrationRequest({ kind: 'migrate', type: 'account', id: 'acc', from: 'a', epoch: 2, ...capture });
    expect(mismatch).to.include({ kind: 'nack', retryable: false });
    expect((mismatch as { reason: string }).reason).to.match(/version mismatch/);

    const atOne = { ...capture, version: 1 };
    const foreign = await coordinator.handleMigrationRequest({ kind: 'migrate', type: 'account', id: 'acc', from: 'a', epoch: 2, ...atOne, fingerprint: 'another-machine' });
    expect(foreign).to.include({ kind: 'nack', retryable: false });
    const corrupt = await coordinator.handleMigrationRequest({ kind: 'migrate', type: 'account', id: 'acc', from: 'a', epoch: 2, ...atOne, state: { status: 'active', value: 'no-such-state', context: 7 } });
    expect(corrupt).to.include({ kind: 'nack', retryable: false });
    expect(host.isResident('account', 'acc')).to.equal(false);
    const state = await host.dispatch('account', 'acc', undefined, undefined);
    expect(state.snapshot.context.balance).to.equal(100);
    await host.close();
  });

  it('checks the captured version against what its store already knows, and reads the store only when that lags behind', async () => {
    const { capture, store: sourceStore } = await capturedFrom([1, 2, 3]);
    const copy = async (store: MemoryEventStore) => {
      for await (const e of sourceStore.read({ type: 'account', id: 'acc' })) await store.append({ type: 'account', id: 'acc' }, [e.event], { expectedVersion: e.version - 1, commandIds: [e.commandId] });
    };
    const request: MigrationRequest = { kind: 'migrate', type: 'account', id: 'acc', from: 'a', epoch: 2, ...capture };
    for (const [known, reads, reply] of [
      [3, 0, 'ack'],
      [undefined, 1, 'ack'],
      [2, 1, 'ack'],
      // Known to be past the capture: the store is ahead, no read needed to refuse it.
      [4, 0, 'nack'],
    ] as const) {
      const { host, store, coordinator } = destination();
      await copy(store);
      sinon.stub(store, 'knownVersion').returns(known);
      const version = sinon.spy(store, 'version');
      expect(await coordinator.handleMigrationRequest(request), `known ${known}`).to.include({ kind: reply });
      expect(version.callCount, `known ${known}`).to.equal(reads);
      expect(host.isResident('account', 'acc'), `known ${known}`).to.equal(reply === 'ack');
      await host.close();
    }
  });

  it('refuses an actor of a shard it does not own', async () => {
    const { capture } = await capturedFrom([1]);
    const { shardMap, coordinator, host } = destination();
    shardMap.current = map(['c']);
    const reply = await coordinator.handleMigrationRequest({ kind: 'migrate', type: 'account', id: 'acc', from: 'a', epoch: 2, ...capture });
    expect(reply).to.include({ kind: 'nack' });
    expect(host.isResident('account', 'acc')).to.equal(false);
    await host.close();
  });

  it('answers a batch with one reply per actor, in order, each checked as a lone request would be', async () => {
    const { capture, store: sourceStore } = await capturedFrom([1, 2, 3]);
    const { host, store, coordinator } = destination();
    for await (const e of sourceStore.read({ type: 'account', id: 'acc' })) await store.append({ type: 'account', id: 'acc' }, [e.event], { expectedVersion: e.version - 1, commandIds: [e.commandId] });
    const good: MigrationRequest = { kind: 'migrate', type: 'account', id: 'acc', from: 'a', epoch: 2, ...capture };
    // The store has no 'other' stream: its captured version 3 does not match.
    const mismatched: MigrationRequest = { ...good, id: 'other' };
    const reply = await coordinator.handleMigrationBatch({ kind: 'migrate-batch', actors: [mismatched, good] });
    expect(reply.kind).to.equal('migrated');
    expect(reply.replies).to.have.length(2);
    expect(reply.replies[0]).to.include({ kind: 'nack', retryable: false });
    expect(reply.replies[1]).to.deep.equal({ kind: 'ack', installed: true });
    expect(host.isResident('account', 'acc')).to.equal(true);
    expect(host.isResident('account', 'other')).to.equal(false);
    await host.close();
  });

  it('looks for a newer map once per batch, not once per actor', async () => {
    const { capture, store: sourceStore } = await capturedFrom([1, 2, 3]);
    const { host, store, shardMap, coordinator } = destination();
    for await (const e of sourceStore.read({ type: 'account', id: 'acc' })) await store.append({ type: 'account', id: 'acc' }, [e.event], { expectedVersion: e.version - 1, commandIds: [e.commandId] });
    const refresh = sinon.spy(shardMap, 'refresh');
    // Sent in epoch 3 while this node is still at 2 (it owns every shard either way).
    const request: MigrationRequest = { kind: 'migrate', type: 'account', id: 'acc', from: 'a', epoch: 3, ...capture };
    const reply = await coordinator.handleMigrationBatch({ kind: 'migrate-batch', actors: [request, { ...request, id: 'x' }, { ...request, id: 'y' }] });
    expect(refresh.callCount).to.equal(1);
    expect(reply.replies.map((r) => r.kind)).to.deep.equal(['ack', 'nack', 'nack']);
    await host.close();
  });

  it('checks at most 16 actors of a batch against the store at once', async () => {
    const { capture } = await capturedFrom([1, 2, 3]);
    const { host, coordinator } = destination();
    // Nothing known without a round trip: every actor's check reads the store.
    sinon.stub(host, 'knownStoreVersion').returns(undefined);
    let reading = 0;
    let mostAtOnce = 0;
    sinon.stub(host, 'storeVersion').callsFake(async () => {
      mostAtOnce = Math.max(mostAtOnce, ++reading);
      await new Promise((r) => setTimeout(r, 5));
      reading--;
      return 0;
    });
    const request: MigrationRequest = { kind: 'migrate', type: 'account', id: 'acc', from: 'a', epoch: 2, ...capture };
    const reply = await coordinator.handleMigrationBatch({ kind: 'migrate-batch', actors: Array.from({ length: 40 }, (_, i) => ({ ...request, id: `acc-${i}` })) });
    expect(mostAtOnce).to.equal(16);
    // The store is at 0, not at the captured version: each one refused, in order.
    expect(reply.replies).to.have.length(40);
    expect(reply.replies.every((r) => r.kind === 'nack' && /version mismatch/.test(r.reason))).to.equal(true);
    await host.close();
  });

  it('forwards commands for an incoming actor to its source until the actor is installed or its shard is done', async () => {
    const { coordinator, shardMap, host, store } = destination({ holdMs: 10_000 });
    const owners = new Array(4).fill('b');
    const shard = shardOf('acc', 4);
    const other = ['x-1', 'x-2', 'x-3', 'x-4', 'x-5', 'x-6', 'x-7', 'x-8'].find((id) => shardOf(id, 4) !== shard)!;
    const before = [...owners];
    before[shard] = 'a';
    expect(coordinator.inTransit('account', 'acc')).to.equal(undefined);
    shardMap.current = map(owners, 3);
    coordinator.onMapChange(map(before, 2), map(owners, 3));
    expect(coordinator.inTransit('account', 'acc')).to.equal('a');
    expect(coordinator.inTransit('account', other)).to.equal(undefined);
    // Installed here: served here.
    await store.append({ type: 'account', id: 'acc' }, [{ type: 'DEPOSIT', amount: 1 }], { expectedVersion: 0 });
    await host.dispatch('account', 'acc', undefined, undefined);
    expect(coordinator.inTransit('account', 'acc')).to.equal(undefined);
    expect(coordinator.inTransit('account', 'acc-2')).to.equal(shardOf('acc-2', 4) === shard ? 'a' : undefined);
    coordinator.handleShardDone({ kind: 'shard-done', shard, epoch: 3, from: 'a', ok: true });
    expect(coordinator.inTransit('account', 'acc-2')).to.equal(undefined);
    await host.close();
  });

  it('any node: names the previous owner of a moving shard until that owner reports it done, its hold ends or it fails', async () => {
    const { coordinator, shardMap, host } = destination({ holdMs: 50 });
    // Seen from b, a bystander: shard 1 moves from a to d, shard 2 from c to d.
    shardMap.current = map(['b', 'd', 'd', 'b'], 3);
    coordinator.onMapChange(map(['b', 'a', 'c', 'b'], 2), map(['b', 'd', 'd', 'b'], 3));
    expect(coordinator.previousOwner(1)).to.equal('a');
    expect(coordinator.previousOwner(2)).to.equal('c');
    expect(coordinator.previousOwner(0)).to.equal(undefined);
    coordinator.handleShardDone({ kind: 'shard-done', shard: 1, epoch: 3, from: 'a', ok: true });
    expect(coordinator.previousOwner(1)).to.equal(undefined);
    coordinator.sourceFailed('c');
    expect(coordinator.previousOwner(2)).to.equal(undefined);
    coordinator.onMapChange(map(['b', 'd', 'd', 'b'], 3), map(['b', 'd', 'a', 'b'], 4));
    expect(coordinator.previousOwner(2)).to.equal('d');
    await new Promise((r) => setTimeout(r, 80));
    expect(coordinator.previousOwner(2)).to.equal(undefined);
    await host.close();
  });

  it('source side: hands over shard by shard and reports each one done to every owner of the new map', async () => {
    const { host } = await residentAccounts(24);
    const transport = new MemoryTransport();
    const log: string[] = [];
    const serve = (node: string) =>
      transport.serve(node, async (payload) => {
        const message = decode(payload, isNodeRequest, 'request');
        if (message.kind === 'migrate') log.push(`migrate ${shardOf(message.id, 4)}`);
        if (message.kind === 'migrate-batch') for (const actor of message.actors) log.push(`migrate ${shardOf(actor.id, 4)}`);
        if (message.kind === 'shard-done') log.push(`${node} done ${message.shard}`);
        return installEverything(message);
      });
    for (const node of ['b', 'c']) await serve(node);
    // a keeps shard 0; shards 1 and 3 go to b, 2 to c; b leads.
    const shardMap = { current: { ...map(['a', 'b', 'c', 'b'], 3), leader: 'b' }, refresh: async () => undefined };
    const coordinator = new MigrationCoordinator({ nodeId: 'a', host, transport, shardMap, isLive: () => true, maxPayload: 1 << 20, concurrency: 1 });
    coordinator.onMapChange(map(['a', 'a', 'a', 'a'], 2), shardMap.current);
    expect(coordinator.previousOwner(2)).to.equal('a');
    await eventually(() => coordinator.counts(), (c) => c.running === 0 && c.completed > 0);
    await eventually(() => log.filter((l) => l.includes('done')).length, (n) => n === 6);
    const migrated = log.filter((l) => l.startsWith('migrate')).map((l) => Number(l.split(' ')[1]));
    expect(migrated).to.have.length(24 - host.residentsWhere(() => true).length);
    expect(migrated).to.deep.equal([...migrated].sort((x, y) => x - y));
    for (const shard of [1, 2, 3]) for (const node of ['b', 'c']) expect(log).to.include(`${node} done ${shard}`);
    expect(coordinator.previousOwner(2)).to.equal(undefined);
    await coordinator.close();
    await host.close();
    await transport.close();
  });

  it('source side: reports a shard done again while the report times out (a lost report would keep the leader’s plan open)', async () => {
    const { host } = await residentAccounts(2);
    const transport = new MemoryTransport();
    let reports = 0;
    await transport.serve('b', async (payload) => {
      const message = decode(payload, isNodeRequest, 'request');
      // The first report is never answered: the source's request times out.
      if (message.kind === 'shard-done' && ++reports === 1) return new Promise<never>(() => undefined);
      return installEverything(message);
    });
    const shardMap = { current: { ...map(['b'], 3), leader: 'b' }, refresh: async () => undefined };
    const coordinator = new MigrationCoordinator({ nodeId: 'a', host, transport, shardMap, isLive: () => true, maxPayload: 1 << 20, transferTimeoutMs: 30 });
    await coordinator.handleRebalanceRequest({ epoch: 3, moves: [{ shard: 0, to: 'b' }] });
    await eventually(() => reports, (n) => n === 2, 2_000, 'the shard reported again after a timeout');
    expect(coordinator.counts()).to.deep.equal({ running: 0, completed: 2, failed: 0 });
    await coordinator.close();
    await host.close();
    await transport.close();
  });

  it('source side: runs 32 migrations at once by default, and no more', async () => {
    const { host } = await residentAccounts(48);
    const transport = new MemoryTransport();
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let waiting = 0;
    let mostAtOnce = 0;
    await transport.serve('b', async (payload) => {
      const message = decode(payload, isNodeRequest, 'request');
      if (message.kind !== 'migrate-batch') return installEverything(message);
      // Actors waiting for their transfer, in batches of 16 (the default batchSize).
      expect(message.actors).to.have.length(16);
      waiting += message.actors.length;
      mostAtOnce = Math.max(mostAtOnce, waiting);
      await released;
      waiting -= message.actors.length;
      return installEverything(message);
    });
    const shardMap = { current: map(['b'], 3), refresh: async () => undefined };
    const coordinator = new MigrationCoordinator({ nodeId: 'a', host, transport, shardMap, isLive: () => true, maxPayload: 1 << 20, maxPerSecond: Infinity, transferTimeoutMs: 60_000 });
    const handOver = coordinator.handleRebalanceRequest({ epoch: 3, moves: [{ shard: 0, to: 'b' }] });
    await eventually(() => waiting, (n) => n === 32, 3_000, '32 actors waiting for their transfer');
    await new Promise((r) => setTimeout(r, 20));
    expect(mostAtOnce).to.equal(32);
    release();
    await handOver;
    expect(coordinator.counts()).to.deep.equal({ running: 0, completed: 48, failed: 0 });
    await coordinator.close();
    await host.close();
    await transport.close();
  });

  it('source side: sends the actors of one shard in batches of batchSize, each with its own machine and outcome', async () => {
    const { host, ids } = await residentAccounts(20);
    const transport = new MemoryTransport();
    const sizes: number[] = [];
    const reports: boolean[] = [];
    await transport.serve('b', async (payload) => {
      const message = decode(payload, isNodeRequest, 'request');
      if (message.kind === 'shard-done') {
        reports.push(message.ok);
        return encode({ kind: 'ack', installed: false });
      }
      if (message.kind !== 'migrate-batch') throw new Error(`expected batches, got ${message.kind}`);
      sizes.push(message.actors.length);
      // acc-3 is refused for good; every other actor is installed.
      return encode({ kind: 'migrated', replies: message.actors.map((a) => (a.id === 'acc-3' ? { kind: 'nack', reason: 'refused', retryable: false } : { kind: 'ack', installed: true })) });
    });
    const shardMap = { current: map(['b'], 3), refresh: async () => undefined };
    const outcomes: ActorMigration[] = [];
    const coordinator = new MigrationCoordinator({ nodeId: 'a', host, transport, shardMap, isLive: () => true, maxPayload: 1 << 20, maxPerSecond: Infinity, batchSize: 8, onMigration: (m) => outcomes.push(m) });
    await coordinator.handleRebalanceRequest({ epoch: 3, moves: [{ shard: 0, to: 'b' }] });
    expect(sizes).to.deep.equal([8, 8, 4]);
    expect(coordinator.counts()).to.deep.equal({ running: 0, completed: 19, failed: 1 });
    expect(outcomes.map((m) => m.actor.id).sort()).to.deep.equal([...ids].sort());
    expect(outcomes.find((m) => m.actor.id === 'acc-3')).to.include({ status: 'Failed', error: 'refused', attempts: 1 });
    // One failed actor marks its shard not ok (it recovers from the store); none stays resident here.
    await eventually(() => reports, (r) => r.length === 1);
    expect(reports).to.deep.equal([false]);
    expect(host.residentsWhere(() => true)).to.deep.equal([]);
    await coordinator.close();
    await host.close();
    await transport.close();
  });

  it('source side: retries only the actors of a batch still transferring, and splits a batch over max_payload', async () => {
    const { host } = await residentAccounts(6);
    const transport = new MemoryTransport();
    const sent: string[][] = [];
    let refusedOnce = false;
    await transport.serve('b', async (payload) => {
      const message = decode(payload, isNodeRequest, 'request');
      if (message.kind === 'shard-done') return encode({ kind: 'ack', installed: false });
      const batch = message.kind === 'migrate-batch' ? message.actors : message.kind === 'migrate' ? [message] : [];
      sent.push(batch.map((a) => a.id));
      // acc-1 is refused once with a retryable reason, then installed like the rest.
      return encode({
        kind: 'migrated',
        replies: batch.map((a) => (a.id === 'acc-1' && !refusedOnce && (refusedOnce = true) ? { kind: 'nack', reason: 'not yet', retryable: true } : { kind: 'ack', installed: true })),
      });
    });
    // Room for about three captured accounts per request: the batch of six goes as two of three.
    const one = encode({ kind: 'migrate-batch', actors: [{ kind: 'migrate', type: 'account', id: 'acc-0', from: 'a', epoch: 3, ...host.capture('account', 'acc-0')! }] }).length;
    const shardMap = { current: map(['b'], 3), refresh: async () => undefined };
    const coordinator = new MigrationCoordinator({ nodeId: 'a', host, transport, shardMap, isLive: () => true, maxPayload: one * 3 + 50, maxPerSecond: Infinity, batchSize: 6 });
    await coordinator.handleRebalanceRequest({ epoch: 3, moves: [{ shard: 0, to: 'b' }] });
    expect(sent.slice(0, 2).map((ids) => ids.length)).to.deep.equal([3, 3]);
    // The retry carries acc-1 alone, as a lone request.
    expect(sent.slice(2)).to.deep.equal([['acc-1']]);
    expect(coordinator.counts()).to.deep.equal({ running: 0, completed: 6, failed: 0 });
    await coordinator.close();
    await host.close();
    await transport.close();
  });

  it('source side: an actor whose state the codec refuses fails alone; the rest of its batch travels', async () => {
    const { host } = await residentAccounts(5);
    const capture = host.capture.bind(host);
    sinon.stub(host, 'capture').callsFake((type: string, id: string) => {
      const captured = capture(type, id);
      // superjson will not walk a prototype key beside a Date: this state cannot be sent.
      return captured && id === 'acc-3' ? { ...captured, state: { ...(captured.state as object), at: new Date(0), constructor: { polluted: true } } } : captured;
    });
    const transport = new MemoryTransport();
    const sent: string[] = [];
    await transport.serve('b', async (payload) => {
      const message = decode(payload, isNodeRequest, 'request');
      if (message.kind === 'migrate-batch') sent.push(...message.actors.map((a) => a.id));
      if (message.kind === 'migrate') sent.push(message.id);
      return installEverything(message);
    });
    const shardMap = { current: map(['b'], 3), refresh: async () => undefined };
    const outcomes: ActorMigration[] = [];
    const coordinator = new MigrationCoordinator({ nodeId: 'a', host, transport, shardMap, isLive: () => true, maxPayload: 1 << 20, maxPerSecond: Infinity, onMigration: (m) => outcomes.push(m) });
    await coordinator.handleRebalanceRequest({ epoch: 3, moves: [{ shard: 0, to: 'b' }] });
    expect(sent.sort()).to.deep.equal(['acc-0', 'acc-1', 'acc-2', 'acc-4']);
    expect(coordinator.counts()).to.deep.equal({ running: 0, completed: 4, failed: 1 });
    const failed = outcomes.find((m) => m.status === 'Failed')!;
    expect(failed.actor.id).to.equal('acc-3');
    expect(failed.error).to.match(/cannot encode migration of account\/acc-3/);
    await host.close();
    await transport.close();
  });

  it('source side: keeps concurrency actors in flight however small the batches, and never more', async () => {
    // One resident actor in each of 64 shards: batches of one.
    const shards = 64;
    const store = new MemoryEventStore();
    const host = new ActorHost({ namespace: 'bank', nodeId: 'a', actors: { account }, store, bus: new LocalEventBus('bank'), passivateAfterMs: 0 });
    const ids: string[] = [];
    const taken = new Set<number>();
    for (let i = 0; ids.length < shards; i++) {
      const shard = shardOf(`acc-${i}`, shards);
      if (taken.has(shard)) continue;
      taken.add(shard);
      ids.push(`acc-${i}`);
      await host.dispatch('account', `acc-${i}`, { type: 'DEPOSIT', amount: 1 }, `c-${i}`);
    }
    await host.whenIdle('account', ids[0]);
    const transport = new MemoryTransport();
    let waiting = 0;
    let mostAtOnce = 0;
    await transport.serve('b', async (payload) => {
      const message = decode(payload, isNodeRequest, 'request');
      if (message.kind === 'migrate' || message.kind === 'migrate-batch') {
        const count = message.kind === 'migrate' ? 1 : message.actors.length;
        waiting += count;
        mostAtOnce = Math.max(mostAtOnce, waiting);
        await new Promise((r) => setTimeout(r, 20));
        waiting -= count;
      }
      return installEverything(message);
    });
    const owners = Array.from({ length: shards }, () => 'b');
    const shardMap = { current: map(owners, 3), refresh: async () => undefined };
    const run = async (concurrency: number, batchSize: number) => {
      mostAtOnce = 0;
      const coordinator = new MigrationCoordinator({ nodeId: 'a', host, transport, shardMap, isLive: () => true, maxPayload: 1 << 20, maxPerSecond: Infinity, concurrency, batchSize });
      await coordinator.handleRebalanceRequest({ epoch: 3, moves: owners.map((_, shard) => ({ shard, to: 'b' })) });
      return coordinator.counts();
    };
    expect(await run(32, 16)).to.deep.equal({ running: 0, completed: shards, failed: 0 });
    expect(mostAtOnce).to.equal(32);
    // Fewer in flight than a batch holds: batches shrink to fit.
    for (const id of ids) await host.dispatch('account', id, { type: 'DEPOSIT', amount: 1 }, `again-${id}`);
    await host.whenIdle('account', ids[0]);
    expect(await run(2, 16)).to.deep.equal({ running: 0, completed: shards, failed: 0 });
    expect(mostAtOnce).to.equal(2);
    await host.close();
    await transport.close();
  });

  it('source side: one actor of a batch that cannot be captured fails alone; each actor ends as soon as it is acked', async () => {
    const { host } = await residentAccounts(3);
    const capture = host.capture.bind(host);
    sinon.stub(host, 'capture').callsFake((type: string, id: string) => {
      if (id === 'acc-2') throw new Error('capture broke');
      return capture(type, id);
    });
    const transport = new MemoryTransport();
    const residentWhenRetried: boolean[] = [];
    let refusals = 0;
    await transport.serve('b', async (payload) => {
      const message = decode(payload, isNodeRequest, 'request');
      if (message.kind === 'shard-done') return installEverything(message);
      const batch = message.kind === 'migrate-batch' ? message.actors : message.kind === 'migrate' ? [message] : [];
      if (batch.length === 1) residentWhenRetried.push(host.isResident('account', 'acc-0'));
      // acc-1 is refused (retryably) twice: it keeps transferring while acc-0 is done.
      return encode({
        kind: 'migrated',
        replies: batch.map((a) => (a.id === 'acc-1' && refusals++ < 2 ? { kind: 'nack', reason: 'busy', retryable: true } : { kind: 'ack', installed: true })),
      });
    });
    const shardMap = { current: map(['b'], 3), refresh: async () => undefined };
    const outcomes: ActorMigration[] = [];
    const journal: MigrationRecord[] = [];
    const coordinator = new MigrationCoordinator({
      nodeId: 'a',
      host,
      transport,
      shardMap,
      isLive: () => true,
      maxPayload: 1 << 20,
      maxPerSecond: Infinity,
      onMigration: (m) => outcomes.push(m),
      journal: { record: (r: MigrationRecord) => journal.push(r) } as unknown as Journal<MigrationRecord>,
    });
    await coordinator.handleRebalanceRequest({ epoch: 3, moves: [{ shard: 0, to: 'b' }] });
    expect(Object.fromEntries(outcomes.map((m) => [m.actor.id, m.status]))).to.deep.equal({ 'acc-0': 'Deleted', 'acc-1': 'Deleted', 'acc-2': 'Failed' });
    expect(outcomes.find((m) => m.actor.id === 'acc-2')!.error).to.equal('capture broke');
    // acc-0 was dropped here before acc-1's retries went out, and ended before acc-1 did.
    expect(residentWhenRetried).to.deep.equal([false, false]);
    expect(outcomes.map((m) => m.actor.id)).to.deep.equal(['acc-2', 'acc-0', 'acc-1']);
    // Every machine's journal ends with its final event: nothing after it.
    for (const id of ['acc-0', 'acc-1', 'acc-2']) {
      const steps = journal.filter((r) => r.type === 'STEP' && r.key.endsWith(`:${id}`)).map((r) => (r.type === 'STEP' ? r.event.type : ''));
      expect(steps[steps.length - 1], id).to.equal(id === 'acc-2' ? 'FAIL' : 'DELETED');
    }
    expect(host.residentsWhere(() => true)).to.deep.equal([]);
    await host.close();
    await transport.close();
  });

  it('source side: serves forwarded commands until the hand-over starts, holds them during it (refusing beyond maxBuffered), then sends them to the new owner', async () => {
    const store = new MemoryEventStore();
    const host = new ActorHost({ namespace: 'bank', nodeId: 'a', actors: { account }, store, bus: new LocalEventBus('bank'), passivateAfterMs: 0 });
    await host.dispatch('account', 'acc', { type: 'DEPOSIT', amount: 1 }, 'c1');
    await host.whenIdle('account', 'acc');
    const transport = new MemoryTransport();
    let answer!: () => void;
    let requested!: () => void;
    const transferred = new Promise<void>((resolve) => (answer = resolve));
    const transferring = new Promise<void>((resolve) => (requested = resolve));
    await transport.serve('b', async () => {
      requested();
      await transferred;
      return encode({ kind: 'ack', installed: true });
    });
    const shardMap = { current: map(['b'], 3), refresh: async () => undefined };
    const coordinator = new MigrationCoordinator({ nodeId: 'a', host, transport, shardMap, isLive: () => true, maxPayload: 1 << 20, maxBuffered: 2 });
    expect(coordinator.admitHandoff('account', 'acc')).to.equal(true);
    expect(coordinator.admitHandoff('account', 'not-here')).to.equal(false);
    const handOver = coordinator.handleRebalanceRequest({ epoch: 3, moves: [{ shard: 0, to: 'b' }] });
    await transferring;
    let moved = 0;
    const held = [0, 1].map(() => Promise.resolve(coordinator.admitHandoff('account', 'acc')).then((v) => (moved += v ? 0 : 1)));
    expect(() => coordinator.admitHandoff('account', 'acc')).to.throw(MigrationBufferFullError);
    await new Promise((r) => setTimeout(r, 20));
    expect(moved).to.equal(0);
    answer();
    await handOver;
    await Promise.all(held);
    expect(moved).to.equal(2);
    expect(coordinator.admitHandoff('account', 'acc')).to.equal(false);
    await host.close();
    await transport.close();
  });

  it('is event-sourced: a source restarted under the same id closes the migrations its last run left unfinished', async () => {
    const store = new MemoryEventStore();
    const stream = { type: '$natstate.migrations', id: 'a' };
    const journal = () => new Journal<MigrationRecord>({ store, stream, onError: (e) => expect.fail(e.message) });
    const input = (actorId: string) => ({ actorType: 'account', actorId, from: 'a', to: 'b', planId: '4:a', epoch: 4 });
    // What a crashed run wrote: one migration done, one cut off mid-transfer.
    const crashed = journal();
    await crashed.open();
    crashed.record({ type: 'START', key: 'done', input: input('acc-1') });
    for (const event of [{ type: 'PAUSE' }, { type: 'DRAINED' }, { type: 'CAPTURED', version: 3 }, { type: 'ACK' }, { type: 'DELETED' }] as const) crashed.record({ type: 'STEP', key: 'done', event });
    crashed.record({ type: 'START', key: 'cut', input: input('acc-2') });
    for (const event of [{ type: 'PAUSE' }, { type: 'DRAINED' }, { type: 'CAPTURED', version: 9 }] as const) crashed.record({ type: 'STEP', key: 'cut', event });
    await crashed.flush();

    const restarted = () => {
      const host = new ActorHost({ namespace: 'bank', nodeId: 'a', actors: { account }, store, bus: new LocalEventBus('bank'), passivateAfterMs: 0 });
      const shardMap = { current: map(['a']), refresh: async () => undefined };
      return { host, coordinator: new MigrationCoordinator({ nodeId: 'a', host, transport: new MemoryTransport(), shardMap, isLive: () => true, maxPayload: 1 << 20, journal: journal() }) };
    };
    const first = restarted();
    const closed = await first.coordinator.recover();
    expect(closed.map((m) => ({ id: m.actor.id, status: m.status, epoch: m.epoch }))).to.deep.equal([{ id: 'acc-2', status: 'Failed', epoch: 4 }]);
    expect(closed[0].error).to.match(/restarted/);
    await first.host.close();
    // Closed for good: the next restart has nothing left to clean up.
    const second = restarted();
    expect(await second.coordinator.recover()).to.deep.equal([]);
    await second.host.close();
  });

  it('source side: replays what another writer stored since the actor was loaded before it captures it', async () => {
    const store = new MemoryEventStore();
    const host = new ActorHost({ namespace: 'bank', nodeId: 'a', actors: { account }, store, bus: new LocalEventBus('bank'), passivateAfterMs: 0 });
    for (const amount of [1, 2, 3]) await host.dispatch('account', 'acc', { type: 'DEPOSIT', amount }, `c${amount}`);
    await host.whenIdle('account', 'acc');
    // Another node appended version 4 and said so on the bus.
    const foreign = await store.append({ type: 'account', id: 'acc' }, [{ type: 'DEPOSIT', amount: 100 }], { expectedVersion: 3 });
    host.noteForeignCommit({ namespace: 'bank', type: 'account', id: 'acc', version: 4, sequence: foreign.sequence, events: [], origin: 'x' } as never);

    const transport = new MemoryTransport();
    const received: MigrationRequest[] = [];
    await transport.serve('b', async (payload) => {
      received.push(decode(payload, isNodeRequest, 'request') as MigrationRequest);
      return encode({ kind: 'ack', installed: true });
    });
    const shardMap = { current: map(['b'], 3), refresh: async () => undefined };
    const coordinator = new MigrationCoordinator({ nodeId: 'a', host, transport, shardMap, isLive: () => true, maxPayload: 1 << 20 });
    await coordinator.handleRebalanceRequest({ epoch: 3, moves: [{ shard: 0, to: 'b' }] });
    const migrate = received.find((r) => r.kind === 'migrate');
    expect(migrate).to.include({ version: 4, type: 'account', id: 'acc' });
    expect((migrate!.state as { context: { balance: number } }).context.balance).to.equal(106);
    expect(coordinator.status()).to.include({ completed: 1, failed: 0 });
    expect(host.isResident('account', 'acc')).to.equal(false);
    await host.close();
    await transport.close();
  });
});
