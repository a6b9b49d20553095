/**
 * The behaviour every `ClusterKV` adapter shares, run against each adapter by its own
 * spec. Two handles on one bucket stand for two nodes. Nothing here sleeps: deliveries
 * are awaited with a deadline, and a non-delivery is proven by a later write that the
 * same watch does deliver (a watch delivers in revision order).
 */
import { expect } from 'chai';
import sinon from 'sinon';
import { RevisionConflictError, type ClusterKV, type KvChange } from '../../lib/cluster/kv/kv.js';
import { ClosedError } from '../../lib/errors.js';

export interface ClusterKvBackend {
  /** A new handle on the backend's one bucket, as another node would open it. */
  kv(): Promise<ClusterKV>;
  /** Closes every handle it made (and whatever it opened for them). */
  close(): Promise<void>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
export const bytes = (text: string): Uint8Array => encoder.encode(text);
export const text = (value: Uint8Array | undefined): string | undefined => (value === undefined ? undefined : decoder.decode(value));

/** A change as the specs compare it: the value as text. */
export interface SeenChange {
  readonly key: string;
  readonly value: string | undefined;
  readonly revision: number;
}

/** Collects what a watch delivers and waits for it with a deadline instead of sleeping. */
export class Watcher {
  readonly seen: SeenChange[] = [];
  private readonly waiters = new Set<() => void>();

  readonly handler = (change: KvChange): void => {
    this.seen.push({ key: change.key, value: text(change.value), revision: change.revision });
    for (const wake of [...this.waiters]) wake();
  };

