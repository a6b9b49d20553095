/**
 * `Membership`: which nodes of the namespace are alive. Every node heartbeats its
 * `MemberRecord` into the cluster KV bucket and watches everyone else's.
 *
 * Liveness never compares clocks across machines: a peer is live while this node has
 * seen a new revision of its record within the last `failureTimeoutMs`, by this node's
 * own clock (the `heartbeatAt` inside the record is informative only). Consequences:
 * clock skew between machines cannot fail a healthy node, and a node that has just
 * started counts every record it finds as fresh, so a peer that crashed shortly before
 * is reported failed `failureTimeoutMs` after this node started, not earlier.
 * A deleted key is a graceful leave and takes effect at once.
 *
 * A silence this node could not have heard is not counted: when its own heartbeat timer
 * runs late by more than a stall threshold (`StallWatch`: a blocked event loop, a long collection, a paused
 * VM), every live peer's deadline moves back by the time it lost, before any peer is
 * judged. Otherwise one stall longer than `failureTimeoutMs` made a node declare every
 * peer failed at once (and, with all nodes in one process, every node every other).
 */
import { decode, encode } from '../codec/codec.js';
import { StallWatch } from './stall-watch.js';
import { isMemberRecord, type MemberRecord, type MigrationCounts } from '../codec/cluster-records.js';
import { DecodeError } from '../errors.js';
import type { Subjects } from '../subjects.js';
import type { ClusterKV, KvChange } from './kv/kv.js';

export type MembershipEvent =
  | { readonly type: 'join'; readonly member: MemberRecord }
  | { readonly type: 'leave'; readonly nodeId: string; readonly reason: 'left' | 'failed' };

export interface MembershipOptions {
  readonly kv: ClusterKV;
  readonly subjects: Subjects;
  readonly nodeId: string;
  /** Interval between two heartbeats. Default 1,000 ms. */
  readonly heartbeatMs?: number;
  /** A peer whose record has not changed for this long is failed. Default 5,000 ms. */
  readonly failureTimeoutMs?: number;
  /** The load published with every heartbeat. Default: none. */
  readonly load?: () => MemberLoad;
  /** Undecodable peer records and failed heartbeats (retried at the next beat). */
  readonly onError?: (error: Error) => void;
}

/** What a node publishes about itself with every heartbeat. */
export interface MemberLoad {
  readonly actors: number;
  readonly shards: number;
  readonly migrations?: MigrationCounts;
}

interface Peer {
  record: MemberRecord;
  revision: number;
  /** Local time this node last saw a new revision of the record. */
  seenAt: number;
  live: boolean;
}

type State = 'idle' | 'started' | 'stopped';

export class Membership {
  readonly nodeId: string;
  private readonly heartbeatMs: number;
  private readonly failureTimeoutMs: number;
  private readonly peers = new Map<string, Peer>();
  private readonly listeners = new Set<(event: MembershipEvent) => void>();
  private state: State = 'idle';
  /** Time this process lost to a stall between two heartbeats (see `tick`). */
  private readonly stall: StallWatch;
  private own: MemberRecord | undefined;
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private expiry: ReturnType<typeof setTimeout> | undefined;
  private stopWatch: (() => void) | undefined;
  /** The heartbeat write in flight, so that `leave()` can delete after it, never before. */
  private beating: Promise<void> | undefined;

  constructor(private readonly options: MembershipOptions) {
    this.nodeId = options.nodeId;
    this.heartbeatMs = options.heartbeatMs ?? 1_000;
    this.failureTimeoutMs = options.failureTimeoutMs ?? 5_000;
    // A stall: a heartbeat more than twice the period late, at least a quarter of the failure timeout.
    this.stall = new StallWatch(this.heartbeatMs, Math.max(2 * this.heartbeatMs, this.failureTimeoutMs / 4));
  }

  /**
   * Starts watching the others' records, writes this node's and heartbeats. Rejects
   * (and stops again) if the watch or the first write fails.
   */
  async start(): Promise<void> {
    if (this.state !== 'idle') throw new Error(`membership of ${this.nodeId} was already started`);
    this.state = 'started';
    const { kv, subjects } = this.options;
    try {
      // Watch first: once peers learn of this node (and the leader moves shards to it),
      // this node already knows who is live, e.g. which previous owners will hand actors over.
      this.stopWatch = await kv.watch(subjects.memberPrefix, (change) => this.observe(change));
      const now = Date.now();
      const own = { nodeId: this.nodeId, startedAt: now, heartbeatAt: now, ...this.load() };
      await kv.put(subjects.memberKey(this.nodeId), encode(own));
      this.own = own;
    } catch (error) {
      this.stop();
      throw error;
    }
    if (this.state !== 'started') {
      this.stop();
      return;
    }
    this.stall.start();
    this.heartbeat = setInterval(() => this.tick(), this.heartbeatMs);
    this.heartbeat.unref();
    this.emit({ type: 'join', member: this.own });
  }

  /** Live members, this node included while started, sorted by node id. */
  members(): MemberRecord[] {
    const out: MemberRecord[] = [];
    if (this.state === 'started' && this.own) out.push(this.own);
    for (const peer of this.peers.values()) if (peer.live) out.push(peer.record);
    return out.sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
  }

  liveNodeIds(): string[] {
    return this.members().map((m) => m.nodeId);
  }

  isLive(nodeId: string): boolean {
    if (nodeId === this.nodeId) return this.state === 'started' && this.own !== undefined;
    return this.peers.get(nodeId)?.live ?? false;
  }

