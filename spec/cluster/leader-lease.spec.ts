import { expect } from 'chai';
import sinon from 'sinon';
import { decode } from '../../lib/codec/codec.js';
import { isLeaseRecord, type LeaseRecord } from '../../lib/codec/cluster-records.js';
import type { ClusterKV, KvChange, KvEntry } from '../../lib/cluster/kv/kv.js';
import { MemoryKV, MemoryKVBucket } from '../../lib/cluster/kv/memory.js';
import { LeaderLease, type LeaseState } from '../../lib/cluster/leader-lease.js';
import { Subjects } from '../../lib/subjects.js';
import { mulberry32 } from '../support/random.js';

const LEASE_MS = 300;
const RENEW_MS = 100;
const subjects = new Subjects('lease-spec');

/**
 * A `ClusterKV` over a network, on the fake clock: requests, replies and watch
 * deliveries each take a random time up to `maxDelayMs`, and `partition(ms)` cuts the
 * node off for a while (requests fail as if timed out, watch deliveries wait; order kept).
 */
class DelayedKV implements ClusterKV {
  private cutUntil = 0;
  private readonly resumes = new Set<() => void>();

  constructor(
    private readonly inner: ClusterKV,
    private readonly random: () => number,
    private readonly maxDelayMs: number,
  ) {}

  partition(ms: number): void {
    this.cutUntil = Math.max(this.cutUntil, Date.now() + ms);
    setTimeout(() => this.resumes.forEach((resume) => resume()), ms);
  }

