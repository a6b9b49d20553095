import { expect } from 'chai';
import sinon from 'sinon';
import { MemoryEventStore } from '../../lib/eventstore/memory.js';
import { RebalanceSupervisor, REBALANCE_STREAM } from '../../lib/cluster/rebalance-supervisor.js';
import type { RebalanceMove } from '../../machines/rebalance.machine.js';

const moves: RebalanceMove[] = [
  { shard: 1, from: 'a', to: 'b' },
  { shard: 2, from: 'a', to: 'c' },
  { shard: 3, from: null, to: 'b' },
];

function supervisor(store: MemoryEventStore, options: { live?: string[]; planTimeoutMs?: number; resumeGraceMs?: number; nodeId?: string } = {}) {
  const live = new Set(options.live ?? ['a', 'b', 'c']);
  /** The newest shard map the leader knows (set by a spec). */
  const map: { current?: { epoch: number; owners: (string | null)[] } } = {};
  const ready = sinon.spy();
  const errors: Error[] = [];
  const sup = new RebalanceSupervisor({
    nodeId: options.nodeId ?? 'leader',
    store,
    isLive: (id) => live.has(id),
    currentMap: () => map.current,
    planTimeoutMs: options.planTimeoutMs,
    resumeGraceMs: options.resumeGraceMs,
    onReady: ready,
    onError: (e) => errors.push(e),
  });
  return { sup, ready, errors, live, map };
}

const until = async (ok: () => boolean, ms = 2000) => {
  for (const deadline = Date.now() + ms; !ok(); ) {
    if (Date.now() > deadline) throw new Error('condition not met');
    await new Promise((r) => setTimeout(r, 5));
  }
};

/** Reports both moved shards of `moves` done for `epoch` and waits until the plan is committed. */
async function finishPlan(sup: RebalanceSupervisor, epoch: number): Promise<void> {
  sup.shardDone({ shard: 1, epoch, ok: true });
  sup.shardDone({ shard: 2, epoch, ok: true });
  await until(() => sup.status === 'Idle');
}

/** A leader published plan `epoch` of `moves`, its journal was written, and it died before any shard was reported. */
async function leaderDiedMigrating(store: MemoryEventStore, epoch: number): Promise<void> {
  const old = supervisor(store, { nodeId: 'old' });
  await old.sup.ready();
  old.sup.planned(epoch, moves);
  await new Promise((r) => setTimeout(r, 20));
  old.sup.stop();
}