  /** Calls `listener` with every join and leave from now on; returns the unsubscribe function. */
  subscribe(listener: (event: MembershipEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Graceful leave: stops heartbeating and deletes this node's record, so peers see it go at once. */
  async leave(): Promise<void> {
    if (this.state !== 'started') {
      this.stop();
      return;
    }
    const beating = this.beating;
    this.stop();
    // A heartbeat landing after the delete would resurrect the record until it timed out.
    await beating;
    await this.options.kv.delete(this.options.subjects.memberKey(this.nodeId));
    this.emit({ type: 'leave', nodeId: this.nodeId, reason: 'left' });
  }

  /** Stops heartbeating and watching but leaves the record behind, as a crash would. */
  async close(): Promise<void> {
    this.stop();
  }

  private stop(): void {
    this.state = 'stopped';
    clearInterval(this.heartbeat);
    clearTimeout(this.expiry);
    this.heartbeat = this.expiry = undefined;
    this.stopWatch?.();
    this.stopWatch = undefined;
    this.peers.clear();
  }

  /** Clamped to what peers accept: a bad count must not make this node's record undecodable. */
  private load(): MemberLoad {
    const load = this.options.load?.() ?? { actors: 0, shards: 0 };
    const count = (n: number) => (n > 0 ? Math.min(Math.floor(n), Number.MAX_SAFE_INTEGER) : 0);
    const m = load.migrations;
    return m
      ? { actors: count(load.actors), shards: count(load.shards), migrations: { running: count(m.running), completed: count(m.completed), failed: count(m.failed) } }
      : { actors: count(load.actors), shards: count(load.shards) };
  }

  /** The heartbeat timer: credits a stall of this process to every live peer, then beats. */
  private tick(): void {
    const now = Date.now();
    const lost = this.stall.lost(now);
    // Nothing was heard while this process stood still: the lost time counts for no one.
    if (lost > 0) for (const peer of this.peers.values()) if (peer.live) peer.seenAt = Math.min(now, peer.seenAt + lost);
    void this.beat();
  }

  private async beat(): Promise<void> {
    if (this.beating || this.state !== 'started' || !this.own) return;
    let load: MemberLoad = { actors: this.own.actors, shards: this.own.shards, ...(this.own.migrations && { migrations: this.own.migrations }) };
    try {
      load = this.load();
    } catch (error) {
      // A failing load probe must not stop the heartbeat: the last figures go out again.
      this.report(error);
    }
    const record: MemberRecord = { ...this.own, heartbeatAt: Date.now(), ...load };
    this.beating = this.options.kv
      .put(this.options.subjects.memberKey(this.nodeId), encode(record))
      .then(
        () => {
          if (this.state === 'started') this.own = record;
        },
        (error: unknown) => {
          if (this.state === 'started') this.report(error);
        },
      )
      .finally(() => {
        this.beating = undefined;
      });
    await this.beating;
  }

  private observe({ key, value, revision }: KvChange): void {
    if (this.state !== 'started') return;
    const nodeId = this.options.subjects.nodeIdOfMemberKey(key);
    // This node is live while started, whatever the bucket says; its next beat rewrites a lost record.
    if (nodeId === this.nodeId) return;
    const peer = this.peers.get(nodeId);
    if (value === undefined) {
      this.peers.delete(nodeId);
      if (peer?.live) this.emit({ type: 'leave', nodeId, reason: 'left' });
      return;
    }
    // A watch that restarts may deliver a revision again: only a newer one is a sign of life.
    if (peer && revision <= peer.revision) return;
    let record: MemberRecord;
    try {
      record = decode(value, isMemberRecord, `member record ${key}`);
      if (record.nodeId !== nodeId) throw new DecodeError(`member record ${key}`, `it names node "${record.nodeId}"`);
    } catch (error) {
      this.report(error);
      return;
    }
    const now = Date.now();
    if (peer) {
      const wasLive = peer.live;
      Object.assign(peer, { record, revision, seenAt: now, live: true });
      if (!wasLive) this.emit({ type: 'join', member: record });
    } else {
      this.peers.set(nodeId, { record, revision, seenAt: now, live: true });
      this.emit({ type: 'join', member: record });
    }
    this.scheduleExpiry();
  }

  /**
   * One timer, at the earliest deadline. A newly seen revision only ever pushes a
   * deadline later than every pending one, so a pending timer never fires too late.
   */
  private scheduleExpiry(): void {
    if (this.expiry !== undefined || this.state !== 'started') return;
    let next = Infinity;
    for (const peer of this.peers.values()) if (peer.live) next = Math.min(next, peer.seenAt + this.failureTimeoutMs);
    if (next === Infinity) return;
    this.expiry = setTimeout(() => {
      this.expiry = undefined;
      this.expire();
    }, Math.max(0, next - Date.now()));
    this.expiry.unref();
  }

  private expire(): void {
    // The heartbeat timer is overdue too: this process was stalled. Credit that first.
    if (this.heartbeat !== undefined && this.stall.overdue()) this.tick();
    const now = Date.now();
    for (const [nodeId, peer] of this.peers) {
      if (peer.live && now >= peer.seenAt + this.failureTimeoutMs) {
        // Kept with its revision: only a newer revision (the node is back) makes it join again.
        peer.live = false;
        this.emit({ type: 'leave', nodeId, reason: 'failed' });
      }
    }
    this.scheduleExpiry();
  }

  private emit(event: MembershipEvent): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (error) {
        this.report(error);
      }
    }
  }

  private report(error: unknown): void {
    const reported = error instanceof Error ? error : new Error(`non-Error value thrown: ${String(error)}`, { cause: error });
    if (this.options.onError) this.options.onError(reported);
    else process.emitWarning(`natstate membership of ${this.nodeId}: ${reported.message}`);
  }
}
