/**
 * Placement, pure and I/O-free: which shard an actor id falls in (`shardOf`) and which
 * node owns each shard (`rebalanceShards`). The leader plans with these; every node
 * routes with `shardOf`. Being pure, a plan can be reproduced from its inputs alone.
 */
import { NatstateError } from '../errors.js';

/** A shard count or a rebalance option that placement cannot work with. */
export class PlacementArgumentError extends NatstateError {
  constructor(
    readonly argument: 'shardCount' | 'maxMoves' | 'maxMovesRatio',
    readonly value: unknown,
    reason: string,
  ) {
    super('INVALID_PLACEMENT_ARGUMENT', `invalid ${argument} ${String(value)}: ${reason}`);
  }
}

/** Shards cannot be placed: the list of live nodes is empty. */
export class NoNodesError extends NatstateError {
  constructor(readonly shardCount: number) {
    super('NO_NODES', `cannot place ${shardCount} shard(s): no live node was given`);
  }
}

/** Hash values are unsigned 32-bit, so more shards than this could never all be reached. */
export const MAX_SHARD_COUNT = 2 ** 32;

/**
 * The shard of an actor id: `murmur3_x86_32(utf8(actorId), seed 0) mod shardCount`.
 *
 * Exactly, so that any language can reimplement it:
 * - bytes: the UTF-8 encoding of the id as WHATWG `TextEncoder` does it (a lone
 *   surrogate is encoded as U+FFFD, `EF BF BD`);
 * - hash: MurmurHash3 x86 32-bit (Austin Appleby's `MurmurHash3_x86_32`), seed 0,
 *   4-byte blocks read little-endian, taken as an unsigned 32-bit integer;
 * - shard: that integer modulo `shardCount`.
 *
 * Murmur3 rather than FNV-1a: its final avalanche mixes every input bit into the low
 * bits, which FNV-1a's do not, and power-of-two shard counts keep only the low bits.
 * The known vectors pinned in `spec/cluster/placement.spec.ts` fail on any change.
 */
export function shardOf(actorId: string, shardCount: number): number {
  if (!Number.isSafeInteger(shardCount) || shardCount < 1 || shardCount > MAX_SHARD_COUNT) {
    throw new PlacementArgumentError('shardCount', shardCount, `must be an integer from 1 to ${MAX_SHARD_COUNT}`);
  }
  return murmur3(actorId) % shardCount;
}

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

// The hash state of the one murmur3 call running (it is synchronous, so never shared):
// module-level rather than a closure per call, which showed up in the routing profile.
let h = 0;
let length = 0;
let block = 0;
let filled = 0;

/** Streams one UTF-8 byte into the 4-byte blocks: no encoded copy of the id. */
function feed(byte: number): void {
  block |= byte << (filled << 3);
  length++;
  if (++filled === 4) {
    h ^= scramble(block);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
    block = 0;
    filled = 0;
  }
}

function murmur3(text: string): number {
  h = 0; // the seed
  length = 0;
  block = 0;
  filled = 0;
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c < 0x80) {
      feed(c);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < text.length ? text.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
        i++;
      } else {
        c = 0xfffd;
      }
    }
    if (c < 0x800) {
      feed(0xc0 | (c >> 6));
    } else if (c < 0x10000) {
      feed(0xe0 | (c >> 12));
      feed(0x80 | ((c >> 6) & 0x3f));
    } else {
      feed(0xf0 | (c >> 18));
      feed(0x80 | ((c >> 12) & 0x3f));
      feed(0x80 | ((c >> 6) & 0x3f));
    }
    feed(0x80 | (c & 0x3f));
  }
  if (filled > 0) h ^= scramble(block);
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function scramble(k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, C2);
}

export interface RebalanceOptions {
  /** At most this many moves between live nodes per call (an integer >= 1). */
  readonly maxMoves?: number;
  /** At most floor(maxMovesRatio × shard count) moves between live nodes per call, in (0, 1]. */
  readonly maxMovesRatio?: number;
}

export interface ShardMove {
  readonly shard: number;
  /** The live node giving the shard up, or null when it had no live owner. */
  readonly from: string | null;
  readonly to: string;
}

export interface Rebalance {
  /** The new owner of every shard, each one of the live nodes. */
  readonly owners: string[];
  /** Exactly the shards whose owner changed, in ascending shard order. */
  readonly moves: ShardMove[];
}

/**
 * The next shard map and the moves that lead to it.
 *
 * - `owners[shard]` is the current owner. One that is null, or not among `nodes`, is
 *   dead: its shard must move, with `from: null`. A gracefully leaving node is just a
 *   node left out of `nodes` (the migration coordinator, which knows the old map, can
 *   still hand its actors over).
 * - Balanced: every live node ends with floor(S/N) or ceil(S/N) of the S shards.
 * - Minimal: every orphaned shard moves, and each node over its quota gives away
 *   exactly its excess and nothing else. The ceil(S/N) quotas go to the nodes that own
 *   the most shards already (ties: lowest node id), which is what minimises moves.
 *   Donors give away their highest-numbered shards; the moving shards, in ascending
 *   order, are dealt round-robin to the receivers (in node id order), so consecutive
 *   moves land on different nodes.
 * - Capped (`maxMoves`, `maxMovesRatio`; the smaller wins; never below 1, as in Akka's
 *   LeastShardAllocationStrategy): the cap counts only moves between live nodes.
 *   Orphaned shards are always all assigned, beyond the cap, because an unowned shard
 *   is an outage. The capped moves take from the most loaded nodes and give to the
 *   least loaded; calling again with the returned owners continues until balanced, and
 *   the rounds together move exactly as many shards as one uncapped call would.
 * - Deterministic and independent of the order of `nodes` (sorted, duplicates dropped,
 *   ids compared by UTF-16 code units, never by locale). Never mutates its inputs.
 * - O(S + N log N + N log S) time for S shards and N nodes.
 *
 * Throws `NoNodesError` when `nodes` is empty (even for zero shards: a cluster with no
 * live node has nobody to run the plan), `PlacementArgumentError` for a bad option.
 */
