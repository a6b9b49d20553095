/**
 * `LeaderLease`: at most one node of the namespace believes it is the leader.
 *
 * The lease is one KV key holding a `LeaseRecord`. It is taken with `create` when
 * absent, renewed with a revision-checked `update` every `renewMs`, and taken over with
 * an `update` at the revision the taker observed, once that revision has stayed the same
 * for `leaseMs` by the taker's own clock. Nobody compares clocks across machines:
 *
 * - the holder counts its lease from the moment it SENT its last successful write, which
 *   is no later than the moment the write landed;
 * - a taker counts from the moment it first SAW that revision, which is no earlier;
 * - so the taker acts at least `leaseMs` after the holder's count started, while the
 *   holder stops believing at `leaseMs − renewMs` after it: the `renewMs` margin absorbs
 *   clock-rate drift. Two contenders racing on one revision cannot both win it.
 *
 * `term` increases with every take-over (by the highest term this node has seen + 1).
 *
 * A stall of the taker's own process does not count toward a take-over: when its lease
 * timer runs more than one and a half renewals late (`StallWatch`), a blocked event loop, a
 * long collection or a paused VM, the time lost is added to when it saw the revision, as
 * nothing could be heard meanwhile. Otherwise every node of a process that stood still
 * for `leaseMs` (an embedded cluster) would race the holder's next renewal for the lease.
 * Taking over later is always safe; the holder never credits itself a stall.
 */
import { decode, encode } from '../codec/codec.js';
import { StallWatch } from './stall-watch.js';
import { isLeaseRecord, type LeaseRecord } from '../codec/cluster-records.js';
import type { Subjects } from '../subjects.js';
import { RevisionConflictError, type ClusterKV, type KvChange } from './kv/kv.js';

export interface LeaseState {
  /** The holder as last observed in the bucket (possibly lapsed), or undefined when there is none. */
  readonly leader: string | undefined;
  /** This node holds a lease that is still valid by its own clock. */
  readonly isLeader: boolean;
  readonly term: number;
}

export interface LeaderLeaseOptions {
  readonly kv: ClusterKV;
  readonly subjects: Subjects;
  readonly nodeId: string;
  /** How long an unrenewed lease keeps others out. Default 5,000 ms. */
  readonly leaseMs?: number;
  /** Interval between renewals, also the holder's safety margin. Default `leaseMs / 3`. */
  readonly renewMs?: number;
  /** KV failures (retried at the next renewal) and undecodable lease records. */
  readonly onError?: (error: Error) => void;
}

/** The lease key as last observed: `record` is undefined when it is absent or undecodable. */
interface Observed {
  readonly revision: number;
  readonly present: boolean;
  readonly record: LeaseRecord | undefined;
  /** Local time this node first saw this revision. */
  readonly seenAt: number;
}

interface Held {
  revision: number;
  term: number;
  /** Local time the last successful write was sent. */
  sentAt: number;
}

type Phase = 'idle' | 'started' | 'stopped';

export class LeaderLease {
  readonly nodeId: string;
  private readonly leaseMs: number;
  private readonly renewMs: number;
  private readonly key: string;
  private readonly listeners = new Set<(state: LeaseState) => void>();
  private phase: Phase = 'idle';
  private observed: Observed | undefined;
  private held: Held | undefined;
  private highestTerm = 0;
  /** The term of this run's last attempt to take the lease: records with it are our own writes. */
  private claimedTerm: number | undefined;
  /** The write in flight: one at a time. */
  private inflight: Promise<void> | undefined;
  private ticker: ReturnType<typeof setInterval> | undefined;
  /** Time this process lost to a stall between two runs of the lease timer (see `onTimer`). */
  private readonly stall: StallWatch;
  private expiry: ReturnType<typeof setTimeout> | undefined;
  private stopWatch: (() => void) | undefined;
  private last: LeaseState = { leader: undefined, isLeader: false, term: 0 };

