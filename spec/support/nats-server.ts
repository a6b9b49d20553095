/**
 * Spawns real nats-server processes for integration specs: each on a free loopback
 * port with its own temporary JetStream store directory, stopped (and the directory
 * removed) by `stop()`. `kill()` + `restart()` keep the port and the store, for fault specs.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const INSTALL_HINT =
  'natstate integration specs need a nats-server binary (2.9.10 or later). ' +
  'Install it (Debian/Ubuntu: `apt-get install nats-server`) or set NATS_SERVER_BIN to its path.';

/** The nats-server binary: NATS_SERVER_BIN, then PATH, then /usr/sbin/nats-server. */
export function findNatsServer(): string | undefined {
  const fromEnv = process.env.NATS_SERVER_BIN;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : undefined;
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, 'nats-server'))) return join(dir, 'nats-server');
  }
  return existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : undefined;
}

export function natsServerVersion(bin: string): string {
  return execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim();
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, deadline: number, child: ChildProcess, log: () => string): Promise<void> {
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`nats-server exited with ${child.exitCode}:\n${log()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = tcpConnect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`nats-server did not listen on ${port} in time:\n${log()}`);
}

export interface NatsServerOptions {
  /** Extra nats-server configuration text (auth, limits...). JetStream is always on. */
  readonly config?: string;
  /** Extra command-line arguments. */
  readonly args?: readonly string[];
}

export class NatsServer {
  private child?: ChildProcess;
  private output = '';

  private constructor(
    readonly bin: string,
    readonly port: number,
    readonly storeDir: string,
    private readonly options: NatsServerOptions,
  ) {}

  static async start(options: NatsServerOptions = {}): Promise<NatsServer> {
    const bin = findNatsServer();
    if (!bin) throw new Error(INSTALL_HINT);
    const port = await freePort();
    const storeDir = mkdtempSync(join(tmpdir(), 'natstate-nats-'));
    const server = new NatsServer(bin, port, storeDir, options);
    await server.launch();
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Server's combined output so far, for failure messages. */
  get log(): string {
    return this.output;
  }

  private async launch(): Promise<void> {
    const configPath = join(this.storeDir, 'server.conf');
    writeFileSync(
      configPath,
      [`listen: 127.0.0.1:${this.port}`, `jetstream { store_dir: "${join(this.storeDir, 'js')}" }`, this.options.config ?? ''].join('\n'),
    );
    const child = spawn(this.bin, ['-c', configPath, ...(this.options.args ?? [])], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const append = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString()).slice(-20_000);
    };
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    await waitForPort(this.port, Date.now() + 10_000, child, () => this.output);
  }

  /** Kills the process (SIGKILL by default), keeping port and store for `restart()`. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
  }

  async restart(): Promise<void> {
    await this.kill('SIGTERM');
    await this.launch();
  }

  /** Stops the server and deletes its store. */
  async stop(): Promise<void> {
    await this.kill('SIGTERM');
    rmSync(this.storeDir, { recursive: true, force: true });
  }
}
