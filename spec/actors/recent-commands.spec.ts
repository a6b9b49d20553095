/**
 * `RecentCommands` must answer like the insertion-ordered, bounded `Map` it replaced: the
 * version of every id among the last `window`, nothing for older ones, lists oldest first,
 * and a hash match alone is never taken for the id.
 */
import { expect } from 'chai';
import { hashOf, RecentCommands } from '../../lib/actors/recent-commands.js';
import { ResidentActor } from '../../lib/actors/resident-actor.js';

/** The reference: what the `Map` kept. */
function reference(entries: [string, number][], window: number): Map<string, number> {
  const map = new Map<string, number>();
  for (const [id, version] of entries) {
    map.set(id, version);
    if (map.size > window) map.delete(map.keys().next().value as string);
  }
  return map;
}

describe('RecentCommands', () => {
  it('answers like a bounded, insertion-ordered map before, at and past the window', () => {
    for (const window of [1, 2, 3, 7, 128]) {
      for (const count of [0, 1, window - 1, window, window + 1, 3 * window + 2]) {
        const entries = Array.from({ length: Math.max(0, count) }, (_, i): [string, number] => [`load-${i % 5}-${i}`, i + 1]);
        const actor = new ResidentActor('account', 'a');
        for (const [id, version] of entries) actor.remember(id, version, window);
        const expected = reference(entries, window);
        for (const [id] of entries) expect(actor.appliedVersion(id), `window ${window}, ${count} ids, ${id}`).to.equal(expected.get(id));
        expect(actor.appliedVersion('never-sent')).to.equal(undefined);
        expect(actor.recentCommandLists()).to.deep.equal({ ids: [...expected.keys()], versions: [...expected.values()] });
        expect(actor.recentCommands()).to.deep.equal([...expected]);
      }
    }
  });

  it('keeps the newest ids, oldest first, when the window shrinks', () => {
    const recent = RecentCommands.of('c1', 1);
    for (let i = 2; i <= 10; i++) recent.add(`c${i}`, i, 8);
    recent.add('c11', 11, 3);
    expect(recent.lists()).to.deep.equal({ ids: ['c9', 'c10', 'c11'], versions: [9, 10, 11] });
    expect(recent.versionOf('c8')).to.equal(undefined);
    expect(recent.versionOf('c10')).to.equal(10);
  });

  it('remembers nothing with a window under one', () => {
    for (const window of [0, -1, Number.NaN]) {
      const actor = new ResidentActor('account', 'a');
      actor.remember('c1', 1, window);
      expect(actor.appliedVersion('c1')).to.equal(undefined);
      expect(actor.recentCommandLists()).to.deep.equal({ ids: [], versions: [] });
    }
  });

  it('does not take an id for another one with the same hash', () => {
    const seen = new Map<number, string>();
    let pair: [string, string] | undefined;
    for (let i = 0; !pair; i++) {
      const id = `cmd-${i}`;
      const other = seen.get(hashOf(id));
      if (other !== undefined) pair = [other, id];
      else seen.set(hashOf(id), id);
    }
    const [first, second] = pair;
    expect(hashOf(first)).to.equal(hashOf(second));
    const recent = RecentCommands.of(first, 4);
    expect(recent.versionOf(second)).to.equal(undefined);
    recent.add(second, 5, 128);
    expect([recent.versionOf(first), recent.versionOf(second)]).to.deep.equal([4, 5]);
  });

  it('hashes to small integers', () => {
    for (const id of ['', 'a', 'load-255-1000000', '😀'.repeat(40), crypto.randomUUID()]) {
      const hash = hashOf(id);
      expect(Number.isInteger(hash) && hash >= 0 && hash < 2 ** 30, id).to.equal(true);
    }
  });

  describe('known by hash (as a migration carries them)', () => {
    const ids = Array.from({ length: 10 }, (_, i) => `load-${i}`);
    const versions = ids.map((_, i) => i + 3);
    const stored = new Map(ids.map((id, i) => [versions[i], id]));
    const carried = () => {
      const source = RecentCommands.of(ids[0], versions[0]);
      for (let i = 1; i < ids.length; i++) source.add(ids[i], versions[i], 128);
      return source.hashLists();
    };

    it('carries hashes and versions, oldest first, and nothing answers by id until resolved', () => {
      const lists = carried();
      expect(lists).to.deep.equal({ hashes: ids.map(hashOf), versions });
      const recent = RecentCommands.fromHashes(lists.hashes, lists.versions, 128)!;
      expect(recent.resolved).to.equal(false);
      for (const id of ids) {
        expect(recent.versionOf(id)).to.equal(undefined);
        expect(recent.mayBeUnresolved(id)).to.equal(true);
      }
      expect(recent.mayBeUnresolved('never-sent')).to.equal(false);
      expect(recent.unresolvedVersions()).to.deep.equal({ from: 3, to: 12 });
      expect(recent.hashLists()).to.deep.equal(lists);
      recent.resolve(stored);
      expect(recent.resolved).to.equal(true);
      expect(recent.unresolvedVersions()).to.equal(undefined);
      expect(ids.map((id) => recent.versionOf(id))).to.deep.equal(versions);
      expect(recent.lists()).to.deep.equal({ ids, versions });
    });

    it('drops a slot the store has no event for, or whose stored id has another hash', () => {
      const lists = carried();
      const recent = RecentCommands.fromHashes(lists.hashes, lists.versions, 128)!;
      const partial = new Map(stored);
      partial.delete(5);
      partial.set(6, 'another-id');
      recent.resolve(partial);
      expect(recent.resolved).to.equal(true);
      expect(recent.versionOf(ids[2])).to.equal(undefined);
      expect(recent.versionOf(ids[3])).to.equal(undefined);
      expect(recent.versionOf('another-id')).to.equal(undefined);
      expect(recent.mayBeUnresolved(ids[2])).to.equal(false);
      expect(recent.versionOf(ids[4])).to.equal(7);
      const kept = ids.filter((_, i) => i !== 2 && i !== 3);
      expect(recent.lists()).to.deep.equal({ ids: kept, versions: versions.filter((_, i) => i !== 2 && i !== 3) });
      expect(recent.hashLists().hashes).to.deep.equal(kept.map(hashOf));
    });

    it('keeps the newest `window` of them, and is resolved once new ids have pushed them all out', () => {
      const lists = carried();
      const recent = RecentCommands.fromHashes(lists.hashes, lists.versions, 4)!;
      expect(recent.hashLists()).to.deep.equal({ hashes: lists.hashes.slice(-4), versions: versions.slice(-4) });
      expect(RecentCommands.fromHashes([], [], 4)).to.equal(undefined);
      for (let i = 0; i < 3; i++) recent.add(`new-${i}`, 13 + i, 4);
      expect(recent.resolved).to.equal(false);
      expect(recent.unresolvedVersions()).to.deep.equal({ from: 12, to: 12 });
      recent.add('new-3', 16, 4);
      expect(recent.resolved).to.equal(true);
      expect(recent.lists()).to.deep.equal({ ids: ['new-0', 'new-1', 'new-2', 'new-3'], versions: [13, 14, 15, 16] });
    });

    it('keeps unknown slots unknown when the window shrinks', () => {
      const lists = carried();
      const recent = RecentCommands.fromHashes(lists.hashes, lists.versions, 128)!;
      recent.add('new', 13, 3);
      expect(recent.hashLists()).to.deep.equal({ hashes: [hashOf(ids[8]), hashOf(ids[9]), hashOf('new')], versions: [11, 12, 13] });
      expect(recent.unresolvedVersions()).to.deep.equal({ from: 11, to: 12 });
      expect(recent.versionOf('new')).to.equal(13);
      recent.resolve(stored);
      expect(recent.lists()).to.deep.equal({ ids: [ids[8], ids[9], 'new'], versions: [11, 12, 13] });
    });
  });
});