describe('RebalanceSupervisor', () => {
  it('waits in Migrating until every moved shard is reported, settles sourceless shards at once, then commits', async () => {
    const store = new MemoryEventStore();
    const { sup, ready, errors } = supervisor(store);
    await sup.ready();
    expect(sup.status).to.equal('Idle');
    sup.planned(5, moves);
    // Shard 3 had no live source: nothing to hand over.
    expect(sup.view()).to.include({ status: 'Migrating', epoch: 5, remaining: 2 });
    sup.shardDone({ shard: 1, epoch: 4, ok: true }); // another epoch: ignored
    sup.shardDone({ shard: 9, epoch: 5, ok: true }); // not in the plan: ignored
    expect(sup.view()?.remaining).to.equal(2);
    sup.shardDone({ shard: 1, epoch: 5, ok: true });
    ready.resetHistory();
    sup.shardDone({ shard: 2, epoch: 5, ok: false });
    await until(() => sup.status === 'Idle');
    expect(sup.view()).to.include({ lastEpoch: 5, remaining: 0 });
    expect(ready.called).to.equal(true);
    expect(errors).to.deep.equal([]);
  });

  it('keeps a membership change for right after the running plan instead of overlapping it', async () => {
    const store = new MemoryEventStore();
    const { sup, ready } = supervisor(store);
    await sup.ready();
    sup.planned(2, moves.slice(0, 1));
    sup.change();
    expect(sup.status).to.equal('Migrating');
    ready.resetHistory();
    sup.shardDone({ shard: 1, epoch: 2, ok: true });
    await until(() => sup.status === 'Planning');
    expect(ready.called).to.equal(true);
  });

  it('takes reports that arrive before the plan is recorded (a fast source sees the map first)', async () => {
    const store = new MemoryEventStore();
    const { sup } = supervisor(store);
    await sup.ready();
    sup.shardDone({ shard: 1, epoch: 1, ok: true });
    sup.shardDone({ shard: 2, epoch: 1, ok: true });
    sup.planned(1, moves);
    await until(() => sup.status === 'Idle');
    expect(sup.view()?.lastEpoch).to.equal(1);
  });

  it('settles the shards of a source that died, and ends a plan past planTimeoutMs', async () => {
    const store = new MemoryEventStore();
    const { sup, live } = supervisor(store, { planTimeoutMs: 30 });
    await sup.ready();
    sup.planned(3, moves);
    live.delete('a');
    sup.tick();
    await until(() => sup.status === 'Idle');
    expect(sup.view()?.lastEpoch).to.equal(3);

    live.add('a');
    sup.planned(4, moves);
    expect(sup.status).to.equal('Migrating');
    sup.tick();
    expect(sup.status).to.equal('Migrating');
    await new Promise((r) => setTimeout(r, 40));
    sup.tick();
    await until(() => sup.status === 'Idle');
    expect(sup.view()?.lastEpoch).to.equal(4);
  });

  it('is event-sourced: a new leader replays the journal and picks the unfinished plan up where it stood', async () => {
    const store = new MemoryEventStore();
    const old = supervisor(store, { nodeId: 'old' });
    await old.sup.ready();
    old.sup.planned(7, moves);
    old.sup.shardDone({ shard: 1, epoch: 7, ok: true });
    // Let the journal write behind, then the old leader dies.
    await new Promise((r) => setTimeout(r, 20));
    old.sup.stop();

    const next = supervisor(store, { nodeId: 'new', resumeGraceMs: 30 });
    await next.sup.ready();
    expect(next.sup.view()).to.include({ status: 'Migrating', epoch: 7, remaining: 1 });
    // A report still on its way reaches the new lease holder.
    next.sup.shardDone({ shard: 2, epoch: 7, ok: true });
    await until(() => next.sup.status === 'Idle');
    expect(next.sup.view()?.lastEpoch).to.equal(7);
    expect(await store.version(REBALANCE_STREAM)).to.be.greaterThan(0);

    // And a third leader starts from the checkpoint the second one left.
    const third = supervisor(store, { nodeId: 'third' });
    const read = sinon.spy(store, 'read');
    await third.sup.ready();
    expect(third.sup.view()).to.include({ status: 'Idle', lastEpoch: 7 });
    expect(read.firstCall.args[1]?.fromVersion).to.be.greaterThan(0);
  });

  it('never checkpoints a machine stopped while it commits (a leader that loses its lease or closes meanwhile)', async () => {
    const store = new MemoryEventStore();
    const old = supervisor(store, { nodeId: 'old' });
    await old.sup.ready();
    // Slow writes: the plan's end is still being written when the leader stops.
    const append = store.append.bind(store);
    sinon.stub(store, 'append').callsFake(async (...args) => {
      await new Promise((r) => setTimeout(r, 20));
      return append(...args);
    });
    old.sup.planned(7, moves);
    await finishPlan(old.sup, 7);
    old.sup.stop();
    await new Promise((r) => setTimeout(r, 100));
    const checkpoint = await store.loadSnapshot(REBALANCE_STREAM);
    expect((checkpoint?.state as { snapshot?: { status?: string } } | undefined)?.snapshot?.status ?? 'none').to.not.equal('stopped');
    sinon.restore();

    // The next leader runs a plan to its end.
    const next = supervisor(store, { nodeId: 'new' });
    await next.sup.ready();
    next.sup.planned(8, moves);
    await finishPlan(next.sup, 8);
    expect(next.sup.view()?.lastEpoch).to.equal(8);
  });

  it('resumes from a checkpoint an older version took of a stopped machine', async () => {
    const store = new MemoryEventStore();
    await leaderDiedMigrating(store, 7);
    // What such a checkpoint held: the plan Migrating, with status "stopped".
    const version = await store.version(REBALANCE_STREAM);
    const probe = supervisor(new MemoryEventStore(), { nodeId: 'probe' });
    await probe.sup.ready();
    probe.sup.planned(7, moves);
    const snapshot = { ...((probe.sup as unknown as { actor: { getPersistedSnapshot(): object } }).actor.getPersistedSnapshot()), status: 'stopped' };
    probe.sup.stop();
    await store.saveSnapshot(REBALANCE_STREAM, { version, sequence: 0, fingerprint: 'natstate-journal-1', state: { snapshot }, recentCommands: [], time: Date.now() });

    const next = supervisor(store, { nodeId: 'new' });
    await next.sup.ready();
    expect(next.sup.view()).to.include({ status: 'Migrating', epoch: 7, remaining: 2 });
    await finishPlan(next.sup, 7);
    expect(next.sup.view()?.lastEpoch).to.equal(7);
  });

  it('closes a plan left unfinished by a leader that died, after resumeGraceMs, with what is done', async () => {
    const store = new MemoryEventStore();
    await leaderDiedMigrating(store, 8);
    const next = supervisor(store, { nodeId: 'new', resumeGraceMs: 20 });
    await next.sup.ready();
    expect(next.sup.status).to.equal('Migrating');
    await new Promise((r) => setTimeout(r, 30));
    next.sup.tick();
    await until(() => next.sup.status === 'Idle');
    expect(next.sup.view()?.lastEpoch).to.equal(8);
  });

  it('drops a plan the last leader was still planning when it died (it was never published)', async () => {
    const store = new MemoryEventStore();
    const old = supervisor(store, { nodeId: 'old' });
    await old.sup.ready();
    old.sup.change();
    expect(old.sup.status).to.equal('Planning');
    await new Promise((r) => setTimeout(r, 20));
    old.sup.stop();
    const next = supervisor(store, { nodeId: 'new' });
    await next.sup.ready();
    expect(next.sup.status).to.equal('Idle');
    expect(next.ready.called).to.equal(true);
  });

  it('settles the shards expected from a source that restarted (rejoined): it has nothing of that plan left', async () => {
    const store = new MemoryEventStore();
    const { sup } = supervisor(store);
    await sup.ready();
    sup.planned(6, moves);
    sup.memberJoined('c');
    expect(sup.view()?.remaining).to.equal(2);
    sup.memberJoined('a');
    await until(() => sup.status === 'Idle');
    expect(sup.view()?.lastEpoch).to.equal(6);
  });

  it('settles a shard its source reports done for a later epoch (it read a newer map before the plan\'s)', async () => {
    const store = new MemoryEventStore();
    const { sup } = supervisor(store);
    await sup.ready();
    sup.planned(6, moves);
    sup.shardDone({ shard: 1, epoch: 6, ok: true });
    sup.shardDone({ shard: 2, epoch: 7, ok: true });
    await until(() => sup.status === 'Idle');
    expect(sup.view()?.lastEpoch).to.equal(6);
  });

  it('settles a shard a newer map gave to another node than the plan\'s destination (the move is superseded)', async () => {
    const store = new MemoryEventStore();
    const { sup, map } = supervisor(store);
    await sup.ready();
    sup.planned(6, moves);
    sup.shardDone({ shard: 1, epoch: 6, ok: true });
    // The plan's own map, or a newer one that keeps the move: still waiting for shard 2.
    map.current = { epoch: 6, owners: [null, 'b', 'b', 'b'] };
    sup.tick();
    map.current = { epoch: 7, owners: [null, 'b', 'c', 'b'] };
    sup.tick();
    expect(sup.view()).to.include({ status: 'Migrating', remaining: 1 });
    // Destination c was seen as failed: shard 2 went elsewhere (a map of orphans).
    map.current = { epoch: 8, owners: [null, 'b', 'a', 'b'] };
    sup.tick();
    await until(() => sup.status === 'Idle');
    expect(sup.view()?.lastEpoch).to.equal(6);
  });
});
