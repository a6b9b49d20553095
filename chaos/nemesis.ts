/**
 * The nemesis of a chaos run: faults injected one after another, each one chosen by a
 * seeded PRNG (kind, target, how long it lasts, the pause before the next), so a seed
 * replays the same schedule. The first faults are a seeded permutation of every kind,
 * so even a short run injects each kind once; the run goes on past `durationMs` until
 * they have all been injected.
 *
 * Kinds:
 * - `kill`: SIGKILL a node (a crash), restart it under the same node id.
 * - `leave`: SIGTERM a node (it leaves gracefully, handing its actors off), start a new node.
 * - `pause`: SIGSTOP a node for longer than the failure timeout, then SIGCONT: it comes back
 *   believing it still owns its shards (a stale owner; fencing must stop it writing).
 * - `nats-restart`: SIGKILL the nats-server and start it again on the same port and store.
 * - `nats-kill` (`--cluster`): SIGKILL one of the three nats-servers, restart it a little later.
 */
import { mulberry32 } from '../spec/support/random.js';
import type { ChaosSystem } from './system.js';

export type FaultKind = 'kill' | 'leave' | 'pause' | 'nats-restart' | 'nats-kill';

export const SINGLE_SERVER_FAULTS: readonly FaultKind[] = ['kill', 'leave', 'pause', 'nats-restart'];
export const CLUSTER_FAULTS: readonly FaultKind[] = ['kill', 'leave', 'pause', 'nats-kill'];

export interface Fault {
  readonly kind: FaultKind;
  /** Node slot or NATS server index. */
  readonly target: number;
  /** How long the target stays down or paused, in ms. */
  readonly downMs: number;
  /** Quiet time before this fault, in ms. */
  readonly gapMs: number;
}

/** The `index`-th fault of a seeded schedule is the same on every run with that seed. */
export class FaultSchedule {
  private readonly random: () => number;
  private readonly opening: FaultKind[];
  private count = 0;

  constructor(
    seed: number,
    private readonly kinds: readonly FaultKind[],
    private readonly failureTimeoutMs: number,
  ) {
    this.random = mulberry32(seed);
    this.opening = [...kinds];
    for (let i = this.opening.length - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      [this.opening[i], this.opening[j]] = [this.opening[j], this.opening[i]];
    }
  }

  next(nodeCount: number, serverCount: number): Fault {
    const kind = this.count < this.opening.length ? this.opening[this.count] : this.kinds[Math.floor(this.random() * this.kinds.length)];
    this.count++;
    const onServer = kind === 'nats-restart' || kind === 'nats-kill';
    const target = Math.floor(this.random() * (onServer ? serverCount : nodeCount));
    const gapMs = 1_000 + Math.floor(this.random() * 2_000);
    const downMs =
      kind === 'pause'
        ? this.failureTimeoutMs + 1_000 + Math.floor(this.random() * 2_000)
        : kind === 'leave'
          ? 0
          : 300 + Math.floor(this.random() * 1_700);
    return { kind, target, downMs, gapMs };
  }

  /** Faults drawn so far. */
  get drawn(): number {
    return this.count;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class Nemesis {
  readonly injected = new Map<FaultKind, number>();
  /** One line per fault (what, when), for the run's log. */
  readonly history: string[] = [];
  /** Nodes that did not come up again, or did not finish leaving, after a fault. */
  unrecovered = 0;
  private stopping = false;

  constructor(
    private readonly system: ChaosSystem,
    private readonly schedule: FaultSchedule,
    private readonly kinds: readonly FaultKind[],
    private readonly log: (line: string) => void,
  ) {
    for (const kind of kinds) this.injected.set(kind, 0);
  }

  private get covered(): boolean {
    return this.kinds.every((kind) => (this.injected.get(kind) ?? 0) > 0);
  }

  /** Injects faults until `durationMs` has passed and every kind was injected (or `stop()`). */
  async run(durationMs: number): Promise<void> {
    const end = Date.now() + durationMs;
    while (!this.stopping && (Date.now() < end || !this.covered)) {
      const fault = this.schedule.next(this.system.nodes.length, this.system.nats.size);
      await sleep(fault.gapMs);
      if (this.stopping) break;
      const started = Date.now();
      const what = `fault ${this.schedule.drawn}: ${fault.kind} ${this.describe(fault)}`;
      await this.inject(fault);
      this.injected.set(fault.kind, (this.injected.get(fault.kind) ?? 0) + 1);
      const line = `${what} (${Date.now() - started} ms)`;
      this.history.push(line);
      this.log(line);
    }
  }

  /** Ends the run after the fault in progress. */
  stop(): void {
    this.stopping = true;
  }

  private describe(fault: Fault): string {
    if (fault.kind === 'nats-restart' || fault.kind === 'nats-kill') return `server ${fault.target}, down ${fault.downMs} ms`;
    return `node ${this.system.nodes[fault.target].nodeId} (slot ${fault.target})${fault.downMs ? `, ${fault.kind === 'pause' ? 'paused' : 'down'} ${fault.downMs} ms` : ''}`;
  }

  private async inject(fault: Fault): Promise<void> {
    const { system } = this;
    switch (fault.kind) {
      case 'nats-restart':
      case 'nats-kill':
        await system.nats.crash(fault.target, fault.downMs);
        return;
      case 'kill': {
        const node = system.nodes[fault.target];
        await node.kill();
        await sleep(fault.downMs);
        system.nodes[fault.target] = system.spawn(node.nodeId);
        await this.up(system.nodes[fault.target]);
        return;
      }
      case 'leave': {
        const node = system.nodes[fault.target];
        node.signal('SIGTERM');
        if (!(await node.waitExit(60_000))) {
          this.log(`node ${node.nodeId} did not finish leaving within 60 s: SIGKILL`);
          this.unrecovered++;
          await node.kill();
        }
        system.nodes[fault.target] = system.spawn(system.nextNodeId(fault.target));
        await this.up(system.nodes[fault.target]);
        return;
      }
      case 'pause': {
        const node = system.nodes[fault.target];
        node.signal('SIGSTOP');
        await sleep(fault.downMs);
        node.signal('SIGCONT');
        return;
      }
    }
  }

  private async up(node: { nodeId: string; waitUp(ms: number): Promise<boolean> }): Promise<void> {
    if (await node.waitUp(60_000)) return;
    this.log(`node ${node.nodeId} did not come up within 60 s (see its log)`);
    this.unrecovered++;
  }
}
