import { expect } from 'chai';
import { createMemoryCluster, type MemoryCluster, type NatstateNode } from '../lib/index.js';
import { actors } from '../examples/bank/actors.js';
import { eventually } from './support/eventually.js';

type Bank = typeof actors;
const FAST = { heartbeatMs: 25, failureTimeoutMs: 250, leaseMs: 250, planIntervalMs: 25, shards: 64 };

/** Every node agrees on one map in which only the given nodes own shards, evenly. */
async function settled(cluster: MemoryCluster<Bank>, expected: readonly NatstateNode<Bank>[]): Promise<void> {
  const ids = expected.map((n) => n.id).sort();
  await eventually(
    () => cluster.nodes.map((n) => n.cluster()),
    (views) => {
      const epochs = new Set(views.map((v) => v.epoch));
      const owned = views.filter((v) => ids.includes(v.nodeId)).map((v) => v.ownedShards);
      return (
        epochs.size === 1 &&
        views.every((v) => JSON.stringify(v.members) === JSON.stringify(ids)) &&
        owned.reduce((a, b) => a + b, 0) === FAST.shards &&
        Math.max(...owned) - Math.min(...owned) <= 1
      );
    },
  );
}

describe('createMemoryCluster (embedded multi-node)', function () {
  this.timeout(20_000);
  let cluster: MemoryCluster<Bank>;
  const ACTORS = 60;
  const deposits = new Map<string, number>();

  async function depositEverywhere(round: number): Promise<void> {
    await Promise.all(
      cluster.nodes.flatMap((node, n) =>
        Array.from({ length: ACTORS }, async (_, i) => {
          const amount = round * 100 + n + 1;
          const r = await node.send('account', `acc-${i}`, { type: 'DEPOSIT', amount });
          expect(r.accepted).to.equal(true);
          deposits.set(`acc-${i}`, (deposits.get(`acc-${i}`) ?? 0) + amount);
        }),
      ),
    );
  }

  async function balancesIntactFromEveryNode(): Promise<void> {
    for (const node of cluster.nodes) {
      for (let i = 0; i < ACTORS; i += 7) {
        const s = await node.state('account', `acc-${i}`);
        expect(s.context.balance, `acc-${i} via ${node.id}`).to.equal(deposits.get(`acc-${i}`));
      }
    }
  }

  before(async () => {
    cluster = await createMemoryCluster({ actors, namespace: 'bank', nodes: 3, cluster: FAST });
  });
  after(async () => cluster?.close());

  it('forms one cluster with one leader and a balanced shard map', async () => {
    await settled(cluster, cluster.nodes);
    const views = cluster.nodes.map((n) => n.cluster());
    expect(views.filter((v) => v.isLeader)).to.have.length(1);
    expect(new Set(views.map((v) => v.leader)).size).to.equal(1);
  });

  it('delivers commands from every node to every actor, each hosted only by its owner', async () => {
    await depositEverywhere(1);
    await balancesIntactFromEveryNode();
    const resident = cluster.nodes.map((n) => n.cluster().residentActors);
    expect(resident.reduce((a, b) => a + b, 0)).to.equal(ACTORS);
  });

  it('rebalances when a 4th node joins, with every state intact', async () => {
    const before = cluster.nodes[0].cluster().epoch;
    const fourth = await cluster.addNode();
    await settled(cluster, cluster.nodes);
    expect(fourth.cluster().ownedShards).to.be.within(15, 16);
    expect(cluster.nodes[0].cluster().epoch).to.be.greaterThan(before);
    await balancesIntactFromEveryNode();
    await depositEverywhere(2);
    await balancesIntactFromEveryNode();
  });

  it('hands a gracefully leaving node’s shards to the others, with every state intact', async () => {
    const leaving = cluster.nodes[1];
    await cluster.removeNode(leaving);
    await settled(cluster, cluster.nodes);
    expect(leaving.cluster().ownedShards).to.equal(0);
    await balancesIntactFromEveryNode();
    await depositEverywhere(3);
    await balancesIntactFromEveryNode();
  });

  it('elects a new leader when the leader leaves', async () => {
    const leader = cluster.nodes.find((n) => n.cluster().isLeader)!;
    await cluster.removeNode(leader);
    await eventually(
      () => cluster.nodes.map((n) => n.cluster()),
      (views) => views.filter((v) => v.isLeader).length === 1 && views.every((v) => v.leader !== leader.id),
    );
    await settled(cluster, cluster.nodes);
    await balancesIntactFromEveryNode();
  });
});
