/**
 * The bank on the embedded default: no NATS, one command to run:
 *   npm run example:bank
 */
import { createNode } from '../../lib/index.js';
import { actors } from './actors.js';

const node = await createNode({ actors, namespace: 'bank' });

await node.send('account', 'alice@example.com', { type: 'DEPOSIT', amount: 100 });
await node.send('account', 'alice@example.com', { type: 'WITHDRAW', amount: 30 });
const refused = await node.send('account', 'alice@example.com', { type: 'WITHDRAW', amount: 1_000 });
const { state, version } = await node.ask('account', 'alice@example.com', { type: 'DEPOSIT', amount: 5 });

console.log(`overdraft accepted: ${refused.accepted}`);
console.log(`alice: ${state.value}, balance ${state.context.balance}, version ${version}`);
await node.close();
