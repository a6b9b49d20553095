/**
 * B1: in-memory command throughput of the bank account actor through natstate (validate,
 * mailbox, pure step, append to the memory store, publish, reply) vs raw XState
 * `createActor(machine).send` of the same machine and events. Target: ratio >= 0.5.
 */
import { createActor } from 'xstate';
import { createNode } from '../lib/index.js';
import { account } from '../examples/bank/account.machine.js';
import { opsPerSecond, round, type Benchmark } from './harness.js';

const ACTORS = 1_000;
const COMMANDS = 200_000;

export const b1: Benchmark = {
  id: 'B1',
  title: 'in-memory commands vs raw actor.send',
  goal: 'ratio >= 0.5',
  async run() {
    const deposit = { type: 'DEPOSIT', amount: 1 } as const;

    const raw = Array.from({ length: ACTORS }, (_, i) => createActor(account, { input: { id: `a${i}` } }).start());
    const rawPerSecond = await opsPerSecond(COMMANDS, () => {
      for (let i = 0; i < COMMANDS; i++) raw[i % ACTORS].send(deposit);
    });

    const node = await createNode({ actors: { account }, namespace: 'bench', snapshotEvery: 0, passivateAfterMs: 0 });
    for (let i = 0; i < ACTORS; i++) await node.send('account', `a${i}`, deposit);
    // Pipelined like a busy server: every actor has commands queued at once.
    const natstatePerSecond = await opsPerSecond(COMMANDS, async () => {
      const pending: Promise<unknown>[] = new Array(COMMANDS);
      for (let i = 0; i < COMMANDS; i++) pending[i] = node.send('account', `a${i % ACTORS}`, deposit);
      await Promise.all(pending);
    });
    await node.close();

    const ratio = natstatePerSecond / rawPerSecond;
    return { ratio: round(ratio), target: 0.5, pass: ratio >= 0.5, natstatePerSecond: Math.round(natstatePerSecond), rawPerSecond: Math.round(rawPerSecond) };
  },
};