  /** Resolves once `predicate` holds for what was delivered; rejects after `timeoutMs`. */
  until(predicate: (seen: readonly SeenChange[]) => boolean, what: string, timeoutMs = 5000): Promise<void> {
    if (predicate(this.seen)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const wake = () => {
        if (!predicate(this.seen)) return;
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(wake);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; seen ${JSON.stringify(this.seen)}`));
      }, timeoutMs);
      this.waiters.add(wake);
    });
  }

  /** Waits for the change that wrote `revision`. */
  sees(revision: number): Promise<void> {
    return this.until((seen) => seen.some((c) => c.revision === revision), `revision ${revision}`);
  }
}

/** The error a promise rejects with; fails the spec when it fulfils instead. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection, but the promise fulfilled');
}

export function clusterKvContract(name: string, factory: () => Promise<ClusterKvBackend>): void {
  describe(`ClusterKV contract: ${name}`, () => {
    let backend: ClusterKvBackend;
    let node1: ClusterKV;
    let node2: ClusterKV;

    beforeEach(async () => {
      backend = await factory();
      node1 = await backend.kv();
      node2 = await backend.kv();
    });

    afterEach(async () => {
      sinon.restore();
      await backend.close();
    });

    describe('reads and writes', () => {
      it('gets nothing for a missing key, and what another node put, with its revision', async () => {
        expect(await node1.get('leader')).to.equal(undefined);
        const revision = await node1.put('leader', bytes('n1'));
        const entry = await node2.get('leader');
        expect(entry?.key).to.equal('leader');
        expect(text(entry?.value)).to.equal('n1');
        expect(entry?.revision).to.equal(revision);
      });

      it('gives every write of the bucket a higher revision than the one before, across keys', async () => {
        const revisions = [
          await node1.put('members.a', bytes('1')),
          await node2.put('members.b', bytes('1')),
          await node1.create('leader', bytes('a')),
          await node2.put('members.a', bytes('2')),
        ];
        revisions.push(await node1.update('leader', bytes('b'), revisions[2]));
        for (let i = 1; i < revisions.length; i++) expect(revisions[i]).to.be.greaterThan(revisions[i - 1]);
        expect((await node2.get('members.a'))?.revision).to.equal(revisions[3]);
        expect((await node2.get('leader'))?.revision).to.equal(revisions[4]);
      });

      it('keeps stored values apart from the buffers of the caller, Node Buffers too', async () => {
        const value = bytes('abc');
        const buffer = Buffer.from('def');
        await node1.put('shardmap', value);
        await node1.put('leader', buffer);
        value[0] = 0x7a;
        buffer[0] = 0x7a;
        const entry = await node1.get('shardmap');
        expect(text(entry?.value)).to.equal('abc');
        expect(text((await node1.get('leader'))?.value)).to.equal('def');
        entry!.value[0] = 0x7a;
        expect(text((await node2.get('shardmap'))?.value)).to.equal('abc');
      });

      it('deletes a key for every node', async () => {
        await node1.put('members.a', bytes('1'));
        await node2.delete('members.a');
        expect(await node1.get('members.a')).to.equal(undefined);
        expect(await node2.get('members.a')).to.equal(undefined);
      });
    });

    describe('create and update', () => {
      it('creates an absent key and refuses to create it again, writing nothing', async () => {
        const revision = await node1.create('leader', bytes('n1'));
        const error = await rejection(node2.create('leader', bytes('n2')));
        expect(error).to.be.instanceOf(RevisionConflictError);
        expect(error).to.include({ key: 'leader', expectedRevision: undefined, code: 'REVISION_CONFLICT' });
        const entry = await node1.get('leader');
        expect(text(entry?.value)).to.equal('n1');
        expect(entry?.revision).to.equal(revision);
      });

      it('updates at the current revision and refuses a stale one, writing nothing', async () => {
        const first = await node1.create('leader', bytes('n1'));
        const second = await node1.update('leader', bytes('n1-renewed'), first);
        expect(second).to.be.greaterThan(first);
        const error = await rejection(node2.update('leader', bytes('n2'), first));
        expect(error).to.be.instanceOf(RevisionConflictError);
        expect(error).to.include({ key: 'leader', expectedRevision: first });
        const entry = await node2.get('leader');
        expect(text(entry?.value)).to.equal('n1-renewed');
        expect(entry?.revision).to.equal(second);
      });

      it('refuses to update a key that does not exist', async () => {
        expect(await rejection(node1.update('leader', bytes('x'), 1))).to.be.instanceOf(RevisionConflictError);
        expect(await rejection(node1.update('leader', bytes('x'), 0))).to.be.instanceOf(RevisionConflictError);
        expect(await node1.get('leader')).to.equal(undefined);
      });

      it('creates a key again after it was deleted, once', async () => {
        const first = await node1.create('leader', bytes('n1'));
        await node1.delete('leader');
        const again = await node2.create('leader', bytes('n2'));
        expect(again).to.be.greaterThan(first);
        expect(text((await node1.get('leader'))?.value)).to.equal('n2');
        expect(await rejection(node1.create('leader', bytes('n1')))).to.be.instanceOf(RevisionConflictError);
        expect(await rejection(node1.update('leader', bytes('n1'), first))).to.be.instanceOf(RevisionConflictError);
      });

      it('lets exactly one of many concurrent creates win', async () => {
        const attempts = Array.from({ length: 10 }, (_, i) => (i % 2 ? node1 : node2).create('leader', bytes(`n${i}`)));
        const outcomes = await Promise.allSettled(attempts);
        const winners = outcomes.flatMap((o, i) => (o.status === 'fulfilled' ? [{ i, revision: o.value }] : []));
        expect(winners).to.have.length(1);
        for (const o of outcomes) if (o.status === 'rejected') expect(o.reason).to.be.instanceOf(RevisionConflictError);
        const entry = await node1.get('leader');
        expect(text(entry?.value)).to.equal(`n${winners[0].i}`);
        expect(entry?.revision).to.equal(winners[0].revision);
      });

      it('lets exactly one of many concurrent updates at the same revision win', async () => {
        const base = await node1.create('shardmap', bytes('epoch-1'));
        const attempts = Array.from({ length: 10 }, (_, i) => (i % 2 ? node1 : node2).update('shardmap', bytes(`epoch-2-by-${i}`), base));
        const outcomes = await Promise.allSettled(attempts);
        const winners = outcomes.flatMap((o, i) => (o.status === 'fulfilled' ? [{ i, revision: o.value }] : []));
        expect(winners).to.have.length(1);
        for (const o of outcomes) if (o.status === 'rejected') expect(o.reason).to.deep.include({ key: 'shardmap', expectedRevision: base });
        const entry = await node2.get('shardmap');
        expect(text(entry?.value)).to.equal(`epoch-2-by-${winners[0].i}`);
        expect(entry?.revision).to.equal(winners[0].revision);
      });
    });

    describe('watch', () => {
      it('resolves at once on an empty bucket, then delivers what is written', async () => {
        const watcher = new Watcher();
        await node1.watch('members.', watcher.handler);
        expect(watcher.seen).to.deep.equal([]);
        const revision = await node2.put('members.a', bytes('1'));
        await watcher.sees(revision);
        expect(watcher.seen).to.deep.equal([{ key: 'members.a', value: '1', revision }]);
      });

      it('delivers the current entries in key order before resolving, then every change in order, to both nodes', async () => {
        const rb = await node1.put('members.b', bytes('b1'));
        const ra = await node2.put('members.a', bytes('a1'));
        await node1.put('members.c', bytes('c1'));
        await node1.delete('members.c');
        const watchers = [new Watcher(), new Watcher()];
        await node1.watch('members.', watchers[0].handler);
        await node2.watch('members.', watchers[1].handler);
        const current = [
          { key: 'members.a', value: 'a1', revision: ra },
          { key: 'members.b', value: 'b1', revision: rb },
        ];
        // members.c was deleted before the watch began: not a current entry.
        for (const w of watchers) expect(w.seen).to.deep.equal(current);

        const changes = [
          { key: 'members.d', value: 'd1', revision: await node1.put('members.d', bytes('d1')) },
          { key: 'members.a', value: 'a2', revision: await node2.update('members.a', bytes('a2'), ra) },
        ];
        await node1.delete('members.b');
        const deleted = await node1.get('members.b');
        expect(deleted).to.equal(undefined);
        const last = await node2.put('members.d', bytes('d2'));
        await Promise.all(watchers.map((w) => w.sees(last)));
        for (const w of watchers) {
          const later = w.seen.slice(current.length);
          expect(later.slice(0, 2)).to.deep.equal(changes);
          expect(later[2]).to.deep.include({ key: 'members.b', value: undefined });
          expect(later[2].revision).to.be.greaterThan(changes[1].revision).and.lessThan(last);
          expect(later[3]).to.deep.equal({ key: 'members.d', value: 'd2', revision: last });
          expect(later).to.have.length(4);
        }
      });

      it('watches one exact key: its value, its updates and its deletion', async () => {
        const taken = await node1.create('leader', bytes('n1'));
        const watcher = new Watcher();
        await node2.watch('leader', watcher.handler);
        expect(watcher.seen).to.deep.equal([{ key: 'leader', value: 'n1', revision: taken }]);
        const renewed = await node1.update('leader', bytes('n1'), taken);
        await node1.delete('leader');
        const retaken = await node2.create('leader', bytes('n2'));
        await watcher.sees(retaken);
        expect(watcher.seen.map((c) => c.value)).to.deep.equal(['n1', 'n1', undefined, 'n2']);
        expect(watcher.seen[1].revision).to.equal(renewed);
      });

      it('sees only its own keys: "members." not "membersX", "leader" not "leaderboard"', async () => {
        await node1.put('membersX', bytes('old'));
        await node1.put('leaderboard', bytes('old'));
        await node1.put('shardmap', bytes('old'));
        const members = new Watcher();
        const leader = new Watcher();
        await node2.watch('members.', members.handler);
        await node2.watch('leader', leader.handler);
        expect(members.seen).to.deep.equal([]);
        expect(leader.seen).to.deep.equal([]);

        for (const key of ['membersX', 'leaderboard', 'shardmap', 'members', 'leader.x']) await node1.put(key, bytes('new'));
        await node1.delete('membersX');
        // Each watch delivers in revision order, so these last writes prove nothing else came.
        const member = await node1.put('members.a.b', bytes('m'));
        const lease = await node1.put('leader', bytes('l'));
        await Promise.all([members.sees(member), leader.sees(lease)]);
        expect(members.seen).to.deep.equal([{ key: 'members.a.b', value: 'm', revision: member }]);
        expect(leader.seen).to.deep.equal([{ key: 'leader', value: 'l', revision: lease }]);
      });

      it('stops delivering once unwatched', async () => {
        const stopped = new Watcher();
        const control = new Watcher();
        const unwatch = await node1.watch('members.', stopped.handler);
        await node1.watch('members.', control.handler);
        const before = await node2.put('members.a', bytes('1'));
        await stopped.sees(before);
        unwatch();
        unwatch();
        const after = await node2.put('members.a', bytes('2'));
        await control.sees(after);
        const sentinel = await node2.put('members.b', bytes('3'));
        await control.sees(sentinel);
        expect(stopped.seen.map((c) => c.revision)).to.deep.equal([before]);
      });

      it('keeps delivering after a handler throws, and reports what it threw', async () => {
        const warn = sinon.stub(process, 'emitWarning');
        await node1.put('members.a', bytes('1'));
        const watcher = new Watcher();
        await node2.watch('members.', (change) => {
          watcher.handler(change);
          throw new Error(`handler failed on ${change.key}`);
        });
        expect(watcher.seen).to.have.length(1);
        const second = await node1.put('members.b', bytes('2'));
        const third = await node1.put('members.a', bytes('3'));
        await watcher.sees(third);
        expect(watcher.seen.map((c) => c.revision).slice(1)).to.deep.equal([second, third]);
        const reports = warn.getCalls().map((call) => String(call.args[0])).filter((message) => message.includes('handler failed'));
        expect(reports).to.have.length(3);
        expect(reports[0]).to.contain('handler failed on members.a');
      });
    });

    describe('close', () => {
      it('refuses every operation with ClosedError and stops its watches, leaving other nodes working', async () => {
        const closedWatcher = new Watcher();
        const control = new Watcher();
        await node1.watch('members.', closedWatcher.handler);
        await node2.watch('members.', control.handler);
        await node1.close();
        for (const attempt of [
          () => node1.get('leader'),
          () => node1.put('leader', bytes('x')),
          () => node1.create('leader', bytes('x')),
          () => node1.update('leader', bytes('x'), 1),
          () => node1.delete('leader'),
          () => node1.watch('members.', () => undefined),
        ]) {
          expect(await rejection(attempt())).to.be.instanceOf(ClosedError);
        }
        const revision = await node2.put('members.a', bytes('1'));
        await control.sees(revision);
        expect(closedWatcher.seen).to.deep.equal([]);
        expect(text((await node2.get('members.a'))?.value)).to.equal('1');
      });
    });
  });
}
