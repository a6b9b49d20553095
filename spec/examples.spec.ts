import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { NatsServer } from './support/nats-server.js';

const run = promisify(execFile);

/** Runs an example the way its header says to, and returns what it printed. */
async function example(path: string, env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', path], { env: { ...process.env, ...env }, timeout: 60_000 });
  return stdout;
}

describe('examples', function () {
  this.timeout(60_000);

  it('quickstart (the README snippet) prints the refused withdrawal and the balance', async () => {
    expect(await example('examples/quickstart/main.ts')).to.equal('false 6\n');
  });

  it('bank runs on the embedded default', async () => {
    const out = await example('examples/bank/main.ts');
    expect(out).to.contain('overdraft accepted: false');
    expect(out).to.contain('alice: open, balance 75, version 3');
  });

  it('cluster runs three embedded nodes through a join and a graceful leave', async () => {
    const out = await example('examples/cluster/main.ts');
    expect(out).to.contain('balance via node-2: 10');
    expect(out).to.contain('members: node-2, node-3, node-4; balance via node-4: 15');
  });

  it('inspector streams the migrations of a joining node to a local inspector server', async () => {
    const probe = createServer();
    const port = await new Promise<number>((resolve) => probe.listen(0, '127.0.0.1', () => resolve((probe.address() as { port: number }).port)));
    await new Promise((resolve) => probe.close(resolve));
    const out = await example('examples/inspector/main.ts', { INSPECT_PORT: String(port), NO_OPEN: '1' });
    expect(out).to.contain(`inspector: open http://localhost:${port}`);
    expect(out).to.contain('migrations completed: yes');
  });

  it('eventbus-jetstream runs two nodes on a real nats-server', async () => {
    const server = await NatsServer.start();
    try {
      const out = await example('examples/eventbus-jetstream/main.ts', { NATS_URL: server.url });
      expect(out).to.contain('south saw account/alice v3 from north: DEPOSIT');
      expect(out).to.contain('south appended at version 4');
      expect(out).to.contain('north: balance 99, version 5');
    } finally {
      await server.stop();
    }
  });
});
