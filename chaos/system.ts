/**
 * The system under test of a chaos run: NATS (one nats-server, or three routed ones with
 * `cluster`) and N `natstate node` processes hosting the bank's accounts, each started
 * from source the way a user starts one (`natstate node --nats ... --actors ...`). The
 * nemesis works on it through `nodes` and `nats`; `close()` leaves no process behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NatsServer } from '../spec/support/nats-server.js';
import { NatsCluster } from '../spec/support/nats-cluster.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MAIN = join(ROOT, 'lib/cli/main.ts');
const ACTORS = join(ROOT, 'examples/bank/actors.ts');

export interface Timing {
  readonly heartbeatMs: number;
  readonly failureTimeoutMs: number;
}

/** One `natstate node` process; its output goes to `<logDir>/<nodeId>.log`. */
export class NodeProcess {
  private readonly child: ChildProcess;
  private readonly log: WriteStream;
  private output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  paused = false;

  constructor(
    readonly nodeId: string,
    natsUrls: readonly string[],
    namespace: string,
    timing: Timing,
    replicas: number,
    logDir: string,
  ) {
    const args = [
      '--import', 'tsx', MAIN, 'node',
      '--nats', natsUrls.join(','),
      '--namespace', namespace,
      '--actors', ACTORS,
      '--node-id', nodeId,
      '--shards', '64',
      '--heartbeat-ms', String(timing.heartbeatMs),
      '--failure-timeout-ms', String(timing.failureTimeoutMs),
      '--replicas', String(replicas),
    ];
    this.log = createWriteStream(join(logDir, `${nodeId}.log`), { flags: 'a' });
    this.child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, NATS_URL: undefined }, stdio: ['ignore', 'pipe', 'pipe'] });
    const append = (chunk: Buffer) => {
      this.log.write(chunk);
      // Only the recent output is kept in memory, for `waitUp`.
      this.output = (this.output + chunk.toString()).slice(-4_000);
    };
    this.child.stdout!.on('data', append);
    this.child.stderr!.on('data', append);
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => {
        this.log.end(`--- exited: code ${code}, signal ${signal}\n`);
        resolve({ code, signal });
      }),
    );
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves once the node logged that it is up; false if it exited or took longer than `timeoutMs`. */
  async waitUp(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (/ node \S+ up: /.test(this.output)) return true;
      if (!this.running) return false;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return false;
  }

  signal(signal: NodeJS.Signals): void {
    if (!this.running) return;
    this.child.kill(signal);
    if (signal === 'SIGSTOP') this.paused = true;
    if (signal === 'SIGCONT') this.paused = false;
  }

  /** Resolves with true once the process exited, false after `timeoutMs`. */
  waitExit(timeoutMs: number): Promise<boolean> {
    return Promise.race([this.exited.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), timeoutMs).unref())]);
  }

  async kill(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

/** NATS as the nemesis sees it: one server, or a cluster whose members it can kill one at a time. */
export interface ChaosNats {
  readonly urls: string[];
  readonly size: number;
  /** SIGKILLs server `index` and starts it again after `downMs`, same port and store; resolves once JetStream answers. */
  crash(index: number, downMs: number): Promise<void>;
  readonly log: string;
  /** Synchronously signals every server (for an exit handler). */
  killNow(): void;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function startNats(cluster: boolean): Promise<ChaosNats> {
  if (cluster) {
    const c = await NatsCluster.start({ name: 'natstate-chaos' });
    return {
      urls: c.urls,
      size: c.servers.length,
      crash: async (index, downMs) => {
        await c.kill(index);
        await sleep(downMs);
        await c.restart(index);
        await c.ready();
      },
      get log() {
        return c.log;
      },
      killNow: () => c.servers.forEach((s) => void s.kill()),
      stop: () => c.stop(),
    };
  }
  const server = await NatsServer.start();
  return {
    urls: [server.url],
    size: 1,
    crash: async (_index, downMs) => {
      await server.kill('SIGKILL');
      await sleep(downMs);
      await server.restart();
    },
    get log() {
      return server.log;
    },
    killNow: () => void server.kill(),
    stop: () => server.stop(),
  };
}

/** NATS plus the node slots: slot i always has one node process (its id changes when it is replaced). */
export class ChaosSystem {
  readonly nodes: NodeProcess[] = [];
  private generation = 0;
  readonly logDir: string;

  private constructor(
    readonly nats: ChaosNats,
    readonly namespace: string,
    readonly timing: Timing,
    readonly replicas: number,
  ) {
    this.logDir = mkdtempSync(join(tmpdir(), 'natstate-chaos-'));
  }

  static async start(options: { cluster: boolean; nodes: number; namespace: string; timing: Timing }): Promise<ChaosSystem> {
    const nats = await startNats(options.cluster);
    const system = new ChaosSystem(nats, options.namespace, options.timing, options.cluster ? 3 : 1);
    const onExit = () => system.killNow();
    process.once('exit', onExit);
    try {
      // The first node creates the stream and buckets; the others join it.
      for (let slot = 0; slot < options.nodes; slot++) {
        const node = system.spawn(`n${slot}`);
        system.nodes.push(node);
        if (!(await node.waitUp(60_000))) throw new Error(`node ${node.nodeId} did not come up (log: ${system.logDir})`);
      }
    } catch (error) {
      await system.close();
      throw error;
    }
    return system;
  }

  spawn(nodeId: string): NodeProcess {
    return new NodeProcess(nodeId, this.nats.urls, this.namespace, this.timing, this.replicas, this.logDir);
  }

  /** A fresh node id for a node that replaces one that left. */
  nextNodeId(slot: number): string {
    return `n${slot}-${++this.generation}`;
  }

  /** Every node process signalled to die, and every server, right now (exit handler). */
  killNow(): void {
    for (const node of this.nodes) {
      if (node.running) node.signal('SIGKILL');
    }
    this.nats.killNow();
  }

  /** Kills every node and stops NATS (deleting its store). */
  async close(): Promise<void> {
    for (const node of this.nodes) node.signal('SIGCONT');
    await Promise.all(this.nodes.map((n) => n.kill()));
    await this.nats.stop();
  }
}