  private delay(): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, Math.floor(this.random() * (this.maxDelayMs + 1))));
  }

  private async call<T>(op: () => Promise<T>): Promise<T> {
    await this.delay();
    try {
      if (Date.now() < this.cutUntil) throw new Error('partitioned');
      return await op();
    } finally {
      await this.delay();
    }
  }

  get(key: string): Promise<KvEntry | undefined> {
    return this.call(() => this.inner.get(key));
  }
  create(key: string, value: Uint8Array): Promise<number> {
    return this.call(() => this.inner.create(key, value));
  }
  update(key: string, value: Uint8Array, revision: number): Promise<number> {
    return this.call(() => this.inner.update(key, value, revision));
  }
  put(key: string, value: Uint8Array): Promise<number> {
    return this.call(() => this.inner.put(key, value));
  }
  delete(key: string): Promise<void> {
    return this.call(() => this.inner.delete(key));
  }
  async watch(prefix: string, handler: (change: KvChange) => void): Promise<() => void> {
    let initial = true;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const queue: { at: number; change: KvChange }[] = [];
    const pump = () => {
      timer = undefined;
      while (!stopped && queue.length > 0 && queue[0].at <= Date.now() && Date.now() >= this.cutUntil) handler(queue.shift()!.change);
      if (!stopped && queue.length > 0) timer = setTimeout(pump, Math.max(queue[0].at, this.cutUntil) - Date.now());
    };
    const stop = await this.inner.watch(prefix, (change) => {
      if (initial) return handler(change);
      const at = Math.max(queue.at(-1)?.at ?? 0, Date.now() + Math.floor(this.random() * (this.maxDelayMs + 1)));
      queue.push({ at, change });
      if (timer === undefined) timer = setTimeout(pump, at - Date.now());
    });
    initial = false;
    this.resumes.add(() => timer === undefined || (clearTimeout(timer), pump()));
    return () => {
      stopped = true;
      clearTimeout(timer);
      stop();
    };
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

describe('LeaderLease', () => {
  let clock: sinon.SinonFakeTimers;
  let bucket: MemoryKVBucket;
  let leases: LeaderLease[];

  beforeEach(() => {
    clock = sinon.useFakeTimers({ now: 5_000_000, toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
    bucket = new MemoryKVBucket();
    leases = [];
  });

  afterEach(async () => {
    for (const lease of leases) await lease.close();
    clock.restore();
  });

  function lease(nodeId: string, kv: ClusterKV = new MemoryKV(bucket), errors: Error[] = []): LeaderLease {
    const l = new LeaderLease({ kv, subjects, nodeId, leaseMs: LEASE_MS, renewMs: RENEW_MS, onError: (e) => errors.push(e) });
    leases.push(l);
    return l;
  }

  /** Every write to the lease key, with the fake time it landed. */
  async function recordWrites(): Promise<{ at: number; record: LeaseRecord | undefined }[]> {
    const writes: { at: number; record: LeaseRecord | undefined }[] = [];
    await new MemoryKV(bucket).watch(subjects.leaderKey, ({ value }) => {
      writes.push({ at: Date.now(), record: value && decode(value, isLeaseRecord, 'lease') });
    });
    return writes;
  }

  const leaders = () => leases.filter((l) => l.isLeader);

  it('lets exactly one of three nodes lead, and all agree on which', async () => {
    const [a, b, c] = ['a', 'b', 'c'].map((id) => lease(id));
    await Promise.all([a, b, c].map((l) => l.start()));
    for (let t = 0; t < 20 * LEASE_MS; t += 10) {
      await clock.tickAsync(10);
      expect(leaders()).to.have.length(1);
    }
    const [leader] = leaders();
    for (const l of [a, b, c]) expect(l.leader).to.equal(leader.nodeId);
    expect(new Set([a, b, c].map((l) => l.term))).to.deep.equal(new Set([1]));
  });

  it('after the leader crashes, another leads no earlier than leaseMs and no later than leaseMs + renewMs after its last renewal', async () => {
    const writes = await recordWrites();
    const all = ['a', 'b', 'c'].map((id) => lease(id));
    await Promise.all(all.map((l) => l.start()));
    await clock.tickAsync(1_000 + 37);
    const [old] = leaders();
    const states: LeaseState[] = [];
    for (const l of all) l.subscribe((s) => s.isLeader && states.push(s));
    await old.close();
    expect(old.isLeader).to.equal(false);
    const lastRenewal = writes[writes.length - 1].at;
    let tookOverAt: number | undefined;
    for (let t = 0; t < 2 * LEASE_MS && tookOverAt === undefined; t++) {
      expect(leaders().length).to.be.at.most(1);
      if (leaders().length === 1) tookOverAt = Date.now();
      else await clock.tickAsync(1);
    }
    expect(tookOverAt).to.not.equal(undefined);
    expect(tookOverAt! - lastRenewal).to.be.at.least(LEASE_MS).and.at.most(LEASE_MS + RENEW_MS);
    const [next] = leaders();
    expect(next).to.not.equal(old);
    expect(next.term).to.equal(2);
    expect(states).to.deep.equal([{ leader: next.nodeId, isLeader: true, term: 2 }]);
    await clock.tickAsync(1);
    for (const l of all.filter((l) => l !== old)) expect(l.leader).to.equal(next.nodeId);
  });

  it('does not take over after a stall of its own process while the holder lives, and still takes over from a crashed one after it', async () => {
    const writes = await recordWrites();
    const [a, b, c] = ['a', 'b', 'c'].map((id) => lease(id));
    await a.start();
    // The others start just under a renewal later: their timers fall due just before the
    // holder's, so after a stall they run first, before its renewal.
    await clock.tickAsync(RENEW_MS - 10);
    await b.start();
    await c.start();
    // Stopped 15 ms before the holder's next renewal, 5 ms before the others' next tick.
    await clock.tickAsync(2 * LEASE_MS - 15);
    expect(leaders()).to.deep.equal([a]);
    // The whole process stands still for three leases: every timer that fell due fires
    // once, late, with no I/O in between (a blocked event loop, as in an embedded cluster).
    clock.jump(3 * LEASE_MS);
    await clock.tickAsync(0);
    await clock.tickAsync(LEASE_MS);
    expect(leaders(), 'after the stall').to.deep.equal([a]);
    expect(new Set(writes.map((w) => w.record?.term)), 'terms written').to.deep.equal(new Set([1]));
    // The holder crashes after the stall: another takes over within a lease and a renewal.
    await a.close();
    const lastRenewal = writes[writes.length - 1].at;
    await clock.tickAsync(LEASE_MS + RENEW_MS);
    expect(leaders()).to.have.length(1);
    expect(leaders()[0]).to.not.equal(a);
    expect(writes[writes.length - 1].at - lastRenewal).to.be.at.least(LEASE_MS).and.at.most(LEASE_MS + RENEW_MS);
  });

  it('still takes over from a silent holder when its own timers only run a little late, again and again', async () => {
    const [a, b] = ['a', 'b'].map((id) => lease(id));
    await a.start();
    await b.start();
    await clock.tickAsync(2 * RENEW_MS);
    expect(leaders()).to.deep.equal([a]);
    await a.close();
    // Every timer runs 1.4 renewals late (under the stall threshold), for two leases.
    for (let i = 0; i < Math.ceil((2 * LEASE_MS) / (1.4 * RENEW_MS)); i++) {
      clock.jump(1.4 * RENEW_MS);
      await clock.tickAsync(0);
    }
    expect(leaders()).to.deep.equal([b]);
  });

  it('the holder stops believing it leads renewMs before anyone may take over when its renewals fail', async () => {
    const errors: Error[] = [];
    const kvA = new MemoryKV(bucket);
    const a = lease('a', kvA, errors);
    await a.start();
    const b = lease('b');
    await b.start();
    await clock.tickAsync(RENEW_MS * 3);
    expect(a.isLeader).to.equal(true);
    const lastSent = Date.now(); // a renewed just now, on the tick
    sinon.stub(kvA, 'update').rejects(new Error('KV unavailable'));
    const flips: number[] = [];
    a.subscribe((s) => !s.isLeader && flips.push(Date.now()));
    await clock.tickAsync(LEASE_MS - RENEW_MS - 1);
    expect(a.isLeader).to.equal(true);
    await clock.tickAsync(1);
    expect(a.isLeader).to.equal(false);
    expect(flips).to.deep.equal([lastSent + LEASE_MS - RENEW_MS]);
    expect(errors.length).to.be.greaterThan(0);
    await clock.tickAsync(RENEW_MS * 2);
    expect(b.isLeader).to.equal(true);
    expect(b.term).to.equal(2);
  });

  it('hands over at once when the leader resigns', async () => {
    const all = ['a', 'b', 'c'].map((id) => lease(id));
    await Promise.all(all.map((l) => l.start()));
    await clock.tickAsync(250);
    const [old] = leaders();
    const term = old.term;
    await old.resign();
    expect(old.isLeader).to.equal(false);
    await clock.tickAsync(0);
    expect(leaders()).to.have.length(1);
    expect(leaders()[0]).to.not.equal(old);
    expect(leaders()[0].term).to.equal(term + 1);
  });

  it('a node restarted under the same id waits for its own lapsed lease like anyone else', async () => {
    const a1 = lease('a');
    await a1.start();
    await clock.tickAsync(150);
    await a1.close();
    const a2 = lease('a');
    await a2.start();
    await clock.tickAsync(LEASE_MS - 1);
    expect(a2.isLeader).to.equal(false);
    expect(a2.leader).to.equal('a');
    await clock.tickAsync(RENEW_MS + 1);
    expect(a2.isLeader).to.equal(true);
    expect(a2.term).to.equal(2);
  });

  it('keeps the lease across a renewal whose reply was lost, since it recognises its own write', async () => {
    const errors: Error[] = [];
    const kvA = new MemoryKV(bucket);
    const a = lease('a', kvA, errors);
    await a.start();
    const b = lease('b');
    await b.start();
    const update = kvA.update.bind(kvA);
    sinon.stub(kvA, 'update').callsFake(async (key, value, revision) => {
      await update(key, value, revision);
      throw new Error('reply lost');
    });
    await clock.tickAsync(RENEW_MS);
    (kvA.update as sinon.SinonStub).restore();
    expect(errors.map((e) => e.message)).to.deep.equal(['reply lost']);
    for (let t = 0; t < 10 * LEASE_MS; t += 10) {
      await clock.tickAsync(10);
      expect(a.isLeader).to.equal(true);
      expect(b.isLeader).to.equal(false);
    }
    expect(a.term).to.equal(1);
  });

  it('takes over an undecodable lease record once it has stayed unchanged for leaseMs', async () => {
    const errors: Error[] = [];
    await new MemoryKV(bucket).put(subjects.leaderKey, new TextEncoder().encode('garbage'));
    const a = lease('a', new MemoryKV(bucket), errors);
    await a.start();
    expect(a.leader).to.equal(undefined);
    expect(errors).to.have.length(1);
    await clock.tickAsync(LEASE_MS - 1);
    expect(a.isLeader).to.equal(false);
    await clock.tickAsync(RENEW_MS);
    expect(a.isLeader).to.equal(true);
    expect(a.leader).to.equal('a');
  });

  it('never lets two nodes believe they lead, with network delays, crashes, resignations and restarts (seeded)', async function () {
    for (const [seed, maxDelayMs] of [[1, 0], [2, 3], [3, 10], [4, 40], [5, 80]]) {
      const random = mulberry32(seed);
      bucket = new MemoryKVBucket();
      const writes = await recordWrites();
      const size = 3 + Math.floor(random() * 3);
      const ids = Array.from({ length: size }, (_, i) => `n${i}`);
      const running = new Map<string, LeaderLease>();
      const networks = new Map<LeaderLease, DelayedKV>();
      const everyone: LeaderLease[] = [];
      // Nothing here awaits the delayed KV: its delays only pass as the clock is ticked.
      const pending: Promise<void>[] = [];
      const boot = (id: string) => {
        const kv = new DelayedKV(new MemoryKV(bucket), random, maxDelayMs);
        const l = lease(id, kv);
        networks.set(l, kv);
        everyone.push(l);
        running.set(id, l);
        // Check at every instant a node comes to believe it leads, not only on ticks.
        l.subscribe((s) => {
          if (s.isLeader) expect(everyone.filter((o) => o.isLeader), `seed ${seed} at ${Date.now()}`).to.have.length(1);
        });
        pending.push(l.start());
      };
      for (const id of ids) boot(id);
      let highestTerm = 0;
      let ledSteps = 0;
      for (let step = 0; step < 10_000; step++) {
        await clock.tickAsync(2);
        const believers = everyone.filter((l) => l.isLeader);
        expect(believers.length, `seed ${seed} step ${step}`).to.be.at.most(1);
        if (believers.length === 1) ledSteps++;
        const roll = random();
        if (roll < 0.004 && running.size > 1) {
          // Half the time the leader, the interesting victim.
          const leader = [...running.values()].find((l) => l.isLeader);
          const victim = leader && random() < 0.5 ? leader : [...running.values()][Math.floor(random() * running.size)];
          running.delete(victim.nodeId);
          pending.push(random() < 0.5 ? victim.close() : victim.resign().catch(() => undefined));
        } else if (roll < 0.006) {
          // Cut a node off (the leader half the time) while it keeps running.
          const leader = [...running.values()].find((l) => l.isLeader);
          const victim = leader && random() < 0.5 ? leader : [...running.values()][Math.floor(random() * running.size)];
          networks.get(victim)!.partition(50 + Math.floor(random() * 600));
        } else if (roll < 0.010) {
          const down = ids.filter((id) => !running.has(id));
          if (down.length > 0) boot(down[Math.floor(random() * down.length)]);
        }
        highestTerm = Math.max(highestTerm, ...everyone.map((l) => l.term));
      }
      // Liveness too: despite the faults, someone held the lease for a good share of the run.
      expect(ledSteps, `seed ${seed}`).to.be.greaterThan(4_000);
      expect(highestTerm, `seed ${seed}`).to.be.greaterThan(5);
      // Between two present records, the term never goes back, and grows with every change of holder.
      for (let i = 1; i < writes.length; i++) {
        const [prev, next] = [writes[i - 1].record, writes[i].record];
        if (!prev || !next) continue;
        if (next.holder === prev.holder) expect(next.term, `seed ${seed} write ${i}`).to.be.at.least(prev.term);
        else expect(next.term, `seed ${seed} write ${i}`).to.be.greaterThan(prev.term);
      }
      for (const l of everyone) await l.close();
      await clock.tickAsync(1_000);
      await Promise.all(pending);
    }
  });
});
