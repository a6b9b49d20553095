/**
 * B7: the cost of routing when the actor is local. `node.ask` on the owner (shard-map
 * lookup and the router's local path) vs the same command given straight to an actor
 * host. Target: ratio >= 0.9.
 */
import { createNode, MemoryNetwork } from '../lib/index.js';
import { ActorHost } from '../lib/actors/actor-host.js';
import { LocalEventBus } from '../lib/eventbus/local.js';
import { account } from '../examples/bank/account.machine.js';
import { round, sideBySide, type Benchmark } from './harness.js';

const ACTORS = 1_000;
const COMMANDS = 100_000;

export const b7: Benchmark = {
  id: 'B7',
  title: 'local ask: through the router vs straight to the host',
  goal: 'ratio >= 0.9',
  async run() {
    const deposit = { type: 'DEPOSIT', amount: 1 } as const;
    const network = new MemoryNetwork();
    const host = new ActorHost({
      namespace: 'direct',
      nodeId: 'direct',
      actors: { account },
      store: network.store('direct'),
      bus: new LocalEventBus('direct', network.hub),
      snapshotEvery: 0,
      passivateAfterMs: 0,
    });
    const node = await createNode({ actors: { account }, namespace: 'routed', network, snapshotEvery: 0, passivateAfterMs: 0 });
    for (let i = 0; i < ACTORS; i++) {
      await host.dispatch('account', `a${i}`, deposit, undefined);
      await node.ask('account', `a${i}`, deposit);
    }
    const measured = await sideBySide(COMMANDS, {
      baseline: async () => {
        const pending: Promise<unknown>[] = new Array(COMMANDS);
        for (let i = 0; i < COMMANDS; i++) {
          pending[i] = host.dispatch('account', `a${i % ACTORS}`, deposit, undefined).then((r) => r.snapshot.context);
        }
        await Promise.all(pending);
      },
      natstate: async () => {
        const pending: Promise<unknown>[] = new Array(COMMANDS);
        for (let i = 0; i < COMMANDS; i++) pending[i] = node.ask('account', `a${i % ACTORS}`, deposit);
        await Promise.all(pending);
      },
    });
    await node.close();
    await host.close();
    const ratio = measured.natstate / measured.baseline;
    return { ratio: round(ratio), target: 0.9, pass: ratio >= 0.9, routedPerSecond: Math.round(measured.natstate), hostPerSecond: Math.round(measured.baseline) };
  },
};
