/**
 * The README's cluster snippet: three embedded nodes, a join and a graceful leave.
 *   npx tsx examples/cluster/main.ts
 */
import { createMemoryCluster } from '../../lib/index.js';
import { actors } from '../bank/actors.js';

const cluster = await createMemoryCluster({ actors, namespace: 'bank', nodes: 3 });
const [a, b] = cluster.nodes;
await a.send('account', 'acc-1', { type: 'DEPOSIT', amount: 10 });
console.log(`balance via ${b.id}: ${(await b.state('account', 'acc-1')).context.balance}`);

await cluster.addNode(); // the shards rebalance over 4 nodes
await cluster.removeNode(cluster.nodes[0]); // graceful: its shards move first
const last = cluster.nodes[cluster.nodes.length - 1];
await last.send('account', 'acc-1', { type: 'DEPOSIT', amount: 5 });
const view = last.cluster();
console.log(`members: ${view.members.join(', ')}; balance via ${last.id}: ${(await last.state('account', 'acc-1')).context.balance}`);
await cluster.close();
