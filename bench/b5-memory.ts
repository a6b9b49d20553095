/**
 * B5: heap bytes per actor for 100,000 bank accounts, resident and idle, and again after
 * all were passivated and recovered, minus the bytes of their contexts alone.
 * Target: <= 2 KB of overhead per resident actor beyond its context.
 */
import { createNode, MemoryNetwork } from '../lib/index.js';
import { account } from '../examples/bank/account.machine.js';
import { gc, round, type Benchmark } from './harness.js';

const ACTORS = 100_000;
const TARGET = 2048;

function heap(): number {
  gc();
  return process.memoryUsage().heapUsed;
}

export const b5: Benchmark = {
  id: 'B5',
  title: 'memory per actor (100,000 accounts)',
  goal: `<= ${TARGET} B/actor`,
  async run() {
    // What the contexts alone weigh, so only natstate's overhead is compared with the target.
    let before = heap();
    const contexts = Array.from({ length: ACTORS }, (_, i) => ({ id: `acc-${i}`, balance: i, deposits: 1 }));
    const contextBytes = (heap() - before) / ACTORS;
    contexts.length = 0;

    const network = new MemoryNetwork();
    const node = await createNode({ actors: { account }, namespace: 'bench', network, snapshotEvery: 0, passivateAfterMs: 0 });
    const empty = heap();
    for (let i = 0; i < ACTORS; i += 1000) {
      const wave: Promise<unknown>[] = [];
      for (let j = i; j < i + 1000; j++) wave.push(node.send('account', `acc-${j}`, { type: 'DEPOSIT', amount: j + 1 }));
      await Promise.all(wave);
    }
    const active = heap();
    // Passivate everything: what remains is the store (each actor's one event).
    await node.close();
    const stored = heap();
    const residentBytes = (active - stored) / ACTORS;

    const recovered = await createNode({ actors: { account }, namespace: 'bench', network, snapshotEvery: 0, passivateAfterMs: 0 });
    for (let i = 0; i < ACTORS; i += 1000) {
      const wave: Promise<unknown>[] = [];
      for (let j = i; j < i + 1000; j++) wave.push(recovered.state('account', `acc-${j}`));
      await Promise.all(wave);
    }
    const recoveredBytes = (heap() - stored) / ACTORS;
    const check = await recovered.state('account', 'acc-99999');
    if (check.context.balance !== 100_000) throw new Error(`recovered balance ${check.context.balance}`);
    await recovered.close();

    const overhead = Math.max(residentBytes, recoveredBytes) - contextBytes;
    return {
      value: Math.round(overhead),
      unit: 'B/actor',
      target: TARGET,
      pass: overhead <= TARGET,
      residentIdleBytes: Math.round(residentBytes),
      passivatedThenRecoveredBytes: Math.round(recoveredBytes),
      contextBytes: round(contextBytes),
      storeBytesPerActor: Math.round((stored - empty) / ACTORS),
    };
  },
};
