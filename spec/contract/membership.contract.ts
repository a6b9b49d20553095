/**
 * What `Membership` and `LeaderLease` promise together, run over each `ClusterKV`
 * adapter by its own spec, on real (short) timers: joins, graceful leaves, failure
 * detection, and a single leader through crashes and resignations. Every wait has a
 * deadline; the only fixed interval is the sampler that checks, every 10 ms, that no
 * two nodes believe they lead at the same instant.
 */
import { expect } from 'chai';
import { decode } from '../../lib/codec/codec.js';
import { isLeaseRecord, type LeaseRecord } from '../../lib/codec/cluster-records.js';
import type { ClusterKV } from '../../lib/cluster/kv/kv.js';
import { LeaderLease, type LeaseState } from '../../lib/cluster/leader-lease.js';
import { Membership, type MembershipEvent } from '../../lib/cluster/membership.js';
import { Subjects } from '../../lib/subjects.js';

export interface MembershipBackend {
  /** A new handle on the backend's one bucket, as another node would open it. */
  kv(): Promise<ClusterKV>;
  /** Closes every handle it made (and whatever it opened for them). */
  close(): Promise<void>;
}

const HEARTBEAT_MS = 50;
const FAILURE_TIMEOUT_MS = 400;
const LEASE_MS = 400;
const RENEW_MS = 100;
/** Room for KV round trips and watch deliveries on a loaded machine. */
const SLACK_MS = 300;
const SAMPLE_MS = 10;

const subjects = new Subjects('membership-contract');

interface Timed<T> {
  readonly at: number;
  readonly value: T;
}

/** One node of the cluster: its own KV handle, membership and lease, and what they reported. */
class TestNode {
  readonly events: Timed<MembershipEvent>[] = [];
  readonly states: Timed<LeaseState>[] = [];
  readonly errors: Error[] = [];
  readonly membership: Membership;
  readonly lease: LeaderLease;
  private stopped = false;

  constructor(
    readonly nodeId: string,
    private readonly kv: ClusterKV,
  ) {
    const onError = (error: Error) => this.errors.push(error);
    this.membership = new Membership({ kv, subjects, nodeId, heartbeatMs: HEARTBEAT_MS, failureTimeoutMs: FAILURE_TIMEOUT_MS, onError });
    this.lease = new LeaderLease({ kv, subjects, nodeId, leaseMs: LEASE_MS, renewMs: RENEW_MS, onError });
    this.membership.subscribe((value) => this.events.push({ at: Date.now(), value }));
    this.lease.subscribe((value) => this.states.push({ at: Date.now(), value }));
  }

  async start(): Promise<void> {
    await this.membership.start();
    await this.lease.start();
  }

  /** Stops heartbeating and renewing but leaves its records behind, as a crashed process would. */
  async crash(): Promise<void> {
    this.stopped = true;
    await this.membership.close();
    await this.lease.close();
    await this.kv.close();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.lease.close();
    await this.membership.close();
  }

  /** When this node saw `nodeId` leave for `reason`, if it did. */
  leftAt(nodeId: string, reason: 'left' | 'failed'): number | undefined {
    return this.events.find(({ value: e }) => e.type === 'leave' && e.nodeId === nodeId && e.reason === reason)?.at;
  }

  /** Leave events about other nodes, as `node:reason`. */
  leaves(): string[] {
    return this.events.flatMap(({ value: e }) => (e.type === 'leave' && e.nodeId !== this.nodeId ? [`${e.nodeId}:${e.reason}`] : []));
  }
}

/**
 * Checks how many nodes believe they lead every `SAMPLE_MS` from before the first node
 * starts to the end of the spec, and at every change of any node's lease state.
 */
class LeaderSampler {
  samples = 0;
  /** Instants at which more than one node believed it led. */
  readonly overlaps: { at: number; leaders: string[] }[] = [];
  readonly since = Date.now();
  private readonly nodes: TestNode[] = [];
  private readonly timer = setInterval(() => this.sample(), SAMPLE_MS);

  add(node: TestNode): void {
    this.nodes.push(node);
    node.lease.subscribe(() => this.sample());
  }