  constructor(private readonly options: LeaderLeaseOptions) {
    this.nodeId = options.nodeId;
    this.leaseMs = options.leaseMs ?? 5_000;
    this.renewMs = options.renewMs ?? this.leaseMs / 3;
    if (!(this.leaseMs > 0 && this.renewMs > 0 && this.renewMs < this.leaseMs)) {
      throw new RangeError(`lease of ${this.leaseMs} ms with renewals every ${this.renewMs} ms: need 0 < renewMs < leaseMs`);
    }
    this.key = options.subjects.leaderKey;
    // A stall: the lease timer more than one and a half renewals late.
    this.stall = new StallWatch(this.renewMs, 1.5 * this.renewMs);
  }

  /** Starts watching the lease and contending for it. */
  async start(): Promise<void> {
    if (this.phase !== 'idle') throw new Error(`leader lease of ${this.nodeId} was already started`);
    this.phase = 'started';
    let stop: () => void;
    try {
      stop = await this.options.kv.watch(this.key, (change) => this.onChange(change));
    } catch (error) {
      this.stop();
      throw error;
    }
    if (this.phase !== 'started') {
      stop();
      return;
    }
    this.stopWatch = stop;
    this.stall.start();
    this.ticker = setInterval(() => void this.onTimer(), this.renewMs);
    this.ticker.unref();
    await this.tick();
  }

  get isLeader(): boolean {
    return this.held !== undefined && Date.now() < this.validUntil(this.held);
  }

  get leader(): string | undefined {
    return this.observed?.record?.holder;
  }

  get term(): number {
    return this.observed?.record?.term ?? this.highestTerm;
  }

