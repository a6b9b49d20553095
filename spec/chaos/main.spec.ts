/**
 * Short chaos runs (chaos/main.ts, what `npm run chaos` runs), each in its own process
 * with its own nats-server(s) and natstate nodes: every fault kind injected at least
 * once, and every invariant of the independent checker at 0.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';

const MAIN = fileURLToPath(new URL('../../chaos/main.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

interface ChaosJson {
  seed: number;
  faults: Record<string, number>;
  sent: number;
  acknowledged: number;
  errored: number;
  stored: number;
  replicas: number;
  lost: number;
  duplicated: number;
  gaps: number;
  divergent: number;
  balanceMismatches: number;
  unanswered: number;
  unrecovered: number;
}

function chaos(args: readonly string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    // SIGTERM: the run kills its nats-servers and nodes before it exits.
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function expectCleanRun(args: readonly string[], kinds: readonly string[], replicas: number): Promise<void> {
  const run = await chaos([...args, '--json'], 200_000);
  const report = `exit ${run.code}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`;
  const lines = run.stdout.trim().split('\n');
  const result = JSON.parse(lines[lines.length - 1]) as ChaosJson;
  expect(Object.keys(result.faults).sort(), report).to.deep.equal([...kinds].sort());
  for (const kind of kinds) expect(result.faults[kind], `${kind}\n${report}`).to.be.at.least(1);
  expect(result.acknowledged, report).to.be.greaterThan(0);
  expect(result.stored, report).to.be.at.least(result.acknowledged);
  expect(result.replicas, report).to.equal(replicas);
  expect(result, report).to.include({ lost: 0, duplicated: 0, gaps: 0, divergent: 0, balanceMismatches: 0, unanswered: 0, unrecovered: 0 });
  expect(run.code, report).to.equal(0);
}

describe('chaos run', function () {
  this.timeout(240_000);

  it('one nats-server: nodes killed, replaced, paused past the failure timeout, and the server restarted; nothing acknowledged is lost or applied twice', async () => {
    await expectCleanRun(['--duration', '15', '--seed', '1', '--rate', '40'], ['kill', 'leave', 'pause', 'nats-restart'], 1);
  });

  it('3 routed nats-servers at 3 replicas: the same faults, and one nats-server killed at a time', async () => {
    await expectCleanRun(['--duration', '15', '--seed', '1', '--rate', '40', '--cluster'], ['kill', 'leave', 'pause', 'nats-kill'], 3);
  });
});
