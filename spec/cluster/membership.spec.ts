import { expect } from 'chai';
import sinon from 'sinon';
import { encode } from '../../lib/codec/codec.js';
import { Membership, type MembershipEvent } from '../../lib/cluster/membership.js';
import { MemoryKV, MemoryKVBucket } from '../../lib/cluster/kv/memory.js';
import { DecodeError } from '../../lib/errors.js';
import { Subjects } from '../../lib/subjects.js';

const HEARTBEAT_MS = 100;
const FAILURE_TIMEOUT_MS = 500;

describe('Membership', () => {
  let clock: sinon.SinonFakeTimers;
  let bucket: MemoryKVBucket;
  const subjects = new Subjects('membership-spec');
  const started: Membership[] = [];

  beforeEach(() => {
    clock = sinon.useFakeTimers({ now: 1_000_000, toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
    bucket = new MemoryKVBucket();
  });

  afterEach(async () => {
    for (const m of started.splice(0)) await m.close();
    clock.restore();
  });

  function node(nodeId: string, options: Partial<ConstructorParameters<typeof Membership>[0]> = {}) {
    const events: MembershipEvent[] = [];
    const errors: Error[] = [];
    const kv = new MemoryKV(bucket);
    const membership = new Membership({
      kv,
      subjects,
      nodeId,
      heartbeatMs: HEARTBEAT_MS,
      failureTimeoutMs: FAILURE_TIMEOUT_MS,
      onError: (e) => errors.push(e),
      ...options,
    });
    membership.subscribe((e) => events.push(e));
    started.push(membership);
    return { membership, events, errors, kv };
  }

  const joins = (events: MembershipEvent[]) => events.flatMap((e) => (e.type === 'join' ? [e.member.nodeId] : []));
  const leaves = (events: MembershipEvent[]) => events.flatMap((e) => (e.type === 'leave' ? [`${e.nodeId}:${e.reason}`] : []));

  it('reports each node joining to both nodes and lists live members sorted by node id', async () => {
    const b = node('b');
    const a = node('a');
    await b.membership.start();
    await a.membership.start();
    await clock.tickAsync(0);
    expect(joins(a.events)).to.deep.equal(['b', 'a']);
    expect(joins(b.events)).to.deep.equal(['b', 'a']);
    expect(a.membership.liveNodeIds()).to.deep.equal(['a', 'b']);
    expect(b.membership.liveNodeIds()).to.deep.equal(['a', 'b']);
    expect(a.membership.isLive('b')).to.equal(true);
    expect(a.membership.isLive('c')).to.equal(false);
    expect(b.membership.members().map((m) => m.startedAt)).to.deep.equal([1_000_000, 1_000_000]);
  });

  it('keeps heartbeating nodes live however long they run, and publishes their load', async () => {
    let actors = 0;
    const a = node('a');
    const b = node('b', { load: () => ({ actors: ++actors, shards: 7 }) });
    await a.membership.start();
    await b.membership.start();
    await clock.tickAsync(20 * FAILURE_TIMEOUT_MS);
    expect(leaves(a.events)).to.deep.equal([]);
    expect(a.membership.liveNodeIds()).to.deep.equal(['a', 'b']);
    const seen = a.membership.members().find((m) => m.nodeId === 'b');
    expect(seen?.shards).to.equal(7);
    expect(seen?.actors).to.be.greaterThan(50);
    expect(seen?.heartbeatAt).to.be.greaterThan(1_000_000 + 19 * FAILURE_TIMEOUT_MS);
  });

  it('keeps heartbeating when the load probe throws or returns counts peers would reject', async () => {
    let probe = () => ({ actors: 2.7, shards: NaN });
    const a = node('a');
    const b = node('b', { load: () => probe() });
    await a.membership.start();
    await b.membership.start();
    await clock.tickAsync(0);
    expect(a.membership.members().find((m) => m.nodeId === 'b')).to.include({ actors: 2, shards: 0 });
    probe = () => {
      throw new Error('probe failed');
    };
    await clock.tickAsync(3 * FAILURE_TIMEOUT_MS);
    expect(a.membership.isLive('b')).to.equal(true);
    expect(leaves(a.events)).to.deep.equal([]);
    expect(b.errors.length).to.be.greaterThan(10);
    expect(b.errors.every((e) => e.message === 'probe failed')).to.equal(true);
  });

  it('declares a node whose heartbeats stopped failed exactly failureTimeoutMs after its last one', async () => {
    const a = node('a');
    const b = node('b');
    await a.membership.start();
    await b.membership.start();
    await clock.tickAsync(10 * HEARTBEAT_MS); // b's 10th beat lands at this very instant
    await b.membership.close();
    expect(bucket.get(subjects.memberKey('b'))).to.not.equal(undefined); // a crash leaves the record behind
    await clock.tickAsync(FAILURE_TIMEOUT_MS - 1);
    expect(a.membership.isLive('b')).to.equal(true);
    expect(leaves(a.events)).to.deep.equal([]);
    await clock.tickAsync(1);
    expect(a.membership.isLive('b')).to.equal(false);
    expect(leaves(a.events)).to.deep.equal(['b:failed']);
    expect(a.membership.liveNodeIds()).to.deep.equal(['a']);
  });

  it('does not count a stall of its own process against its peers, and still fails a dead one after it', async () => {
    const a = node('a');
    const b = node('b');
    const c = node('c');
    for (const n of [a, b, c]) await n.membership.start();
    await clock.tickAsync(5 * HEARTBEAT_MS);
    await c.membership.close(); // c crashes: its record stays, it beats no more
    // The whole process stands still for four failure timeouts: every timer that fell due
    // in that time fires once, late, with no I/O in between (a blocked event loop).
    clock.jump(4 * FAILURE_TIMEOUT_MS);
    await clock.tickAsync(0);
    expect(leaves(a.events), 'a after the stall').to.deep.equal([]);
    expect(leaves(b.events), 'b after the stall').to.deep.equal([]);
    await clock.tickAsync(FAILURE_TIMEOUT_MS);
    // b kept beating once the process ran again; c, silent, fails within one timeout of that.
    expect(leaves(a.events)).to.deep.equal(['c:failed']);
    expect(leaves(b.events)).to.deep.equal(['c:failed']);
    expect(a.membership.liveNodeIds()).to.deep.equal(['a', 'b']);
  });

  it('still fails a silent peer when its own timers only run a little late, again and again', async () => {
    const a = node('a');
    const b = node('b');
    await a.membership.start();
    await b.membership.start();
    await clock.tickAsync(2 * HEARTBEAT_MS);
    await b.membership.close();
    // Every timer runs 1.5 heartbeats late (under the stall threshold), for two timeouts.
    for (let i = 0; i < 8; i++) {
      clock.jump(1.5 * HEARTBEAT_MS);
      await clock.tickAsync(0);
    }
    expect(leaves(a.events)).to.deep.equal(['b:failed']);
  });

  it('sees a graceful leave at once', async () => {
    const a = node('a');
    const b = node('b');
    await a.membership.start();
    await b.membership.start();
    await clock.tickAsync(HEARTBEAT_MS / 2);
    await b.membership.leave();
    await clock.tickAsync(0);
    expect(leaves(a.events)).to.deep.equal(['b:left']);
    expect(leaves(b.events)).to.deep.equal(['b:left']);
    expect(a.membership.liveNodeIds()).to.deep.equal(['a']);
    expect(bucket.get(subjects.memberKey('b'))).to.equal(undefined);
    // No late heartbeat brings it back.
    await clock.tickAsync(10 * HEARTBEAT_MS);
    expect(joins(a.events)).to.deep.equal(['a', 'b']);
  });

  it('lets a failed node join again when it comes back', async () => {
    const a = node('a');
    const b1 = node('b');
    await a.membership.start();
    await b1.membership.start();
    await b1.membership.close();
    await clock.tickAsync(FAILURE_TIMEOUT_MS);
    expect(leaves(a.events)).to.deep.equal(['b:failed']);
    const b2 = node('b');
    await b2.membership.start();
    await clock.tickAsync(0);
    expect(joins(a.events)).to.deep.equal(['a', 'b', 'b']);
    expect(a.membership.liveNodeIds()).to.deep.equal(['a', 'b']);
    await clock.tickAsync(10 * FAILURE_TIMEOUT_MS);
    expect(leaves(a.events)).to.deep.equal(['b:failed']);
  });

  it('judges a record found at start by this node\'s clock: a dead node is failed failureTimeoutMs after we started', async () => {
    const b = node('b');
    await b.membership.start();
    await b.membership.close();
    await clock.tickAsync(60_000);
    const a = node('a');
    await a.membership.start();
    expect(a.membership.liveNodeIds()).to.deep.equal(['a', 'b']);
    await clock.tickAsync(FAILURE_TIMEOUT_MS);
    expect(a.membership.liveNodeIds()).to.deep.equal(['a']);
    expect(leaves(a.events)).to.deep.equal(['b:failed']);
  });

  it('ignores and reports undecodable records and records filed under another node id', async () => {
    const a = node('a');
    await a.membership.start();
    const raw = new MemoryKV(bucket);
    await raw.put(subjects.memberKey('garbage'), new TextEncoder().encode('{not json'));
    await raw.put(subjects.memberKey('shape'), encode({ nodeId: 'shape', startedAt: 'yesterday' }));
    await raw.put(subjects.memberKey('impostor'), encode({ nodeId: 'a', startedAt: 1, heartbeatAt: 1, actors: 0, shards: 0 }));
    await clock.tickAsync(0);
    expect(a.errors).to.have.length(3);
    for (const e of a.errors) expect(e).to.be.instanceOf(DecodeError);
    expect(a.membership.liveNodeIds()).to.deep.equal(['a']);
    expect(joins(a.events)).to.deep.equal(['a']);
  });

  it('retries and reports a heartbeat that cannot be written, and a node that cannot write fails', async () => {
    const a = node('a');
    const b = node('b');
    await a.membership.start();
    await b.membership.start();
    const put = sinon.stub(b.kv, 'put').rejects(new Error('KV unavailable'));
    await clock.tickAsync(3 * HEARTBEAT_MS);
    expect(b.errors.map((e) => e.message)).to.deep.equal(['KV unavailable', 'KV unavailable', 'KV unavailable']);
    expect(a.membership.isLive('b')).to.equal(true);
    await clock.tickAsync(FAILURE_TIMEOUT_MS);
    expect(leaves(a.events)).to.deep.equal(['b:failed']);
    expect(b.membership.isLive('b')).to.equal(true); // its own view: always live while started
    put.restore();
    await clock.tickAsync(HEARTBEAT_MS);
    expect(a.membership.isLive('b')).to.equal(true);
    expect(joins(a.events)).to.deep.equal(['a', 'b', 'b']);
  });

  it('stops listing anyone after close, and start rejects when the first write fails', async () => {
    const a = node('a');
    await a.membership.start();
    await a.membership.close();
    expect(a.membership.liveNodeIds()).to.deep.equal([]);
    const c = node('c');
    sinon.stub(c.kv, 'put').rejects(new Error('KV unavailable'));
    let caught: unknown;
    await c.membership.start().catch((e: unknown) => (caught = e));
    expect((caught as Error).message).to.equal('KV unavailable');
    expect(c.membership.isLive('c')).to.equal(false);
  });
});
