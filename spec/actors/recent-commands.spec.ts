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
    const recent = new RecentCommands('c1', 1);
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
    const recent = new RecentCommands(first, 4);
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
});
