/**
 * Runs the `natstate` command the way a user does, in its own process, from source
 * (`node --import tsx lib/cli/main.ts ...`): `natstate()` for a command that ends,
 * `CliProcess.start()` for one that runs until it is signalled (`natstate node`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';

const MAIN = fileURLToPath(new URL('../../lib/cli/main.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** The NATS_* variables the command reads: a spec sets them itself or not at all. */
const NATS_ENV = ['NATS_URL', 'NATS_USER', 'NATS_PASSWORD', 'NATS_TOKEN', 'NATS_NKEY', 'NATS_CREDS', 'NATS_CA', 'NATS_CERT', 'NATS_KEY', 'NATS_INBOX_PREFIX'];

function launch(args: readonly string[], env: Record<string, string | undefined> = {}): ChildProcess {
  // NATS_URL or credentials from the environment must never point a spec at a server it did not start.
  const cleared = Object.fromEntries(NATS_ENV.map((name) => [name, undefined]));
  return spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, env: { ...process.env, ...cleared, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs `natstate ...args` to its end (killed after `timeoutMs`). */
export function natstate(args: readonly string[], options: { timeoutMs?: number; env?: Record<string, string | undefined> } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = launch(args, options.env);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`natstate ${args.join(' ')} did not end within ${options.timeoutMs ?? 60_000} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A user mistake: exit code 2 and exactly one line on stderr, `natstate: ...`, no stack trace. */
export function expectUsageError(run: CliResult, message: RegExp): void {
  expect(run.code, run.stderr).to.equal(2);
  expect(run.stderr.split('\n')).to.have.length(2); // the line and the final newline
  expect(run.stderr).to.match(/^natstate: /).and.match(message);
  expect(run.stderr).to.not.match(/\n\s+at /);
}

/** The last line of a command's stdout, parsed as JSON. */
export function lastJson<T>(result: CliResult): T {
  const lines = result.stdout.trim().split('\n');
  try {
    return JSON.parse(lines[lines.length - 1]) as T;
  } catch {
    throw new Error(`the last line of stdout is not JSON (exit ${result.code})\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  }
}

/** A long-running `natstate` process (a node), with its output kept for assertions. */
export class CliProcess {
  output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly waiters = new Set<() => void>();

  private constructor(private readonly child: ChildProcess) {
    const append = (chunk: Buffer) => {
      this.output += chunk.toString();
      for (const wake of [...this.waiters]) wake();
    };
    child.stdout!.on('data', append);
    child.stderr!.on('data', append);
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  static start(args: readonly string[], env?: Record<string, string | undefined>): CliProcess {
    return new CliProcess(launch(args, env));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves once the output matches `pattern`; rejects after `timeoutMs` or if the process ends first. */
  waitFor(pattern: RegExp, timeoutMs = 20_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (pattern.test(this.output)) {
          done();
          resolve();
        }
      };
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no output matching ${pattern} within ${timeoutMs} ms; output so far:\n${this.output}`));
      }, timeoutMs);
      void this.exited.then(({ code }) => {
        if (this.waiters.has(check)) {
          done();
          reject(new Error(`the process exited (${code}) before printing ${pattern}; output:\n${this.output}`));
        }
      });
      this.waiters.add(check);
      check();
    });
  }

  signal(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  async kill(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}
