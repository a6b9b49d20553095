/**
 * B1: in-memory command throughput of the bank account actor through natstate (validate,
 * mailbox, pure step, append to the memory store, publish, reply) vs raw XState
 * `createActor(machine).send` of the same machine and events. Target: ratio >= 0.5.
 *
 * natstate's commands are pipelined (all issued, then awaited), as a busy node receives
 * them; queued commands of one actor are group-committed. The figure with exactly one
 * command in flight per actor (no group commit possible) is reported as `unbatchedRatio`.
 */
import { createActor } from 'xstate';
import { createNode } from '../lib/index.js';
import { account } from '../examples/bank/account.machine.js';
import { round, sideBySide, type Benchmark } from './harness.js';

const ACTORS = 1_000;
const COMMANDS = 200_000;

export const b1: Benchmark = {
  id: 'B1',
  title: 'in-memory commands vs raw actor.send',
  goal: 'ratio >= 0.5',
  async run() {
    const deposit = { type: 'DEPOSIT', amount: 1 } as const;
    const raw = Array.from({ length: ACTORS }, (_, i) => createActor(account, { input: { id: `a${i}` } }).start());
    const baseline = () => {
      for (let i = 0; i < COMMANDS; i++) raw[i % ACTORS].send(deposit);
    };

    const node = await createNode({ actors: { account }, namespace: 'bench', snapshotEvery: 0, passivateAfterMs: 0 });
    for (let i = 0; i < ACTORS; i++) await node.send('account', `a${i}`, deposit);
    const pipelined = await sideBySide(COMMANDS, {
      baseline,
      natstate: async () => {
        const pending: Promise<unknown>[] = new Array(COMMANDS);
        for (let i = 0; i < COMMANDS; i++) pending[i] = node.send('account', `a${i % ACTORS}`, deposit);
        await Promise.all(pending);
      },
    });
    const unbatched = await sideBySide(COMMANDS / 4, {
      baseline: () => {
        for (let i = 0; i < COMMANDS / 4; i++) raw[i % ACTORS].send(deposit);
      },
      natstate: async () => {
        for (let wave = 0; wave < COMMANDS / 4 / ACTORS; wave++) {
          await Promise.all(Array.from({ length: ACTORS }, (_, i) => node.send('account', `a${i}`, deposit)));
        }
      },
    }, 3);
    await node.close();

    const ratio = pipelined.natstate / pipelined.baseline;
    return {
      ratio: round(ratio),
      target: 0.5,
      pass: ratio >= 0.5,
      natstatePerSecond: Math.round(pipelined.natstate),
      rawPerSecond: Math.round(pipelined.baseline),
      unbatchedPerSecond: Math.round(unbatched.natstate),
      unbatchedRatio: round(unbatched.natstate / unbatched.baseline),
    };
  },
};
