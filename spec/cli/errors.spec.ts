import { expect } from 'chai';
import { freePort, NatsServer } from '../support/nats-server.js';
import { expectUsageError, natstate } from '../support/cli.js';

describe('natstate: help, usage errors and exit codes', function () {
  this.timeout(60_000);
  let server: NatsServer;
  before(async () => {
    server = await NatsServer.start();
  });
  after(async () => {
    await server?.stop();
  });

  it('--help lists every command with examples (exit 0); each command has its own --help', async () => {
    const [top, node] = await Promise.all([natstate(['--help']), natstate(['node', '--help'])]);
    expect(top.code).to.equal(0);
    for (const command of ['demo', 'node', 'status', 'send', 'ask', 'history']) expect(top.stdout).to.match(new RegExp(`^  ${command} `, 'm'));
    expect(top.stdout).to.contain("natstate send --nats nats://127.0.0.1:4222 --namespace bank account acc-1 '{\"type\":\"DEPOSIT\",\"amount\":10}'");
    expect(node.code).to.equal(0);
    expect(node.stdout).to.match(/^Usage: natstate node --nats URL --namespace NS --actors MODULE/);
  });

  it('bad arguments: unknown command or option, missing or malformed values', async () => {
    const runs = await Promise.all([
      natstate(['launch']),
      natstate(['status', '--nats', server.url, '--namespace', 'x', '--verbose']),
      natstate(['status', '--nats', server.url]),
      natstate(['status', '--namespace', 'x']),
      natstate(['demo', '--actors', '0']),
      natstate(['send', '--nats', 'http://localhost:4222', '--namespace', 'x', 'account', 'a', '{"type":"X"}']),
      natstate(['send', '--nats', server.url, '--namespace', 'x', 'account', 'a', 'DEPOSIT']),
      natstate(['history', '--nats', server.url, '--namespace', 'x', 'account']),
      natstate(['node', '--nats', server.url, '--namespace', 'x', '--actors', 'examples/bank/missing.ts']),
      natstate(['node', '--nats', server.url, '--namespace', 'x', '--actors', 'examples/bank/account.machine.ts']),
    ]);
    expectUsageError(runs[0], /unknown command "launch"; commands: demo, node, status, send, ask, history/);
    expectUsageError(runs[1], /status: unknown option --verbose/);
    expectUsageError(runs[2], /status: --namespace is required/);
    expectUsageError(runs[3], /status: --nats is required \(or set NATS_URL\)/);
    expectUsageError(runs[4], /demo: --actors must be a whole number/);
    expectUsageError(runs[5], /"http:\/\/localhost:4222" is not a NATS URL/);
    expectUsageError(runs[6], /send: the event is not valid JSON/);
    expectUsageError(runs[7], /history: expected TYPE ID/);
    expectUsageError(runs[8], /--actors: no such module "examples\/bank\/missing.ts"/);
    expectUsageError(runs[9], /exports no actor types \(expected a default or named "actors" export/);
  });

  it('unreachable NATS is a usage error naming the server, for every command that needs one', async () => {
    const url = `nats://127.0.0.1:${await freePort()}`;
    const runs = await Promise.all([
      natstate(['status', '--nats', url, '--namespace', 'bank']),
      natstate(['send', '--nats', url, '--namespace', 'bank', 'account', 'a', '{"type":"DEPOSIT","amount":1}']),
      natstate(['history', '--nats', url, '--namespace', 'bank', 'account', 'a']),
      natstate(['node', '--nats', url, '--namespace', 'bank', '--actors', 'examples/bank/actors.ts']),
      natstate(['demo', '--nats', url]),
    ]);
    for (const run of runs) expectUsageError(run, new RegExp(`cannot reach NATS at ${url}: `));
  });

  it('an unknown namespace is a usage error, and nothing is created for it', async () => {
    const runs = await Promise.all([
      natstate(['status', '--nats', server.url, '--namespace', 'no-such-ns']),
      natstate(['ask', '--nats', server.url, '--namespace', 'no-such-ns', 'account', 'a']),
      natstate(['history', '--nats', server.url, '--namespace', 'no-such-ns', 'account', 'a']),
    ]);
    for (const run of runs) expectUsageError(run, /unknown namespace "no-such-ns": no natstate node has run in it/);
    const { connect } = await import('@nats-io/transport-node');
    const { jetstreamManager } = await import('@nats-io/jetstream');
    const nc = await connect({ servers: server.url });
    const names: string[] = [];
    for await (const name of (await jetstreamManager(nc)).streams.names()) names.push(name);
    await nc.close();
    expect(names).to.deep.equal([]);
  });
});
