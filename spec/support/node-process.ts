/**
 * Runs a natstate node in a separate OS process (node-process.child.ts) so that specs
 * can SIGKILL it like a real crash. Calls go over IPC and resolve with the child's reply.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('./node-process.child.ts', import.meta.url));

export class NodeProcessError extends Error {
  constructor(
    readonly remoteName: string,
    readonly code: string | undefined,
    message: string,
  ) {
    super(`${remoteName}: ${message}`);
  }
}

export class NodeProcess {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  private exited = false;

  private constructor(
    readonly nodeId: string,
    private readonly child: ChildProcess,
  ) {
    child.on('message', (m: { id?: number; result?: unknown; error?: { name: string; code?: string; message: string } }) => {
      if (m.id === undefined) return;
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error) p?.reject(new NodeProcessError(m.error.name, m.error.code, m.error.message));
      else p?.resolve(m.result);
    });
    child.on('exit', () => {
      this.exited = true;
      for (const p of this.pending.values()) p.reject(new Error(`node ${nodeId} exited`));
      this.pending.clear();
    });
  }

  static async start(options: { natsUrl: string; namespace: string; nodeId: string; cluster?: object }): Promise<NodeProcess> {
    const child = fork(CHILD, [], {
      execArgv: ['--import', 'tsx'],
      env: {
        ...process.env,
        NATS_URL: options.natsUrl,
        NATSTATE_NAMESPACE: options.namespace,
        NATSTATE_NODE_ID: options.nodeId,
        NATSTATE_CLUSTER: JSON.stringify(options.cluster ?? {}),
      },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`node ${options.nodeId} did not start in time`)), 30_000);
      child.once('message', () => {
        clearTimeout(timer);
        resolve();
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`node ${options.nodeId} exited with ${code} before it was ready`));
      });
    });
    return new NodeProcess(options.nodeId, child);
  }

  get running(): boolean {
    return !this.exited;
  }

  private call<T>(op: string, ...args: unknown[]): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`node ${this.nodeId} is not running`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, op, args });
    });
  }

  send(type: string, id: string, event: object, commandId?: string) {
    return this.call<{ accepted: boolean; version: number; commandId: string; duplicate: boolean }>('send', type, id, event, commandId);
  }

  state(type: string, id: string) {
    return this.call<{ value: unknown; context: { balance: number }; version: number }>('state', type, id);
  }

  cluster() {
    return this.call<{ nodeId: string; leader?: string; isLeader: boolean; members: string[]; epoch: number; ownedShards: number; shardCount: number; residentActors: number; migrations: { running: number; completed: number; failed: number } }>('cluster');
  }

  leave() {
    return this.call<void>('leave');
  }

  /**
   * From now on the process SIGKILLs itself 30 ms after one of its migrations reaches
   * `status` (e.g. 'Transferring'): a crash in the middle of migrating.
   */
  armCrash(status: string) {
    return this.call<void>('arm-crash', status);
  }

  /** SIGKILL by default: a crash, nothing handed off. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill(signal);
    await exited;
  }
}
