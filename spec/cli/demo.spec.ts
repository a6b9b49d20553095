import { expect } from 'chai';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { freePort, NatsServer } from '../support/nats-server.js';
import { lastJson, natstate } from '../support/cli.js';

/** Small and quick: 100 accounts, short steps, failure detected within half a second. */
const FAST = ['--actors', '100', '--shards', '16', '--step-ms', '300', '--heartbeat-ms', '50', '--failure-timeout-ms', '500', '--concurrency', '4'];

interface DemoJson {
  backend: string;
  nodes: number;
  actors: number;
  commands: number;
  migrated: number;
  failedMigrations: number;
  lost: number;
  duplicated: number;
  verified: number;
  durationMs: number;
}

function expectVerified(result: DemoJson, backend: string) {
  expect(result).to.include({ backend, nodes: 4, actors: 100, lost: 0, duplicated: 0, verified: 100 });
  // Every account was opened, and deposits kept flowing through the join, the leave and the kill.
  expect(result.commands).to.be.greaterThan(100);
  // The join and the graceful leave both moved resident actors with their state.
  expect(result.migrated).to.be.greaterThan(0);
  expect(result.durationMs).to.be.a('number').and.greaterThan(0);
}

describe('natstate demo', function () {
  this.timeout(90_000);

  it('--json on the embedded default: 4 nodes, migrations, a kill, every account verified, exit 0', async () => {
    const run = await natstate(['demo', '--json', ...FAST]);
    expect(run.code, run.stderr).to.equal(0);
    expectVerified(lastJson<DemoJson>(run), 'memory');
    // Progress and the summary went to stderr, so stdout is the JSON line alone.
    expect(run.stdout.trim().split('\n')).to.have.length(1);
    expect(run.stderr).to.match(/node-4 joins/).and.match(/leaves gracefully/).and.match(/killed/).and.match(/detected down/);
    expect(run.stderr).to.match(/verified\s+100 \/ 100/);
  });

  it('shows progress and the summary table on stdout without --json', async () => {
    const run = await natstate(['demo', ...FAST]);
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.match(/actors node-1 \d+ · node-2 \d+ · node-3 \d+ │ epoch \d+ │ migrations \d+ done/);
    for (const row of ['actors', 'commands', 'migrations completed', 'migrations failed', 'lost', 'duplicated', 'verified']) {
      expect(run.stdout).to.match(new RegExp(`^  ${row}\\s+\\S`, 'm'));
    }
    expect(run.stdout).to.match(/^  lost\s+0$/m).and.match(/^  duplicated\s+0$/m);
  });

  it('--nats runs the same cluster on a spawned nats-server, each node on its own connection, and cleans up', async () => {
    const server = await NatsServer.start();
    try {
      const run = await natstate(['demo', '--json', '--nats', server.url, ...FAST]);
      expect(run.code, run.stderr).to.equal(0);
      expectVerified(lastJson<DemoJson>(run), 'nats');
      expect(run.stderr).to.contain(`on NATS 127.0.0.1:${server.port}`);
      // The demo's namespace (streams and buckets) is deleted at the end.
      const nc = await connect({ servers: server.url });
      const jsm = await jetstreamManager(nc);
      const streams: string[] = [];
      for await (const name of jsm.streams.names()) streams.push(name);
      await nc.close();
      expect(streams.filter((name) => name.includes('demo-'))).to.deep.equal([]);
    } finally {
      await server.stop();
    }
  });

  it('--inspect serves the Stately inspector on a local port and prints the URL to open', async () => {
    const port = await freePort();
    const run = await natstate(['demo', '--json', '--inspect', '--inspect-port', String(port), ...FAST]);
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stderr).to.contain(`inspector: open http://localhost:${port}`);
    expect(lastJson<DemoJson>(run).verified).to.equal(100);
  });

  it('--inspect on a port already in use is a usage error (exit 2, one line)', async () => {
    const { createServer } = await import('node:net');
    const busy = createServer();
    const port = await new Promise<number>((resolve) => busy.listen(0, () => resolve((busy.address() as { port: number }).port)));
    try {
      const run = await natstate(['demo', '--inspect', '--inspect-port', String(port)]);
      expect(run.code).to.equal(2);
      expect(run.stderr).to.equal(`natstate: demo: --inspect-port ${port} is in use; pick another with --inspect-port\n`);
    } finally {
      busy.close();
    }
  });
});
