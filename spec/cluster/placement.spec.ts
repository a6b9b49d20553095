import { expect } from 'chai';
import {
  initialOwners,
  MAX_SHARD_COUNT,
  NoNodesError,
  PlacementArgumentError,
  rebalanceShards,
  shardOf,
  type Rebalance,
  type RebalanceOptions,
} from '../../lib/cluster/placement.js';
import { mulberry32 } from '../support/random.js';

const SHARD_COUNTS = [64, 100, 256, 1000, 4096];
const NODE_COUNTS = [1, 2, 3, 5, 7, 16, 33, 64];
const COMBOS = SHARD_COUNTS.flatMap((s) => NODE_COUNTS.filter((n) => n <= s).map((n) => [s, n] as const));

function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

const nodeIds = (from: number, to: number): string[] => Array.from({ length: to - from }, (_, i) => `node-${from + i}`);

/**
 * The fewest moves to any balanced map, derived independently of the implementation:
 * a live node can keep at most min(owned, its quota) shards, everything else moves.
 * Quotas are floor(S/N) for all, plus one for S mod N nodes; a +1 keeps one more shard
 * exactly for a node owning more than floor(S/N), so at most that many +1s help.
 */
function minimalMoves(owners: readonly (string | null)[], nodes: readonly string[]): number {
  const live = new Set(nodes);
  const owned = new Map<string, number>([...live].map((n) => [n, 0]));
  for (const o of owners) if (o !== null && live.has(o)) owned.set(o, owned.get(o)! + 1);
  const base = Math.floor(owners.length / live.size);
  let kept = 0;
  let aboveBase = 0;
  for (const c of owned.values()) {
    kept += Math.min(c, base);
    if (c > base) aboveBase++;
  }
  kept += Math.min(owners.length % live.size, aboveBase);
  return owners.length - kept;
}

function loads(owners: readonly string[], nodes: readonly string[]): number[] {
  const owned = new Map<string, number>(nodes.map((n) => [n, 0]));
  for (const o of owners) owned.set(o, owned.get(o)! + 1);
  return [...owned.values()];
}

// chai's deep equality is slow on thousands of moves; the JSON of plain data compares the same.
const json = (value: unknown): string => JSON.stringify(value);

/**
 * Calls rebalanceShards and checks every property that holds after any call: inputs
 * untouched, only live owners, moves exactly the diff, minimal (and balanced when
 * uncapped), and the same answer for a shuffled, duplicated node list.
 */
function checkedRebalance(
  owners: readonly (string | null)[],
  nodes: readonly string[],
  random: () => number,
  options?: RebalanceOptions,
): Rebalance {
  const ownersBefore = [...owners];
  const nodesBefore = [...nodes];
  const result = rebalanceShards(Object.freeze([...owners]), Object.freeze([...nodes]), options);
  rebalanceShards(owners, nodes, options);
  expect(json(owners)).to.equal(json(ownersBefore));
  expect(json(nodes)).to.equal(json(nodesBefore));

  const live = new Set(nodes);
  expect(result.owners).to.have.length(owners.length);
  expect(result.owners.filter((o) => !live.has(o)), 'owners not live').to.deep.equal([]);

  const diff = owners.flatMap((before, shard) => {
    const from = before !== null && live.has(before) ? before : null;
    const to = result.owners[shard];
    return from === to ? [] : [{ shard, from, to }];
  });
  expect(json(result.moves)).to.equal(json(diff));

  if (options === undefined) {
    const counts = loads(result.owners, [...live]);
    expect(Math.max(...counts) - Math.min(...counts), 'max - min shards per node').to.be.at.most(1);
    const minimal = minimalMoves(owners, nodes);
    expect(result.moves.length).to.be.at.most(minimal * 1.05);
    expect(result.moves.length).to.equal(minimal);
  }

  const noisy = shuffled([...nodes, ...nodes.slice(0, 2)], random);
  expect(json(rebalanceShards(owners, noisy, options))).to.equal(json(result));
  return result;
}

