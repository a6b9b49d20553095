/**
 * The README's quickstart, runnable as is:
 *   npx tsx examples/quickstart/main.ts
 */
import { assign, setup } from 'xstate';
import { createNode } from '../../lib/index.js';

const account = setup({
  types: {
    context: {} as { balance: number },
    events: {} as { type: 'DEPOSIT'; amount: number } | { type: 'WITHDRAW'; amount: number },
  },
  guards: { covered: ({ context, event }) => event.amount <= context.balance },
}).createMachine({
  context: { balance: 0 },
  on: {
    DEPOSIT: { actions: assign({ balance: ({ context, event }) => context.balance + event.amount }) },
    WITHDRAW: { guard: 'covered', actions: assign({ balance: ({ context, event }) => context.balance - event.amount }) },
  },
});

// No `nats` option: the embedded in-memory default.
const node = await createNode({ actors: { account }, namespace: 'bank' });

await node.send('account', 'acc-1', { type: 'DEPOSIT', amount: 10 }); // { accepted: true, version: 1, ... }
const { accepted } = await node.send('account', 'acc-1', { type: 'WITHDRAW', amount: 99 }); // false: nothing stored
const { state } = await node.ask('account', 'acc-1', { type: 'WITHDRAW', amount: 4 });
console.log(accepted, state.context.balance); // false 6
await node.close();
