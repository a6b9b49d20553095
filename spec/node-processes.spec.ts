import { expect } from 'chai';
import { NatsServer } from './support/nats-server.js';
import { NodeProcess } from './support/node-process.js';
import { eventually } from './support/eventually.js';

/** Short timings so failure detection and lease expiry happen within a spec. */
const CLUSTER = { shards: 64, heartbeatMs: 100, failureTimeoutMs: 1000, leaseMs: 1000, planIntervalMs: 100, routeDeadlineMs: 8000, requestTimeoutMs: 1000 };
const ACTORS = 30;

describe('a cluster of node processes on NATS', function () {
  this.timeout(90_000);
  let server: NatsServer;
  const nodes: NodeProcess[] = [];
  const acknowledged = new Map<string, number>();
  const namespace = `procs-${process.pid}`;
  let started = 0;

  const start = async () => {
    const node = await NodeProcess.start({ natsUrl: server.url, namespace, nodeId: `n${++started}`, cluster: CLUSTER });
    nodes.push(node);
    return node;
  };
  const live = () => nodes.filter((n) => n.running);

  /** All live nodes see exactly themselves as members, one map, balanced over them. */
  async function settled(timeoutMs = 15_000) {
    const ids = live().map((n) => n.nodeId).sort();
    return eventually(
      () => Promise.all(live().map((n) => n.cluster())),
      (views) => {
        const owned = views.map((v) => v.ownedShards);
        return (
          new Set(views.map((v) => v.epoch)).size === 1 &&
          views.every((v) => JSON.stringify(v.members) === JSON.stringify(ids)) &&
          owned.reduce((a, b) => a + b, 0) === CLUSTER.shards &&
          Math.max(...owned) - Math.min(...owned) <= 1 &&
          views.filter((v) => v.isLeader).length === 1
        );
      },
      timeoutMs,
    );
  }

  async function depositFromEveryNode(round: number) {
    await Promise.all(
      live().flatMap((node, n) =>
        Array.from({ length: ACTORS }, async (_, i) => {
          const amount = round * 1000 + n * 10 + 1;
          const reply = await node.send('account', `acc-${i}`, { type: 'DEPOSIT', amount }, `r${round}-${node.nodeId}-${i}`);
          expect(reply.accepted).to.equal(true);
          acknowledged.set(`acc-${i}`, (acknowledged.get(`acc-${i}`) ?? 0) + amount);
        }),
      ),
    );
  }

  async function everyBalanceIntact() {
    for (const node of live()) {
      for (let i = 0; i < ACTORS; i += 3) {
        const s = await node.state('account', `acc-${i}`);
        expect(s.context.balance, `acc-${i} via ${node.nodeId}`).to.equal(acknowledged.get(`acc-${i}`));
      }
    }
  }

  before(async () => {
    server = await NatsServer.start();
    await start();
    await Promise.all([start(), start()]);
  });

  after(async () => {
    await Promise.all(nodes.map((n) => n.kill()));
    await server?.stop();
  });

  it('three processes form one cluster and elect exactly one leader', async () => {
    const views = await settled();
    expect(new Set(views.map((v) => v.leader)).size).to.equal(1);
  });

  it('a command sent from any node reaches every actor on its owner', async () => {
    await depositFromEveryNode(1);
    await everyBalanceIntact();
    const views = await Promise.all(live().map((n) => n.cluster()));
    expect(views.reduce((sum, v) => sum + v.residentActors, 0)).to.equal(ACTORS);
  });

  it('a 4th node joins: the map is rebalanced and every state is intact', async () => {
    const before = (await live()[0].cluster()).epoch;
    await start();
    const views = await settled();
    expect(views[0].epoch).to.be.greaterThan(before);
    await everyBalanceIntact();
    await depositFromEveryNode(2);
    await everyBalanceIntact();
  });

  it('a node leaves gracefully: its shards move and every state is intact', async () => {
    const leaving = live().find((n) => n.nodeId === 'n2')!;
    await leaving.leave();
    await leaving.kill('SIGTERM');
    await settled();
    await everyBalanceIntact();
  });

  it('a node process is killed: detected within the failure timeout, its shards reassigned, nothing acknowledged lost', async () => {
    const views = await Promise.all(live().map((n) => n.cluster()));
    const victim = live().find((n) => !views.find((v) => v.nodeId === n.nodeId)!.isLeader)!;
    const killedAt = Date.now();
    await victim.kill('SIGKILL');
    await settled(CLUSTER.failureTimeoutMs + 8000);
    expect(Date.now() - killedAt).to.be.at.least(CLUSTER.failureTimeoutMs - CLUSTER.heartbeatMs);
    await everyBalanceIntact();
    await depositFromEveryNode(3);
    await everyBalanceIntact();
  });

  it('the leader process is killed: another node becomes leader within the lease time', async () => {
    const views = await Promise.all(live().map((n) => n.cluster()));
    const leader = live().find((n) => views.find((v) => v.nodeId === n.nodeId)!.isLeader)!;
    const killedAt = Date.now();
    await leader.kill('SIGKILL');
    await eventually(
      () => Promise.all(live().map((n) => n.cluster())),
      (vs) => vs.filter((v) => v.isLeader).length === 1 && vs.every((v) => v.leader !== leader.nodeId),
      CLUSTER.leaseMs * 3 + 2000,
    );
    expect(Date.now() - killedAt).to.be.below(CLUSTER.leaseMs * 3 + 2000);
    await settled();
    await everyBalanceIntact();
  });
});
