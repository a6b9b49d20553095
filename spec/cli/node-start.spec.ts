import { expect } from 'chai';
import { freePort, NatsServer } from '../support/nats-server.js';
import { natstate } from '../support/cli.js';

describe('natstate node: starting while JetStream does not answer', function () {
  this.timeout(60_000);
  let server: NatsServer;
  before(async () => {
    // One server of a 3-server JetStream cluster whose peers never come: it has no
    // JetStream leader, as while a NATS cluster elects its leaders.
    const [a, b] = [await freePort(), await freePort()];
    server = await NatsServer.start({
      config: `server_name: lonely\ncluster { name: c, listen: "127.0.0.1:-1", routes: ["nats-route://127.0.0.1:${a}", "nats-route://127.0.0.1:${b}"] }`,
    });
  });
  after(async () => {
    await server?.stop();
  });

  it('retries a start that times out until --start-timeout-ms, then exits with the timeout', async () => {
    const url = server.url;
    const run = await natstate(['node', '--nats', url, '--namespace', 'slow', '--actors', 'examples/bank/actors.ts', '--start-timeout-ms', '9000'], { timeoutMs: 45_000 });
    // One attempt times out (5 s), is retried once, and the second is past the deadline.
    expect(run.stdout.match(/starting: .*connecting to JetStream: timeout; retrying in 500 ms/g)).to.have.length(1);
    expect(run.code).to.equal(1);
    expect(run.stderr.trim()).to.equal('natstate: event store, stream natstate_slow_events: connecting to JetStream: timeout');
  });
});