  sample(): void {
    this.samples += 1;
    const leaders = this.nodes.filter((n) => n.lease.isLeader).map((n) => n.nodeId);
    if (leaders.length > 1) this.overlaps.push({ at: Date.now(), leaders });
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** Resolves once `check` holds, checked every few ms; fails with `describe()` after `timeoutMs`. */
async function until(check: () => boolean, what: string, timeoutMs: number, describe: () => unknown = () => ''): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (check()) return Date.now();
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${JSON.stringify(describe())}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

export function membershipContract(name: string, factory: () => Promise<MembershipBackend>): void {
  describe(`Membership contract: ${name}`, function () {
    this.timeout(10_000);
    let backend: MembershipBackend;
    let nodes: TestNode[];
    let sampler: LeaderSampler;

    beforeEach(async () => {
      backend = await factory();
      nodes = [];
      sampler = new LeaderSampler();
    });

    afterEach(async () => {
      sampler.stop();
      for (const node of nodes) await node.stop();
      await backend.close();
    });

    /** Starts the nodes together, so they race for the lease. */
    async function start(...ids: string[]): Promise<TestNode[]> {
      const started = await Promise.all(ids.map(async (id) => new TestNode(id, await backend.kv())));
      nodes.push(...started);
      for (const node of started) sampler.add(node);
      await Promise.all(started.map((n) => n.start()));
      return started;
    }

    const running = () => nodes.filter((n) => n.membership.isLive(n.nodeId));
    const view = () => nodes.map((n) => ({ node: n.nodeId, live: n.membership.liveNodeIds(), leader: n.lease.leader, isLeader: n.lease.isLeader, term: n.lease.term }));

    function allSee(ids: string[], timeoutMs = 2000): Promise<number> {
      return until(() => running().every((n) => JSON.stringify(n.membership.liveNodeIds()) === JSON.stringify(ids)), `every node to list ${ids}`, timeoutMs, view);
    }

    /** The one node leading, once every running node agrees on it. */
    async function agreedLeader(timeoutMs: number, besides?: TestNode): Promise<TestNode> {
      await until(
        () => {
          const leaders = running().filter((n) => n.lease.isLeader);
          return leaders.length === 1 && leaders[0] !== besides && running().every((n) => n.lease.leader === leaders[0].nodeId);
        },
        'one leader all running nodes agree on',
        timeoutMs,
        view,
      );
      return running().find((n) => n.lease.isLeader)!;
    }

    function expectOneLeaderAtATime(): void {
      sampler.sample();
      expect(sampler.overlaps, 'instants with two leaders').to.deep.equal([]);
      // The interval kept running (timers may fire late on a busy machine, not this late).
      expect(sampler.samples).to.be.at.least(Math.floor((Date.now() - sampler.since) / SAMPLE_MS / 2));
    }

    it('lets three nodes see each other join', async () => {
      const [a, b, c] = await start('a', 'b', 'c');
      await allSee(['a', 'b', 'c']);
      for (const node of [a, b, c]) {
        const joined = node.events.flatMap(({ value: e }) => (e.type === 'join' ? [e.member.nodeId] : []));
        expect([...joined].sort()).to.deep.equal(['a', 'b', 'c']);
        expect(node.membership.members().map((m) => m.nodeId)).to.deep.equal(['a', 'b', 'c']);
        expect(node.leaves()).to.deep.equal([]);
        expect(node.errors).to.deep.equal([]);
      }
    });

    it('elects exactly one of three nodes, which all agree on, and keeps it while it renews', async () => {
      const writes: LeaseRecord[] = [];
      const observer = await backend.kv();
      await observer.watch(subjects.leaderKey, ({ value }) => value && writes.push(decode(value, isLeaseRecord, 'lease record')));
      await start('a', 'b', 'c');
      const leader = await agreedLeader(LEASE_MS + SLACK_MS);
      const term = leader.lease.term;
      // Renewals over three lease periods keep the same leader in the same term.
      const renewals = (3 * LEASE_MS) / RENEW_MS;
      await until(() => writes.length > renewals, `${renewals} renewals`, 3 * LEASE_MS + 2 * SLACK_MS, () => writes);
      expect(writes.every((w) => w.holder === leader.nodeId && w.term === term)).to.equal(true);
      expect(await agreedLeader(0)).to.equal(leader);
      for (const node of nodes) expect(node.lease.term).to.equal(term);
      expectOneLeaderAtATime();
      for (const node of nodes) expect(node.errors).to.deep.equal([]);
    });

    it('sees a graceful leave at once, well before failureTimeoutMs', async () => {
      const [a, b, c] = await start('a', 'b', 'c');
      await allSee(['a', 'b', 'c']);
      const leaving = Date.now();
      await c.lease.resign();
      await c.membership.leave();
      const seen = await until(() => [a, b].every((n) => n.leftAt('c', 'left') !== undefined), 'c to leave', FAILURE_TIMEOUT_MS, view);
      expect(seen - leaving).to.be.below(FAILURE_TIMEOUT_MS / 2);
      for (const node of [a, b]) {
        expect(node.leaves()).to.deep.equal(['c:left']);
        expect(node.membership.liveNodeIds()).to.deep.equal(['a', 'b']);
        expect(node.membership.isLive('c')).to.equal(false);
      }
      expect(c.leftAt('c', 'left')).to.be.a('number');
      expect(c.membership.liveNodeIds()).to.deep.equal([]);
      // Nothing of c comes back, and nobody is failed, while the others beat on past failureTimeoutMs.
      const beatOn = () => [a, b].every((n) => n.membership.members().every((m) => m.heartbeatAt >= seen + FAILURE_TIMEOUT_MS));
      await until(beatOn, 'heartbeats failureTimeoutMs after the leave', FAILURE_TIMEOUT_MS + SLACK_MS, view);
      for (const node of [a, b]) expect(node.leaves()).to.deep.equal(['c:left']);
      await allSee(['a', 'b'], 0);
    });

    it('declares a node that stopped heartbeating failed after failureTimeoutMs, and keeps the others', async () => {
      const [a, b, c] = await start('a', 'b', 'c');
      await allSee(['a', 'b', 'c']);
      const crashed = Date.now();
      await c.crash();
      await until(() => [a, b].every((n) => n.leftAt('c', 'failed') !== undefined), 'c to be failed', FAILURE_TIMEOUT_MS + 1000, view);
      for (const node of [a, b]) {
        // Its last beat was sent at most heartbeatMs before the crash, and counts from when it was seen.
        const after = node.leftAt('c', 'failed')! - crashed;
        expect(after, `${node.nodeId} failed c after`).to.be.at.least(FAILURE_TIMEOUT_MS - HEARTBEAT_MS).and.at.most(FAILURE_TIMEOUT_MS + 1000);
        expect(node.leaves()).to.deep.equal(['c:failed']);
        expect(node.membership.liveNodeIds()).to.deep.equal(['a', 'b']);
        expect(node.errors).to.deep.equal([]);
      }
    });

    it('after the leader crashes, another node leads within leaseMs + renewMs, never two at once', async () => {
      await start('a', 'b', 'c');
      const old = await agreedLeader(LEASE_MS + SLACK_MS);
      await allSee(['a', 'b', 'c']);
      const oldTerm = old.lease.term;
      const crashed = Date.now();
      await old.crash();
      expect(old.lease.isLeader).to.equal(false);
      const next = await agreedLeader(LEASE_MS + RENEW_MS + SLACK_MS, old);
      const tookOver = next.states.find((s) => s.value.isLeader && s.value.term > oldTerm)!.at;
      // Its last renewal was sent at most renewMs before the crash, and kept others out for leaseMs.
      expect(tookOver - crashed).to.be.at.least(LEASE_MS - RENEW_MS - 20).and.at.most(LEASE_MS + RENEW_MS + SLACK_MS);
      expect(next.lease.term).to.be.greaterThan(oldTerm);
      // The crash is detected too, and the lease stays put while nobody else fails.
      await until(() => running().every((n) => n.leftAt(old.nodeId, 'failed') !== undefined), `${old.nodeId} to be failed`, FAILURE_TIMEOUT_MS + 1000, view);
      expect(await agreedLeader(0)).to.equal(next);
      expectOneLeaderAtATime();
      for (const node of running()) expect(node.errors).to.deep.equal([]);
    });

    it('after the leader resigns, another node takes over promptly, never two at once', async () => {
      await start('a', 'b', 'c');
      const old = await agreedLeader(LEASE_MS + SLACK_MS);
      const oldTerm = old.lease.term;
      const resigning = Date.now();
      await old.lease.resign();
      expect(old.lease.isLeader).to.equal(false);
      await old.membership.leave();
      const next = await agreedLeader(LEASE_MS, old);
      const tookOver = next.states.find((s) => s.value.isLeader && s.value.term > oldTerm)!.at;
      expect(tookOver - resigning).to.be.below(LEASE_MS);
      expect(next.lease.term).to.be.greaterThan(oldTerm);
      await until(() => running().every((n) => n.leftAt(old.nodeId, 'left') !== undefined), `${old.nodeId} to leave`, FAILURE_TIMEOUT_MS, view);
      for (const node of running()) expect(node.leaves()).to.deep.equal([`${old.nodeId}:left`]);
      expectOneLeaderAtATime();
      for (const node of nodes) expect(node.errors).to.deep.equal([]);
    });
  });
}