describe('placement', () => {
  describe('shardOf', () => {
    it('is MurmurHash3 x86_32 with seed 0: the published vectors, seen through 2^32 shards', () => {
      expect(shardOf('', MAX_SHARD_COUNT)).to.equal(0);
      expect(shardOf('\0\0\0\0', MAX_SHARD_COUNT)).to.equal(0x2362f9de);
      expect(shardOf('abc', MAX_SHARD_COUNT)).to.equal(0xb3dd93fa);
      expect(shardOf('hello', MAX_SHARD_COUNT)).to.equal(0x248bfa47);
      expect(shardOf('The quick brown fox jumps over the lazy dog', MAX_SHARD_COUNT)).to.equal(0x2e4ff723);
    });

    it('keeps the pinned shards of a few ids (any change to the hash breaks routing)', () => {
      const pinned = {
        'account-1': [0xb226faa1, 977, 2721],
        'acc-42': [0xa4d55fc8, 112, 4040],
        'order/2024/0001': [0x571cb43f, 943, 1087],
        'café': [0x241c0f08, 632, 3848],
        '日本語': [0xa5a47297, 879, 663],
        '🙂 smile': [0x52c70ed1, 169, 3793],
        ['x'.repeat(1024)]: [0x31c89c43, 787, 3139],
      };
      for (const [id, [hash, of1000, of4096]] of Object.entries(pinned)) {
        expect(shardOf(id, MAX_SHARD_COUNT), id).to.equal(hash);
        expect(shardOf(id, 1000), id).to.equal(of1000);
        expect(shardOf(id, 4096), id).to.equal(of4096);
        expect(shardOf(id, 1), id).to.equal(0);
      }
    });

    it('hashes the UTF-8 bytes TextEncoder gives, lone surrogates included', () => {
      const random = mulberry32(7);
      const samples = ['\ud800', 'a\udc00b', '\ud83d', 'x\ud83d\ude42\ud83d', 'é', '\u0800', '\uffff', '\u{10ffff}'];
      for (let i = 0; i < 500; i++) {
        const codes = Array.from({ length: Math.floor(random() * 12) }, () => {
          const r = random();
          return Math.floor(r < 0.5 ? random() * 0x80 : r < 0.8 ? random() * 0x800 : random() * 0x10000);
        });
        samples.push(String.fromCharCode(...codes));
      }
      for (const id of samples) {
        expect(shardOf(id, MAX_SHARD_COUNT), JSON.stringify(id)).to.equal(referenceMurmur3(new TextEncoder().encode(id)));
      }
    });

    it('spreads sequential ids evenly over power-of-two and other shard counts', () => {
      for (const shards of [256, 1000]) {
        const counts = new Array<number>(shards).fill(0);
        const ids = shards * 200;
        for (let i = 0; i < ids; i++) counts[shardOf(`account-${i}`, shards)]++;
        // 200 expected per shard; a good hash stays well within ±35% (about 5 sigma).
        expect(Math.min(...counts), `min of ${shards}`).to.be.above(130);
        expect(Math.max(...counts), `max of ${shards}`).to.be.below(270);
      }
    });

    it('rejects a shard count that is not an integer from 1 to 2^32', () => {
      for (const bad of [0, -1, 1.5, NaN, Infinity, 2 ** 32 + 1, Number.MAX_SAFE_INTEGER + 1]) {
        expect(() => shardOf('a', bad), String(bad)).to.throw(PlacementArgumentError).with.property('argument', 'shardCount');
      }
      expect(() => shardOf('a', 0)).to.throw(/invalid shardCount 0/);
    });
  });

  describe('rebalanceShards', () => {
    it('places every shard evenly at first, with minimal moves, for every size', () => {
      const random = mulberry32(1);
      for (const [shards, nodes] of COMBOS) {
        const { owners, moves } = checkedRebalance(new Array(shards).fill(null), nodeIds(0, nodes), random);
        expect(moves).to.have.length(shards);
        expect(moves.every((m) => m.from === null)).to.equal(true);
        expect(initialOwners(shards, nodeIds(0, nodes))).to.deep.equal(owners);
      }
    });

    it('on a join from k to k+1 nodes moves only floor(S/(k+1)) shards, all to the newcomer', () => {
      const random = mulberry32(2);
      for (const [shards, nodes] of COMBOS) {
        if (nodes + 1 > shards) continue;
        const before = initialOwners(shards, nodeIds(0, nodes));
        const { moves } = checkedRebalance(before, nodeIds(0, nodes + 1), random);
        expect(moves, `${shards} shards, ${nodes} → ${nodes + 1}`).to.have.length(Math.floor(shards / (nodes + 1)));
        expect(moves.every((m) => m.to === `node-${nodes}` && m.from !== null)).to.equal(true);
      }
    });

    it('on a graceful leave moves only the leaver’s shards, with from: null', () => {
      const random = mulberry32(3);
      for (const [shards, nodes] of COMBOS) {
        if (nodes === 1) continue;
        const before = initialOwners(shards, nodeIds(0, nodes));
        const leaver = `node-${Math.floor(random() * nodes)}`;
        const remaining = nodeIds(0, nodes).filter((n) => n !== leaver);
        const { moves } = checkedRebalance(before, remaining, random);
        expect(moves.map((m) => m.shard)).to.deep.equal(before.flatMap((o, s) => (o === leaver ? [s] : [])));
        expect(moves.every((m) => m.from === null)).to.equal(true);
      }
    });

    it('on a crash of a third of the nodes moves only their shards', () => {
      const random = mulberry32(4);
      for (const [shards, nodes] of COMBOS) {
        if (nodes < 3) continue;
        const before = initialOwners(shards, nodeIds(0, nodes));
        const crashed = new Set(shuffled(nodeIds(0, nodes), random).slice(0, Math.floor(nodes / 3)));
        const survivors = nodeIds(0, nodes).filter((n) => !crashed.has(n));
        const { moves } = checkedRebalance(before, survivors, random);
        expect(moves).to.have.length(before.filter((o) => crashed.has(o)).length);
        expect(moves.every((m) => m.from === null && !crashed.has(m.to))).to.equal(true);
      }
    });

    it('stays balanced and minimal through random joins, leaves and crashes', () => {
      const random = mulberry32(5);
      let next = 1000;
      for (const [shards, start] of COMBOS) {
        let nodes = nodeIds(0, start);
        let owners = initialOwners(shards, nodes);
        for (let step = 0; step < 12; step++) {
          const r = random();
          if (r < 0.35 && nodes.length < shards) {
            const joining = 1 + Math.floor(random() * 3);
            nodes = [...nodes, ...nodeIds(next, next + joining)].slice(0, shards);
            next += joining;
          } else if (r < 0.7 && nodes.length > 1) {
            const leaving = nodes[Math.floor(random() * nodes.length)];
            nodes = nodes.filter((n) => n !== leaving);
          } else if (nodes.length > 2) {
            const crashing = 1 + Math.floor(random() * Math.ceil(nodes.length / 3));
            nodes = shuffled(nodes, random).slice(crashing);
          }
          owners = checkedRebalance(owners, nodes, random).owners;
        }
      }
    });

    it('reaches a balanced map with minimal moves from arbitrary, lopsided maps', () => {
      const random = mulberry32(6);
      for (const [shards, nodes] of COMBOS) {
        for (let trial = 0; trial < 3; trial++) {
          // Skewed loads plus dead owners, unknown owners and holes.
          const live = nodeIds(0, nodes);
          const owners = Array.from({ length: shards }, (): string | null => {
            const r = random();
            if (r < 0.1) return null;
            if (r < 0.2) return `gone-${Math.floor(random() * 5)}`;
            return live[Math.floor(random() ** 3 * nodes)];
          });
          checkedRebalance(owners, live, random);
        }
      }
    });

    it('minimalMoves (the spec’s yardstick) agrees with a brute force over every balanced map', () => {
      const random = mulberry32(8);
      for (let trial = 0; trial < 60; trial++) {
        const shards = 1 + Math.floor(random() * 6);
        const nodes = nodeIds(0, 1 + Math.floor(random() * 3));
        const pool = [...nodes, null, 'gone'];
        const owners = Array.from({ length: shards }, () => pool[Math.floor(random() * pool.length)]);
        let best = Infinity;
        for (let code = 0; code < nodes.length ** shards; code++) {
          const target = Array.from({ length: shards }, (_, s) => nodes[Math.floor(code / nodes.length ** s) % nodes.length]);
          const counts = loads(target, nodes);
          if (Math.max(...counts) - Math.min(...counts) > 1) continue;
          best = Math.min(best, target.filter((o, s) => o !== owners[s]).length);
        }
        expect(minimalMoves(owners, nodes), JSON.stringify(owners)).to.equal(best);
        checkedRebalance(owners, nodes, random);
      }
    });

    it('deals the moving shards round-robin, in ascending shard order', () => {
      const { moves } = rebalanceShards(new Array(6).fill(null), ['b', 'a', 'c']);
      expect(moves).to.deep.equal([
        { shard: 0, from: null, to: 'a' },
        { shard: 1, from: null, to: 'b' },
        { shard: 2, from: null, to: 'c' },
        { shard: 3, from: null, to: 'a' },
        { shard: 4, from: null, to: 'b' },
        { shard: 5, from: null, to: 'c' },
      ]);
      // The +1 quota stays with the node that already owns the most.
      const joined = rebalanceShards(['a', 'a', 'a', 'b', 'b'], ['a', 'b', 'c']);
      expect(joined.moves).to.deep.equal([{ shard: 2, from: 'a', to: 'c' }]);
    });

    it('handles zero shards, more nodes than shards, holes and duplicate nodes', () => {
      expect(rebalanceShards([], ['a'])).to.deep.equal({ owners: [], moves: [] });
      expect(initialOwners(0, ['a', 'b'])).to.deep.equal([]);
      const sparse = rebalanceShards(['x', 'y'], ['c', 'b', 'a', 'b']);
      expect(sparse.owners).to.deep.equal(['a', 'b']);
      const holes = rebalanceShards(new Array<string | null>(3), ['a']);
      expect(holes.moves.map((m) => m.from)).to.deep.equal([null, null, null]);
      expect(rebalanceShards(['a', 'a'], ['a', 'a']).moves).to.deep.equal([]);
    });

    it('throws NoNodesError without nodes, and PlacementArgumentError for bad options', () => {
      expect(() => rebalanceShards([null, 'a'], [])).to.throw(NoNodesError, /cannot place 2 shard\(s\): no live node/);
      expect(() => initialOwners(4, [])).to.throw(NoNodesError).with.property('code', 'NO_NODES');
      expect(() => initialOwners(-1, ['a'])).to.throw(PlacementArgumentError);
      expect(() => initialOwners(1.5, ['a'])).to.throw(PlacementArgumentError);
      for (const maxMoves of [0, -1, 1.5, NaN, Infinity]) {
        expect(() => rebalanceShards(['a'], ['a'], { maxMoves }), `maxMoves ${maxMoves}`)
          .to.throw(PlacementArgumentError)
          .with.property('argument', 'maxMoves');
      }
      for (const maxMovesRatio of [0, -0.1, 1.01, NaN]) {
        expect(() => rebalanceShards(['a'], ['a'], { maxMovesRatio }), `maxMovesRatio ${maxMovesRatio}`)
          .to.throw(PlacementArgumentError)
          .with.property('argument', 'maxMovesRatio');
      }
    });

    describe('with a cap on moves per round', () => {
      /** Rebalances round after round until nothing moves; checks every round on the way. */
      function converge(owners: readonly (string | null)[], nodes: readonly string[], options: RebalanceOptions, cap: number) {
        const random = mulberry32(9);
        const minimal = minimalMoves(owners, nodes);
        const orphans = owners.filter((o) => o === null || !nodes.includes(o)).length;
        let current = owners;
        let rounds = 0;
        let total = 0;
        for (;;) {
          const { owners: next, moves } = checkedRebalance(current, nodes, random, options);
          rounds++;
          total += moves.length;
          expect(moves.filter((m) => m.from !== null).length, `round ${rounds}`).to.be.at.most(cap);
          // Orphans never wait for a later round.
          if (rounds === 1) expect(moves.filter((m) => m.from === null)).to.have.length(orphans);
          current = next;
          if (moves.length === 0) break;
          expect(rounds).to.be.at.most(Math.ceil(minimal / cap) + 1);
        }
        expect(rounds, 'rounds').to.be.at.most(Math.ceil(minimal / cap) + 1);
        expect(total, 'moves over all rounds').to.equal(minimal);
        const counts = loads(current as string[], [...new Set(nodes)]);
        expect(Math.max(...counts) - Math.min(...counts)).to.be.at.most(1);
      }

      it('converges from a join, moving at most maxMoves between live nodes per round', () => {
        converge(initialOwners(4096, nodeIds(0, 15)), nodeIds(0, 16), { maxMoves: 50 }, 50);
        converge(initialOwners(1000, nodeIds(0, 3)), nodeIds(0, 7), { maxMoves: 17 }, 17);
      });

      it('takes the smaller of maxMoves and floor(maxMovesRatio × S), and never less than 1', () => {
        converge(initialOwners(1000, nodeIds(0, 4)), nodeIds(0, 5), { maxMoves: 80, maxMovesRatio: 0.05 }, 50);
        converge(initialOwners(1000, nodeIds(0, 4)), nodeIds(0, 5), { maxMoves: 30, maxMovesRatio: 0.05 }, 30);
        converge(initialOwners(100, nodeIds(0, 2)), nodeIds(0, 3), { maxMovesRatio: 0.29 }, 29);
        converge(initialOwners(64, nodeIds(0, 7)), nodeIds(0, 8), { maxMovesRatio: 0.001 }, 1);
      });

      it('assigns every orphan at once, beyond the cap, and caps only the live moves', () => {
        const before = initialOwners(1000, nodeIds(0, 10));
        const survivors = [...nodeIds(0, 4), ...nodeIds(10, 18)];
        const { moves } = rebalanceShards(before, survivors, { maxMoves: 5 });
        expect(moves.filter((m) => m.from === null)).to.have.length(600);
        expect(moves.filter((m) => m.from !== null)).to.have.length(5);
        converge(before, survivors, { maxMoves: 5 }, 5);
      });

      it('takes from the most loaded and gives to the least loaded first', () => {
        const owners = [...new Array(6).fill('a'), ...new Array(3).fill('b'), 'c'];
        const { owners: next } = rebalanceShards(owners, ['a', 'b', 'c', 'd'], { maxMoves: 3 });
        expect(loads(next, ['a', 'b', 'c', 'd'])).to.deep.equal([3, 3, 2, 2]);
      });

      it('converges from random lopsided maps and random caps', () => {
        const random = mulberry32(10);
        for (let trial = 0; trial < 30; trial++) {
          const [shards, nodes] = COMBOS[Math.floor(random() * COMBOS.length)];
          const live = nodeIds(0, nodes);
          const owners = Array.from({ length: shards }, () =>
            random() < 0.05 ? null : live[Math.floor(random() ** 4 * nodes)],
          );
          const maxMoves = 1 + Math.floor(random() * shards * 0.2);
          converge(owners, live, { maxMoves }, maxMoves);
        }
      });
    });
  });
});

/** Straight from the MurmurHash3_x86_32 reference, over bytes: the yardstick for shardOf's streaming UTF-8. */
function referenceMurmur3(bytes: Uint8Array): number {
  const rotl = (x: number, r: number) => (x << r) | (x >>> (32 - r));
  const mixK = (k: number) => Math.imul(rotl(Math.imul(k, 0xcc9e2d51), 15), 0x1b873593);
  let h = 0;
  const blocks = bytes.length >> 2;
  for (let b = 0; b < blocks; b++) {
    const i = b * 4;
    const k = bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    h = (Math.imul(rotl(h ^ mixK(k), 13), 5) + 0xe6546b64) | 0;
  }
  let tail = 0;
  switch (bytes.length & 3) {
    case 3:
      tail ^= bytes[blocks * 4 + 2] << 16;
    // falls through
    case 2:
      tail ^= bytes[blocks * 4 + 1] << 8;
    // falls through
    case 1:
      tail ^= bytes[blocks * 4];
      h ^= mixK(tail);
  }
  h ^= bytes.length;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
