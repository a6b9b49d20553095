/**
 * B2: recovery throughput — events replayed per second when an actor is rebuilt from the
 * in-memory store (no snapshot) vs raw `actor.send` of the same events. Target >= 0.8.
 */
import { createActor } from 'xstate';
import { createNode, MemoryNetwork } from '../lib/index.js';
import { account } from '../examples/bank/account.machine.js';
import { round, sideBySide, type Benchmark } from './harness.js';

const EVENTS = 200_000;

export const b2: Benchmark = {
  id: 'B2',
  title: 'replay from memory store vs raw actor.send',
  goal: 'ratio >= 0.8',
  async run() {
    const events = Array.from({ length: EVENTS }, (_, i) => ({ type: 'DEPOSIT' as const, amount: (i % 7) + 1 }));

    const network = new MemoryNetwork();
    const store = network.store('bench');
    for (let i = 0; i < EVENTS; i += 1000) {
      await store.append({ type: 'account', id: 'r' }, events.slice(i, i + 1000), { expectedVersion: i });
    }
    let balance = 0;
    const measured = await sideBySide(EVENTS, {
      baseline: () => {
        const actor = createActor(account, { input: { id: 'r' } }).start();
        for (const e of events) actor.send(e);
      },
      natstate: async () => {
        const node = await createNode({ actors: { account }, namespace: 'bench', network, snapshotEvery: 0, passivateAfterMs: 0 });
        balance = (await node.state('account', 'r')).context.balance;
        await node.close();
      },
    });
    const expected = events.reduce((n, e) => n + e.amount, 0);
    if (balance !== expected) throw new Error(`replay produced balance ${balance}, expected ${expected}`);

    const ratio = measured.natstate / measured.baseline;
    return { ratio: round(ratio), target: 0.8, pass: ratio >= 0.8, replayEventsPerSecond: Math.round(measured.natstate), rawPerSecond: Math.round(measured.baseline) };
  },
};