export function rebalanceShards(
  owners: readonly (string | null)[],
  nodes: readonly string[],
  options: RebalanceOptions = {},
): Rebalance {
  const shardCount = owners.length;
  const live = [...new Set(nodes)].sort();
  if (live.length === 0) throw new NoNodesError(shardCount);
  const cap = moveCap(shardCount, options);
  const nodeCount = live.length;
  const indexOf = new Map(live.map((id, i) => [id, i]));

  // Owner of each shard as an index into `live`, -1 for an orphan.
  const owner = new Int32Array(shardCount);
  const count = new Array<number>(nodeCount).fill(0);
  let orphans = 0;
  for (let s = 0; s < shardCount; s++) {
    const id = owners[s];
    const i = typeof id === 'string' ? indexOf.get(id) : undefined;
    if (i === undefined) {
      owner[s] = -1;
      orphans++;
    } else {
      owner[s] = i;
      count[i]++;
    }
  }

  const base = Math.floor(shardCount / nodeCount);
  const quota = new Array<number>(nodeCount).fill(base);
  const byLoad = live.map((_, i) => i).sort((a, b) => count[b] - count[a] || a - b);
  for (let k = 0; k < shardCount % nodeCount; k++) quota[byLoad[k]]++;

  let excess = 0;
  for (let i = 0; i < nodeCount; i++) excess += Math.max(0, count[i] - quota[i]);
  const handovers = Math.min(excess, cap);
  // Donors give from the top down (levelling negated counts up), receivers fill from the bottom up.
  const give = levelUp(
    count.map((c) => -c),
    count.map((c, i) => -Math.min(c, quota[i])),
    handovers,
  );
  const take = levelUp(
    count,
    count.map((c, i) => Math.max(c, quota[i])),
    orphans + handovers,
  );

  const moving = new Uint8Array(shardCount);
  for (let s = shardCount - 1; s >= 0; s--) {
    const i = owner[s];
    if (i < 0) {
      moving[s] = 1;
    } else if (give[i] > 0) {
      moving[s] = 1;
      give[i]--;
    }
  }

  // Round-robin deal: each pass hands one shard to every receiver still short. Receivers
  // take at most their quota, so the passes cost O(S + N) in all.
  const dealt = new Int32Array(orphans + handovers);
  const passes = Math.max(...take);
  for (let pass = 0, k = 0; pass < passes; pass++) {
    for (let i = 0; i < nodeCount; i++) if (take[i] > pass) dealt[k++] = i;
  }

  const next = new Array<string>(shardCount);
  const moves: ShardMove[] = [];
  for (let s = 0, k = 0; s < shardCount; s++) {
    const from = owner[s] < 0 ? null : live[owner[s]];
    if (moving[s] === 1) {
      const to = live[dealt[k++]];
      next[s] = to;
      moves.push({ shard: s, from, to });
    } else {
      next[s] = from as string;
    }
  }
  return { owners: next, moves };
}

/** The first shard map for a cluster: `shardCount` shards spread evenly over `nodes`. */
export function initialOwners(shardCount: number, nodes: readonly string[]): string[] {
  if (!Number.isSafeInteger(shardCount) || shardCount < 0) {
    throw new PlacementArgumentError('shardCount', shardCount, 'must be a non-negative integer');
  }
  return rebalanceShards(new Array<null>(shardCount).fill(null), nodes).owners;
}

function moveCap(shardCount: number, { maxMoves, maxMovesRatio }: RebalanceOptions): number {
  let cap = Infinity;
  if (maxMoves !== undefined) {
    if (!Number.isSafeInteger(maxMoves) || maxMoves < 1) {
      throw new PlacementArgumentError('maxMoves', maxMoves, 'must be an integer >= 1');
    }
    cap = maxMoves;
  }
  if (maxMovesRatio !== undefined) {
    if (!(typeof maxMovesRatio === 'number' && maxMovesRatio > 0 && maxMovesRatio <= 1)) {
      throw new PlacementArgumentError('maxMovesRatio', maxMovesRatio, 'must be a number in (0, 1]');
    }
    // The epsilon keeps 0.29 × 100 at 29 despite binary floating point.
    cap = Math.min(cap, Math.floor(maxMovesRatio * shardCount + 1e-9));
  }
  return Math.max(1, cap);
}

/**
 * Water-filling: raises the lowest of `current` first, none above its `ceiling`, by
 * `amount` in all (at most the total room), and returns each one's increase. Ties at
 * the last level go to the lowest index. Binary search on the level: O(N log range).
 */
function levelUp(current: readonly number[], ceiling: readonly number[], amount: number): number[] {
  const gained = (level: number): number => {
    let sum = 0;
    for (let i = 0; i < current.length; i++) sum += Math.max(0, Math.min(ceiling[i], level) - current[i]);
    return sum;
  };
  let low = Math.min(...current);
  let high = Math.max(...ceiling);
  while (low < high) {
    const mid = Math.floor((low + high + 1) / 2);
    if (gained(mid) <= amount) low = mid;
    else high = mid - 1;
  }
  let rest = amount - gained(low);
  return current.map((c, i) => {
    let up = Math.max(0, Math.min(ceiling[i], low) - c);
    if (rest > 0 && c <= low && ceiling[i] > low) {
      up++;
      rest--;
    }
    return up;
  });
}
