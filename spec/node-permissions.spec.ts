import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import type { NatsConnection } from '@nats-io/nats-core';
import { createNode, type NatstateNode } from '../lib/index.js';
import { connectToNats } from '../lib/nats/connect.js';
import { Subjects } from '../lib/subjects.js';
import { account } from '../examples/bank/account.machine.js';
import { NatsServer } from './support/nats-server.js';
import { lastJson, natstate } from './support/cli.js';
import { eventually } from './support/eventually.js';

const actors = { account };
const ACCOUNTS = Array.from({ length: 8 }, (_, i) => `acc-${i}`);
const CLUSTER = { shards: 8, heartbeatMs: 100, failureTimeoutMs: 1_000, leaseMs: 1_000, planIntervalMs: 100 };

/** A permissions block of docs/SECURITY.md, exactly as documented (marked `<!-- spec: NAME -->`). */
function documented(name: string): string {
  const doc = readFileSync(new URL('../docs/SECURITY.md', import.meta.url), 'utf8');
  const block = new RegExp(`<!-- spec: ${name} -->\\n\`\`\`\\n([\\s\\S]*?)\`\`\``).exec(doc)?.[1];
  if (!block) throw new Error(`docs/SECURITY.md has no block marked "<!-- spec: ${name} -->"`);
  return block;
}

/**
 * The documented permissions are complete: nodes and a sender holding exactly them work,
 * and the server reports no violation. And they protect: a user with another namespace's
 * node permissions cannot send this namespace a command.
 */
describe('the NATS permissions docs/SECURITY.md documents for a namespace', function () {
  this.timeout(120_000);
  let server: NatsServer;
  const connections: NatsConnection[] = [];
  const nodes: NatstateNode<typeof actors>[] = [];
  const problems: string[] = [];

  /** A node of `bank` logged in as the user with the documented node permissions. */
  const bankNode = async (nodeId: string) => {
    const nc = await connectToNats({ servers: server.url, user: 'bank-node', pass: 'node-pw', inboxPrefix: '_INBOX_bank' });
    connections.push(nc);
    void (async () => {
      for await (const status of nc.status()) if (status.type === 'error') problems.push(`${nodeId}: ${status.error.message}`);
    })();
    // Only a refused publish or subscription is this spec's business (other warnings have their own specs).
    const onError = (error: unknown) => {
      if (/Permissions Violation/i.test(String(error))) problems.push(`${nodeId}: ${String(error)}`);
    };
    const node = await createNode({ actors, namespace: 'bank', nodeId, nats: nc, cluster: CLUSTER, onError });
    nodes.push(node);
    return node;
  };
  const violations = () => server.log.split('\n').filter((line) => /Violation/i.test(line));

  before(async () => {
    const bank = documented('node permissions');
    server = await NatsServer.start({
      config: [
        bank,
        documented('client permissions'),
        // The same block for another namespace, as the docs say to make it.
        bank.replaceAll('bank', 'shop').replace('NATSTATE_NODE_BANK', 'NATSTATE_NODE_SHOP'),
        `authorization { users: [
          { user: bank-node, password: node-pw, permissions: $NATSTATE_NODE_BANK }
          { user: bank-sender, password: sender-pw, permissions: $NATSTATE_CLIENT_BANK }
          { user: shop-node, password: shop-pw, permissions: $NATSTATE_NODE_SHOP }
        ] }`,
      ].join('\n'),
    });
  });
  after(async () => {
    await Promise.all(nodes.map((node) => node.close()));
    await Promise.all(connections.map((nc) => nc.close()));
    await server?.stop();
  });

  it('is enough for two nodes (join, routed commands, live migration, recovery from the store) and for a command-sending client', async () => {
    const n1 = await bankNode('n1');
    for (const id of ACCOUNTS) expect(await n1.send('account', id, { type: 'DEPOSIT', amount: 10 })).to.include({ accepted: true, version: 1 });
    const n2 = await bankNode('n2');
    await eventually(() => n2.cluster(), (view) => view.ownedShards > 0 && view.epoch >= 2, 20_000, 'n2 owns shards');
    await eventually(() => n1.cluster().migrations, (m) => m.completed > 0 && m.running === 0, 20_000, 'n1 migrated its actors to n2');
    for (const id of ACCOUNTS) expect(await n2.send('account', id, { type: 'DEPOSIT', amount: 1 })).to.include({ accepted: true, version: 2 });

    const sent = await natstate([
      'send', '--nats', server.url, '--nats-user', 'bank-sender', '--nats-password', 'sender-pw', '--nats-inbox-prefix', '_INBOX_bank',
      '--namespace', 'bank', '--json', 'account', 'acc-0', '{"type":"DEPOSIT","amount":5}',
    ]);
    expect(sent.code, sent.stderr).to.equal(0);
    expect(lastJson<{ accepted: boolean; version: number }>(sent)).to.include({ accepted: true, version: 3 });
    expect((await n1.state('account', 'acc-0')).context).to.include({ balance: 16 });
    expect(n1.cluster().migrations.failed).to.equal(0);

    // Both leave; a fresh node replays every actor from its events (no snapshot yet).
    await n2.leave();
    await n1.leave();
    const n3 = await bankNode('n3');
    expect(await n3.state('account', 'acc-0')).to.include({ version: 3 }).and.nested.include({ 'context.balance': 16 });
    for (const id of ACCOUNTS.slice(1)) expect((await n3.state('account', id)).context).to.include({ balance: 11 });
    expect(violations()).to.deep.equal([]);
    expect(problems).to.deep.equal([]);
  });

  it("keeps out a user with another namespace's node permissions: it cannot send this one a command", async () => {
    const owner = nodes[nodes.length - 1];
    const before = await owner.state('account', 'acc-1');
    const refused = await natstate([
      'send', '--nats', server.url, '--nats-user', 'shop-node', '--nats-password', 'shop-pw', '--nats-inbox-prefix', '_INBOX_shop',
      '--namespace', 'bank', 'account', 'acc-1', '{"type":"DEPOSIT","amount":1000}',
    ]);
    expect(refused.code, refused.stdout).to.not.equal(0);
    expect(refused.stderr).to.match(/^natstate: .*Permissions Violation/);
    expect(violations().join('\n')).to.match(/Violation.*User "shop-node"/);

    // Even a raw request straight to the owner's subject never reaches it.
    const shop = await connectToNats({ servers: server.url, user: 'shop-node', pass: 'shop-pw', inboxPrefix: '_INBOX_shop' });
    try {
      const subject = new Subjects('bank').node(owner.id);
      const error = await shop.request(subject, '{}', { timeout: 2_000 }).then(() => undefined, (e: Error) => e);
      expect(String(error)).to.contain(`Permissions Violation for Publish to "${subject}"`);
    } finally {
      await shop.close();
    }
    const after = await owner.state('account', 'acc-1');
    expect(after.version).to.equal(before.version);
    expect(after.context).to.deep.equal(before.context);
  });
});
