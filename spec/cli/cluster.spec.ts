import { expect } from 'chai';
import { NatsServer } from '../support/nats-server.js';
import { CliProcess, lastJson, natstate } from '../support/cli.js';
import { eventually } from '../support/eventually.js';

const SHARDS = 32;
const TIMING = ['--shards', String(SHARDS), '--heartbeat-ms', '100', '--failure-timeout-ms', '1000'];
const ACCOUNTS = Array.from({ length: 6 }, (_, i) => `acc-${i}`);

interface StatusJson {
  members: { id: string; shards: number; actors: number; migrations: { running: number; completed: number; failed: number } }[];
  down: { id: string }[];
  leader: string | null;
  epoch: number;
  shardCount: number;
  migrations: { running: number; completed: number; failed: number };
  plans: { epoch: number; status: string }[];
}

describe('natstate node, status, send, ask and history on NATS', function () {
  this.timeout(90_000);
  let server: NatsServer;
  const nodes = new Map<string, CliProcess>();
  const namespace = `cli-${process.pid}`;
  const on = () => ['--nats', server.url, '--namespace', namespace];
  const status = async () => {
    const run = await natstate(['status', ...on(), '--json', '--failure-timeout-ms', '1000']);
    expect(run.code, run.stderr).to.equal(0);
    return lastJson<StatusJson>(run);
  };
  const ask = async (id: string) => {
    const run = await natstate(['ask', ...on(), 'account', id, '--json']);
    expect(run.code, run.stderr).to.equal(0);
    return lastJson<{ version: number; state: { context: { balance: number; deposits: number } } }>(run);
  };

  before(async () => {
    server = await NatsServer.start();
    // One at a time, so that the first is the leader and the others join its map.
    for (const id of ['n1', 'n2', 'n3']) {
      const node = CliProcess.start(['node', ...on(), '--actors', 'examples/bank/actors.ts', '--node-id', id, ...TIMING]);
      nodes.set(id, node);
      await node.waitFor(new RegExp(`node ${id} up: namespace ${namespace}, actor types account, ${SHARDS} shards`));
    }
  });

  after(async () => {
    await Promise.all([...nodes.values()].map((n) => n.kill()));
    await server?.stop();
  });

  it('three node processes form one cluster: status shows the members, one leader, the map and its plans', async () => {
    const report = await eventually(status, (s) => s.members.length === 3 && s.members.every((m) => m.shards >= 10), 15_000);
    expect(report.members.map((m) => m.id)).to.deep.equal(['n1', 'n2', 'n3']);
    expect(report.leader).to.equal('n1');
    expect(report.shardCount).to.equal(SHARDS);
    expect(report.members.reduce((n, m) => n + m.shards, 0)).to.equal(SHARDS);
    expect(report.epoch).to.be.at.least(3);
    expect(report.migrations).to.deep.equal({ running: 0, completed: 0, failed: 0 });
    expect(report.plans.at(-1)).to.include({ epoch: report.epoch });
    // Each node logged the others joining and the leader's plans.
    await nodes.get('n1')!.waitFor(/join n3/);
    expect(nodes.get('n1')!.output).to.match(/plan epoch \d+: \d+ shard\(s\) move: n1 → n3 \d+/);
    expect(nodes.get('n3')!.output).to.match(/leader n1; shard map epoch \d+: this node owns \d+ shard\(s\)/);

    const human = await natstate(['status', ...on()]);
    expect(human.code).to.equal(0);
    expect(human.stdout).to.match(new RegExp(`namespace ${namespace}: 3 member\\(s\\), leader n1`));
    expect(human.stdout).to.match(/^member\s+up since\s+last heartbeat\s+actors\s+shards/m);
  });

  it('send and ask reach every actor wherever it lives, with idempotent command ids', async () => {
    const sends = await Promise.all(ACCOUNTS.map((id) => natstate(['send', ...on(), 'account', id, '{"type":"DEPOSIT","amount":10}', '--json'])));
    for (const run of sends) {
      expect(run.code, run.stderr).to.equal(0);
      expect(lastJson(run)).to.include({ accepted: true, version: 1, duplicate: false });
    }
    const first = await natstate(['send', ...on(), 'account', 'acc-0', '{"type":"DEPOSIT","amount":5}', '--command-id', 'once']);
    expect(first.stdout).to.match(/^account\/acc-0: accepted; version 2; command id once$/m);
    const again = await natstate(['send', ...on(), 'account', 'acc-0', '{"type":"DEPOSIT","amount":5}', '--command-id', 'once']);
    expect(again.stdout).to.match(/already applied \(same command id\): nothing new stored; version 2/);

    const asked = await natstate(['ask', ...on(), 'account', 'acc-0', '{"type":"WITHDRAW","amount":3}']);
    expect(asked.code).to.equal(0);
    expect(asked.stdout).to.contain('account/acc-0: accepted; version 3');
    expect(asked.stdout).to.contain('state: "open" (active)');
    expect(asked.stdout).to.contain('context: {"id":"acc-0","balance":12,"deposits":2}');
    const refused = await natstate(['ask', ...on(), 'account', 'acc-0', '{"type":"WITHDRAW","amount":1000}', '--json']);
    expect(lastJson(refused)).to.deep.include({ accepted: false, version: 3 });

    // The actors are spread over the three processes.
    const report = await eventually(status, (s) => s.members.reduce((n, m) => n + m.actors, 0) === ACCOUNTS.length, 15_000);
    expect(report.members.filter((m) => m.actors > 0).length).to.be.at.least(2);
  });

  it('history lists an actor’s stored events with version, time and command id', async () => {
    const run = await natstate(['history', ...on(), 'account', 'acc-0', '--json']);
    expect(run.code, run.stderr).to.equal(0);
    const history = lastJson<{ version: number; events: { version: number; time: string; commandId: string; event: { type: string } }[] }>(run);
    expect(history.version).to.equal(3);
    expect(history.events.map((e) => [e.version, e.event.type])).to.deep.equal([
      [1, 'DEPOSIT'],
      [2, 'DEPOSIT'],
      [3, 'WITHDRAW'],
    ]);
    expect(history.events[1].commandId).to.equal('once');
    expect(Date.parse(history.events[0].time)).to.be.closeTo(Date.now(), 60_000);

    const table = await natstate(['history', ...on(), 'account', 'acc-0']);
    expect(table.stdout).to.match(/^account\/acc-0: version 3, 3 event\(s\)$/m);
    expect(table.stdout).to.match(/^\s+2\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\s+once\s+\{"type":"DEPOSIT","amount":5\}$/m);
  });

  it('an unknown actor type or event is a one-line usage error (exit 2)', async () => {
    const type = await natstate(['send', ...on(), 'nope', 'x', '{"type":"DEPOSIT","amount":1}']);
    expect(type.code).to.equal(2);
    expect(type.stderr).to.equal(`natstate: unknown actor type "nope"; this node hosts: account (namespace ${namespace})\n`);
    const event = await natstate(['send', ...on(), 'account', 'x', '{"type":"DEPOSTI"}']);
    expect(event.code).to.equal(2);
    expect(event.stderr).to.match(/^natstate: invalid event for actor type "account": .*DEPOSTI.*\n$/);
    const history = await natstate(['history', ...on(), 'nope', 'x']);
    expect(history.code).to.equal(2);
    expect(history.stderr).to.equal(`natstate: unknown actor type "nope" in namespace ${namespace}: no actor of that type has stored an event\n`);
  });

  it('SIGTERM: the node hands its actors off, leaves and exits 0; every balance is intact', async () => {
    const before = await status();
    const victim = [...before.members].sort((a, b) => b.actors - a.actors).find((m) => m.id !== before.leader)!;
    expect(victim.actors).to.be.greaterThan(0);
    const node = nodes.get(victim.id)!;
    node.signal('SIGTERM');
    expect(await node.exited).to.deep.equal({ code: 0, signal: null });
    expect(node.output).to.contain(`SIGTERM: leaving gracefully, handing ${victim.actors} actor(s) off`);
    const migrated = [...node.output.matchAll(/migrated (\d+) actor\(s\) to n\d \(epoch \d+\): (\d+) done, 0 failed/g)];
    expect(migrated.reduce((n, m) => n + Number(m[2]), 0)).to.equal(victim.actors);
    expect(node.output).to.contain('left the cluster');
    // The others saw it leave at once (its member record is deleted), not after a timeout.
    const stayed = before.members.map((m) => m.id).filter((id) => id !== victim.id);
    await nodes.get(stayed[0])!.waitFor(new RegExp(`leave ${victim.id} \\(left gracefully\\)`));

    const after = await eventually(status, (s) => s.members.length === 2 && s.members.reduce((n, m) => n + m.shards, 0) === SHARDS, 15_000);
    expect(after.members.map((m) => m.id)).to.deep.equal(stayed);
    expect(after.down).to.deep.equal([]);
    // Its actors are resident on the others now, with their state.
    expect(after.members.reduce((n, m) => n + m.actors, 0)).to.equal(ACCOUNTS.length);
    const states = await Promise.all(ACCOUNTS.map(ask));
    expect(states.map((s) => s.state.context.balance)).to.deep.equal(ACCOUNTS.map((id) => (id === 'acc-0' ? 12 : 10)));
  });

  it('SIGKILL is a crash: status shows the member down, the survivor takes its shards, balances stay', async () => {
    const before = await status();
    const victim = before.members.find((m) => m.id !== before.leader)!;
    await nodes.get(victim.id)!.kill();
    const after = await eventually(status, (s) => s.members.length === 1 && s.members[0].shards === SHARDS, 20_000);
    expect(after.down.map((d) => d.id)).to.deep.equal([victim.id]);
    const leader = nodes.get(before.leader!)!;
    await leader.waitFor(new RegExp(`leave ${victim.id} \\(failed: no heartbeat for 1.0 s\\)`));
    const states = await Promise.all(ACCOUNTS.map(ask));
    expect(states.map((s) => s.state.context.deposits)).to.deep.equal(ACCOUNTS.map((id) => (id === 'acc-0' ? 2 : 1)));
  });
});
