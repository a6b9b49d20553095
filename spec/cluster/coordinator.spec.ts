import { expect } from 'chai';
import sinon from 'sinon';
import { decode } from '../../lib/codec/codec.js';
import { isShardMapRecord, type ShardMapRecord } from '../../lib/codec/cluster-records.js';
import { ShardCoordinator, ShardCountMismatchError, type ShardCoordinatorOptions, type ShardPlan } from '../../lib/cluster/coordinator.js';
import { MemoryKV, MemoryKVBucket } from '../../lib/cluster/kv/memory.js';
import { LeaderLease } from '../../lib/cluster/leader-lease.js';
import { Membership, type MembershipEvent } from '../../lib/cluster/membership.js';
import { ShardMapStore, type ShardMap, type ShardMapDraft } from '../../lib/cluster/shard-map.js';
import { Subjects } from '../../lib/subjects.js';
import { mulberry32 } from '../support/random.js';

const SHARDS = 60;
const HEARTBEAT_MS = 100;
const FAILURE_TIMEOUT_MS = 500;
const LEASE_MS = 300;
const RENEW_MS = 100;
const PLAN_INTERVAL_MS = 100;
const subjects = new Subjects('coordinator-spec');

/** Every live node holds floor(S/N) or ceil(S/N) shards, and nobody else holds any. */
function expectBalanced(owners: readonly (string | null)[], nodes: readonly string[]): void {
  const counts = new Map(nodes.map((n) => [n, 0]));
  for (const owner of owners) {
    expect(counts.has(owner as string), `owner ${owner} is not live`).to.equal(true);
    counts.set(owner as string, counts.get(owner as string)! + 1);
  }
  const low = Math.floor(owners.length / nodes.length);
  for (const [node, n] of counts) expect(n, `shards of ${node}`).to.be.within(low, Math.ceil(owners.length / nodes.length));
}

interface TestNode {
  readonly nodeId: string;
  readonly membership: Membership;
  readonly lease: LeaderLease;
  readonly shardMap: ShardMapStore;
  readonly coordinator: ShardCoordinator;
  readonly errors: Error[];
  readonly plans: ShardPlan[];
  startRest(): Promise<void>;
  start(): Promise<void>;
  crash(): Promise<void>;
}

const changedShards = (a: readonly (string | null)[], b: readonly (string | null)[]) => a.flatMap((owner, s) => (owner === b[s] ? [] : [s]));