  /** Calls `listener` whenever the leader, `isLeader` or the term changes; returns the unsubscribe function. */
  subscribe(listener: (state: LeaseState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Graceful: gives up the lease and stops. The key is deleted so that another node
   * takes over at once; a last revision-checked write first proves the lease is still
   * this node's, so the delete can only remove a lease a successor has not taken yet.
   */
  async resign(): Promise<void> {
    const inflight = this.inflight;
    this.stop();
    // A take or renewal in flight may still land under this node's name: wait for it,
    // then release whatever the bucket says this node holds.
    await inflight?.catch(() => undefined);
    const { kv } = this.options;
    const entry = await kv.get(this.key);
    if (!entry) return;
    let record: LeaseRecord;
    try {
      record = decode(entry.value, isLeaseRecord, 'leader lease');
    } catch {
      return;
    }
    if (record.holder !== this.nodeId) return;
    try {
      await kv.update(this.key, encode({ ...record, renewedAt: Date.now() } satisfies LeaseRecord), entry.revision);
    } catch (error) {
      // No longer ours: its holder keeps it.
      if (error instanceof RevisionConflictError) return;
      throw error;
    }
    await kv.delete(this.key);
  }

  /** Stops without giving up the lease, as a crash would: others take over once it lapses. */
  async close(): Promise<void> {
    this.stop();
  }

  private stop(): void {
    this.phase = 'stopped';
    this.held = undefined;
    clearInterval(this.ticker);
    clearTimeout(this.expiry);
    this.ticker = this.expiry = undefined;
    this.stopWatch?.();
    this.stopWatch = undefined;
    this.notify();
  }

  private validUntil(held: Held): number {
    return held.sentAt + this.leaseMs - this.renewMs;
  }

  /** The lease timer: credits a stall of this process to the observed revision, then ticks. */
  private onTimer(): Promise<void> {
    const now = Date.now();
    const lost = this.stall.lost(now);
    // Nothing was heard while this process stood still: the lost time counts for no one.
    if (lost > 0 && this.observed) this.observed = { ...this.observed, seenAt: Math.min(now, this.observed.seenAt + lost) };
    return this.tick();
  }

  /** Renews, takes or waits, depending on what was observed. One write in flight at a time. */
  private tick(): Promise<void> {
    if (this.inflight || this.phase !== 'started') return Promise.resolve();
    let action: Promise<void> | undefined;
    if (this.held) action = this.renew(this.held);
    else if (!this.observed?.present) action = this.take(undefined);
    else if (Date.now() - this.observed.seenAt >= this.leaseMs) action = this.take(this.observed);
    if (!action) return Promise.resolve();
    const inflight = action.finally(() => {
      if (this.inflight === inflight) this.inflight = undefined;
    });
    this.inflight = inflight;
    return inflight;
  }

  private async renew(held: Held): Promise<void> {
    const sentAt = Date.now();
    const record: LeaseRecord = { holder: this.nodeId, term: held.term, renewedAt: sentAt };
    try {
      const revision = await this.options.kv.update(this.key, encode(record), held.revision);
      // Recorded even once stopped: `resign` writes after it.
      Object.assign(held, { revision, sentAt });
      if (this.held === held && this.phase === 'started') this.hold(held, record);
    } catch (error) {
      if (error instanceof RevisionConflictError) {
        if (this.held === held) this.held = undefined;
        await this.reread();
      } else {
        // Still ours until it lapses; the next tick retries.
        this.report(error);
      }
    }
    this.notify();
  }

  private async take(observed: Observed | undefined): Promise<void> {
    const sentAt = Date.now();
    const term = Math.max(this.highestTerm, observed?.record?.term ?? 0) + 1;
    const record: LeaseRecord = { holder: this.nodeId, term, renewedAt: sentAt };
    this.claimedTerm = term;
    const { kv } = this.options;
    try {
      const revision = observed ? await kv.update(this.key, encode(record), observed.revision) : await kv.create(this.key, encode(record));
      if (this.phase === 'started') this.hold({ revision, term, sentAt }, record);
    } catch (error) {
      if (error instanceof RevisionConflictError) await this.reread();
      else this.report(error);
    }
    this.notify();
  }

  private hold(next: Held, record: LeaseRecord): void {
    this.see(next.revision, record, next.sentAt, true);
    if (this.held && this.held.term === next.term) {
      if (this.held.revision > next.revision) return;
      // One object per tenure, so that `resign` sees what a renewal in flight learns.
      Object.assign(this.held, next);
    } else {
      this.held = next;
    }
    clearTimeout(this.expiry);
    // Tells listeners when `isLeader` turns false by the clock alone.
    this.expiry = setTimeout(() => this.notify(), Math.max(0, this.validUntil(this.held) - Date.now()));
    this.expiry.unref();
  }

  /** Someone else wrote first: follow what the bucket holds now. */
  private async reread(): Promise<void> {
    try {
      const entry = await this.options.kv.get(this.key);
      if (entry) this.onChange({ key: entry.key, value: entry.value, revision: entry.revision });
    } catch (error) {
      this.report(error);
    }
  }

  private onChange({ key, value, revision }: KvChange): void {
    // The watch is by prefix: ignore keys that merely start like ours.
    if (key !== this.key || this.phase !== 'started') return;
    if (this.observed && revision <= this.observed.revision) return;
    let record: LeaseRecord | undefined;
    if (value !== undefined) {
      try {
        record = decode(value, isLeaseRecord, `lease record ${key}`);
      } catch (error) {
        // Kept as an anonymous holder: it lapses and is taken over like any other.
        this.report(error);
      }
    }
    this.see(revision, record, Date.now(), value !== undefined);
    if (record?.holder === this.nodeId && record.term === this.claimedTerm) {
      // One of this run's own writes, maybe one whose reply was lost: it was sent at
      // `renewedAt` by this node's clock, which is all the holder's count needs.
      this.hold({ revision, term: record.term, sentAt: record.renewedAt }, record);
    } else {
      this.held = undefined;
    }
    this.notify();
    // A resigned lease is free now, not after a timeout.
    if (value === undefined) void this.tick();
  }

  private see(revision: number, record: LeaseRecord | undefined, now: number, present: boolean): void {
    if (record) this.highestTerm = Math.max(this.highestTerm, record.term);
    if (!this.observed || revision > this.observed.revision) this.observed = { revision, present, record, seenAt: now };
  }

  private notify(): void {
    const state: LeaseState = { leader: this.leader, isLeader: this.isLeader, term: this.term };
    if (state.leader === this.last.leader && state.isLeader === this.last.isLeader && state.term === this.last.term) return;
    this.last = state;
    for (const listener of [...this.listeners]) {
      try {
        listener(state);
      } catch (error) {
        this.report(error);
      }
    }
  }

  private report(error: unknown): void {
    const reported = error instanceof Error ? error : new Error(`non-Error value thrown: ${String(error)}`, { cause: error });
    if (this.options.onError) this.options.onError(reported);
    else process.emitWarning(`natstate leader lease of ${this.nodeId}: ${reported.message}`);
  }
}