describe('ShardCoordinator', () => {
  let clock: sinon.SinonFakeTimers;
  let bucket: MemoryKVBucket;
  /** Every shard map written to the bucket, in order. */
  let maps: ShardMapRecord[];
  let nodes: Map<string, TestNode>;

  beforeEach(async () => {
    clock = sinon.useFakeTimers({ now: 7_000_000, toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
    bucket = new MemoryKVBucket();
    maps = [];
    nodes = new Map();
    await new MemoryKV(bucket).watch(subjects.shardMapKey, ({ value }) => value && maps.push(decode(value, isShardMapRecord, 'shard map')));
  });

  afterEach(async () => {
    for (const n of nodes.values()) await n.crash();
    clock.restore();
  });

  function node(
    nodeId: string,
    options: Partial<ShardCoordinatorOptions> = {},
    view: (store: ShardMapStore) => ShardCoordinatorOptions['shardMap'] = (store) => store,
  ): TestNode {
    const kv = new MemoryKV(bucket);
    const errors: Error[] = [];
    const plans: ShardPlan[] = [];
    const onError = (e: Error) => errors.push(e);
    const membership = new Membership({ kv, subjects, nodeId, heartbeatMs: HEARTBEAT_MS, failureTimeoutMs: FAILURE_TIMEOUT_MS, onError });
    const lease = new LeaderLease({ kv, subjects, nodeId, leaseMs: LEASE_MS, renewMs: RENEW_MS, onError });
    const shardMap = new ShardMapStore({ kv, subjects, onError });
    const coordinator = new ShardCoordinator({
      membership,
      lease,
      shardMap: view(shardMap),
      nodeId,
      shardCount: SHARDS,
      planIntervalMs: PLAN_INTERVAL_MS,
      onPlan: (p) => plans.push(p),
      onError,
      ...options,
    });
    const n: TestNode = {
      nodeId,
      membership,
      lease,
      shardMap,
      coordinator,
      errors,
      plans,
      async startRest() {
        await shardMap.start();
        await lease.start();
        coordinator.start();
      },
      async start() {
        await membership.start();
        await n.startRest();
      },
      async crash() {
        coordinator.close();
        await lease.close();
        await membership.close();
        shardMap.close();
        nodes.delete(nodeId);
      },
    };
    nodes.set(nodeId, n);
    return n;
  }

  /** Starts every node's membership first, so the first leader already sees them all. */
  async function cluster(ids: string[], options: Partial<ShardCoordinatorOptions> = {}) {
    const all = ids.map((id) => node(id, options));
    for (const n of all) await n.membership.start();
    for (const n of all) await n.startRest();
    await clock.tickAsync(PLAN_INTERVAL_MS);
    return all;
  }

  const leader = () => [...nodes.values()].find((n) => n.lease.isLeader)!;
  const last = () => maps[maps.length - 1];

  it('three nodes form one balanced map at epoch 1 and leave it alone while nothing changes', async () => {
    await cluster(['a', 'b', 'c']);
    expect(maps).to.have.length(1);
    expect(last()).to.include({ epoch: 1, shardCount: SHARDS, leader: leader().nodeId });
    expectBalanced(last().owners, ['a', 'b', 'c']);
    expect(leader().plans.map((p) => [p.epoch, p.moves.length])).to.deep.equal([[1, SHARDS]]);
    await clock.tickAsync(20 * PLAN_INTERVAL_MS);
    expect(maps).to.have.length(1);
    for (const n of nodes.values()) expect(n.shardMap.current?.epoch).to.equal(1);
    for (const n of nodes.values()) expect(n.errors).to.deep.equal([]);
  });

  it('a fourth node joining gets a new epoch that moves only the shards it takes', async () => {
    await cluster(['a', 'b', 'c']);
    await node('d').start();
    await clock.tickAsync(PLAN_INTERVAL_MS);
    expect(maps.map((m) => m.epoch)).to.deep.equal([1, 2]);
    expectBalanced(last().owners, ['a', 'b', 'c', 'd']);
    const moved = changedShards(maps[0].owners, maps[1].owners);
    expect(moved).to.have.length(SHARDS / 4);
    for (const s of moved) expect(last().owners[s]).to.equal('d');
    const plan = leader().plans.at(-1)!;
    expect(plan.epoch).to.equal(2);
    expect(plan.moves.map((m) => m.shard)).to.deep.equal(moved);
    expect(plan.owners).to.deep.equal(last().owners);
  });

  it('reassigns the shards of a failed node to the live ones, and only those', async () => {
    await cluster(['a', 'b', 'c', 'd']);
    const victim = [...nodes.values()].find((n) => !n.lease.isLeader)!;
    const before = last();
    await victim.crash();
    await clock.tickAsync(FAILURE_TIMEOUT_MS - 1);
    expect(maps).to.have.length(1);
    await clock.tickAsync(PLAN_INTERVAL_MS + 1);
    expect(maps).to.have.length(2);
    const live = ['a', 'b', 'c', 'd'].filter((id) => id !== victim.nodeId);
    expectBalanced(last().owners, live);
    const moved = changedShards(before.owners, last().owners);
    expect(moved).to.deep.equal(before.owners.flatMap((owner, s) => (owner === victim.nodeId ? [s] : [])));
    expect(leader().plans.at(-1)!.moves.every((m) => m.from === null)).to.equal(true);
  });

  it('a new leader continues from the existing map when the leader fails: the epoch keeps increasing', async () => {
    await cluster(['a', 'b', 'c']);
    await node('d').start();
    await clock.tickAsync(PLAN_INTERVAL_MS);
    const old = leader();
    const before = last();
    expect(before.epoch).to.equal(2);
    await old.crash();
    await clock.tickAsync(FAILURE_TIMEOUT_MS + 2 * PLAN_INTERVAL_MS);
    const next = leader();
    expect(next).to.not.equal(undefined);
    expect(next.nodeId).to.not.equal(old.nodeId);
    expect(maps.map((m) => m.epoch)).to.deep.equal([1, 2, 3]);
    expect(last().leader).to.equal(next.nodeId);
    const live = ['a', 'b', 'c', 'd'].filter((id) => id !== old.nodeId);
    expectBalanced(last().owners, live);
    expect(changedShards(before.owners, last().owners)).to.have.length(before.owners.filter((o) => o === old.nodeId).length);
  });

  it('spreads a capped rebalance over several epochs, one round per interval', async () => {
    await cluster(['a', 'b', 'c'], { maxMoves: 4 });
    const times: number[] = [];
    await new MemoryKV(bucket).watch(subjects.shardMapKey, () => times.push(Date.now()));
    await node('d', { maxMoves: 4 }).start();
    await clock.tickAsync(10 * PLAN_INTERVAL_MS);
    // 15 shards must reach d: rounds of 4, 4, 4 and 3.
    expect(maps.map((m) => m.epoch)).to.deep.equal([1, 2, 3, 4, 5]);
    expect(maps.slice(1).map((m, i) => changedShards(maps[i].owners, m.owners).length)).to.deep.equal([4, 4, 4, 3]);
    expectBalanced(last().owners, ['a', 'b', 'c', 'd']);
    expect(times.slice(2).map((t, i) => t - times[i + 1])).to.deep.equal([PLAN_INTERVAL_MS, PLAN_INTERVAL_MS, PLAN_INTERVAL_MS]);
  });

  it('reports a stored map with another shard count once, and leaves it as it is', async () => {
    const seeded = await new ShardMapStore({ kv: new MemoryKV(bucket), subjects }).publish({ epoch: 4, shardCount: 10, owners: new Array(10).fill('x'), leader: 'x' }, undefined);
    const [a] = await cluster(['a']);
    await clock.tickAsync(10 * PLAN_INTERVAL_MS);
    expect(a.errors).to.have.length(1);
    const error = a.errors[0] as ShardCountMismatchError;
    expect(error).to.be.instanceOf(ShardCountMismatchError);
    expect(error).to.include({ configuredShardCount: SHARDS, storedShardCount: 10, epoch: 4, code: 'SHARD_COUNT_MISMATCH' });
    expect(bucket.get(subjects.shardMapKey)?.revision).to.equal(seeded.revision);
    expect(a.plans).to.deep.equal([]);
  });

  it('plans one at a time: changes during a plan cause exactly one follow-up plan', async () => {
    let live = ['a', 'b'];
    const listeners: ((e: MembershipEvent) => void)[] = [];
    const membership = {
      liveNodeIds: () => live,
      subscribe: (l: (e: MembershipEvent) => void) => (listeners.push(l), () => undefined),
    };
    const lease = { isLeader: true, subscribe: () => () => undefined };
    let current: ShardMap | undefined;
    const publishes: { draft: ShardMapDraft; expected: number | undefined; done: () => void }[] = [];
    const shardMap = {
      get current() {
        return current;
      },
      refresh: async () => current,
      publish: (draft: ShardMapDraft, expected: number | undefined) =>
        new Promise<ShardMap>((resolve) => {
          publishes.push({
            draft,
            expected,
            done: () => resolve((current = { ...draft, time: 0, revision: (current?.revision ?? 0) + 1 })),
          });
        }),
    };
    const coordinator = new ShardCoordinator({ membership, lease, shardMap, nodeId: 'a', shardCount: SHARDS, planIntervalMs: 60_000 });
    coordinator.start();
    expect(publishes).to.have.length(1);
    for (const id of ['c', 'd', 'e']) {
      live = [...live, id];
      for (const l of listeners) l({ type: 'join', member: { nodeId: id, startedAt: 0, heartbeatAt: 0, actors: 0, shards: 0 } });
    }
    expect(publishes).to.have.length(1);
    publishes[0].done();
    await clock.tickAsync(0);
    expect(publishes).to.have.length(2);
    expect(publishes[1]).to.deep.include({ expected: 1 });
    expect(publishes[1].draft.epoch).to.equal(2);
    expectBalanced(publishes[1].draft.owners, live);
    publishes[1].done();
    await clock.tickAsync(0);
    expect(publishes).to.have.length(2);
    coordinator.close();
  });

  it('two coordinators that both believe they lead never publish conflicting maps', async () => {
    const live = ['a', 'b', 'c'];
    const errors: Error[] = [];
    const coordinators = ['a', 'b'].map((nodeId) => {
      const shardMap = new ShardMapStore({ kv: new MemoryKV(bucket), subjects });
      return new ShardCoordinator({
        membership: { liveNodeIds: () => live, subscribe: () => () => undefined },
        lease: { isLeader: true, subscribe: () => () => undefined },
        shardMap,
        nodeId,
        shardCount: SHARDS,
        planIntervalMs: PLAN_INTERVAL_MS,
        onError: (e) => errors.push(e),
      });
    });
    for (const c of coordinators) c.start();
    await clock.tickAsync(5 * PLAN_INTERVAL_MS);
    live.push('d');
    await clock.tickAsync(5 * PLAN_INTERVAL_MS);
    for (const c of coordinators) c.close();
    expect(maps.map((m) => m.epoch)).to.deep.equal([1, 2]);
    expectBalanced(last().owners, live);
    expect(errors).to.deep.equal([]);
  });

  for (const seed of [42, 7, 2026]) {
    it(`publishes consecutive, valid epochs while members join, leave and fail during slow plans (seed ${seed})`, async () => {
      const random = mulberry32(seed);
      const slowly = (store: ShardMapStore) => ({
        get current() {
          return store.current;
        },
        refresh: () => store.refresh(),
        publish: async (draft: ShardMapDraft, expected: number | undefined) => {
          await new Promise((resolve) => setTimeout(resolve, 20 + Math.floor(random() * 60)));
          return store.publish(draft, expected);
        },
      });
      const ids = Array.from({ length: 8 }, (_, i) => `n${i}`);
      const joined = new Set<string>();
      const boot = async (id: string) => {
        joined.add(id);
        await node(id, {}, slowly).start();
      };
      for (const id of ids.slice(0, 3)) await boot(id);
      for (let step = 0; step < 150; step++) {
        await clock.tickAsync(10 + Math.floor(random() * 20));
        const roll = random();
        const up = [...nodes.values()];
        const down = ids.filter((id) => !nodes.has(id));
        if (roll < 0.35 && down.length > 0) await boot(down[Math.floor(random() * down.length)]);
        else if (roll < 0.5 && up.length > 2) await up[Math.floor(random() * up.length)].crash();
        else if (roll < 0.65 && up.length > 2) {
          const n = up[Math.floor(random() * up.length)];
          n.coordinator.close();
          await n.lease.resign();
          await n.membership.leave();
          n.shardMap.close();
          nodes.delete(n.nodeId);
        }
      }
      await clock.tickAsync(FAILURE_TIMEOUT_MS + LEASE_MS + 10 * PLAN_INTERVAL_MS);
      expect(maps.length).to.be.greaterThan(10);
      maps.forEach((m, i) => {
        expect(m.epoch, `map ${i}`).to.equal(i + 1);
        expect(m.owners.every((o) => o !== null && joined.has(o)), `map ${i}`).to.equal(true);
        expect(joined.has(m.leader)).to.equal(true);
      });
      expectBalanced(last().owners, [...nodes.keys()]);
      for (const n of nodes.values()) expect(n.shardMap.current?.epoch).to.equal(maps.length);
    });
  }
});

describe('ShardCoordinator paced by a rebalance supervisor', () => {
  const setup = (status: 'Idle' | 'Migrating') => {
    const published: ShardMapDraft[] = [];
    const current: ShardMap = { epoch: 4, shardCount: 6, owners: ['a', 'a', 'b', 'b', 'c', 'c'], leader: 'a', time: 0, revision: 4 };
    const shardMap = { current, refresh: async () => current, publish: async (draft: ShardMapDraft) => void published.push(draft) };
    // c is dead; d joined and would get shards in a full plan.
    const membership = { liveNodeIds: () => ['a', 'b', 'd'], subscribe: () => () => {} };
    const lease = { isLeader: true, subscribe: () => () => {} };
    const supervisor = { ready: async () => {}, status, change: sinon.spy(), planned: sinon.spy(), planFailed: sinon.spy(), tick: sinon.spy(), stop: sinon.spy() };
    const coordinator = new ShardCoordinator({ membership, lease, shardMap: shardMap as never, nodeId: 'a', shardCount: 6, supervisor: supervisor as never, planIntervalMs: 60_000 });
    return { published, supervisor, coordinator };
  };
  const until = async (ok: () => boolean) => {
    for (const deadline = Date.now() + 2000; !ok(); await new Promise((r) => setTimeout(r, 5))) if (Date.now() > deadline) throw new Error('condition not met');
  };

  it('while a round migrates, gives a dead owner’s shards new owners at once and moves nothing else', async () => {
    const { published, supervisor, coordinator } = setup('Migrating');
    coordinator.start();
    await until(() => published.length === 1);
    coordinator.close();
    const { owners, epoch } = published[0];
    expect(epoch).to.equal(5);
    expect(owners.slice(0, 4)).to.deep.equal(['a', 'a', 'b', 'b']);
    expect(owners.slice(4).every((o) => o === 'a' || o === 'b' || o === 'd')).to.equal(true);
    // Not a round of its own; the change (d joined) is kept for after the running round.
    expect(supervisor.planned.called).to.equal(false);
    expect(supervisor.change.called).to.equal(true);
  });

  it('when idle, plans the full rebalance as a round of the supervisor', async () => {
    const { published, supervisor, coordinator } = setup('Idle');
    coordinator.start();
    await until(() => published.length === 1);
    coordinator.close();
    expectBalanced(published[0].owners, ['a', 'b', 'd']);
    expect(supervisor.planned.calledOnceWith(5)).to.equal(true);
  });
});
