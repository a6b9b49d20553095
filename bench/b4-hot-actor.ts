/**
 * B4: one hot actor on JetStream. natstate with many commands queued (group commit) vs a
 * naive loop that awaits each append before the next. Target: ratio >= 3.
 */
import { connect } from '@nats-io/transport-node';
import { createNode, JetStreamEventStore } from '../lib/index.js';
import { account } from '../examples/bank/account.machine.js';
import { opsPerSecond, round, type Benchmark } from './harness.js';

const COMMANDS = 5_000;

export const b4: Benchmark = {
  id: 'B4',
  title: 'hot actor on JetStream: group commit vs awaited appends',
  goal: 'ratio >= 3',
  needsNats: true,
  async run({ natsUrl }) {
    const nc = await connect({ servers: await natsUrl() });
    const namespace = `bench-b4-${Date.now()}`;
    const deposit = { type: 'DEPOSIT', amount: 1 } as const;
    const store = await JetStreamEventStore.create(nc, { namespace });
    const node = await createNode({ actors: { account }, namespace, nats: nc, snapshotEvery: 0, passivateAfterMs: 0 });
    try {
      let version = 0;
      const naivePerSecond = await opsPerSecond(
        COMMANDS / 5,
        async () => {
          for (let i = 0; i < COMMANDS / 5; i++) version = (await store.append({ type: 'account', id: 'naive' }, [deposit], { expectedVersion: version })).version;
        },
        2,
      );

      await node.send('account', 'hot', deposit);
      const hotPerSecond = await opsPerSecond(COMMANDS, async () => {
        await Promise.all(Array.from({ length: COMMANDS }, () => node.send('account', 'hot', deposit)));
      });
      const final = await node.state('account', 'hot');
      if (final.context.balance !== final.version) throw new Error('hot actor lost a deposit');

      const ratio = hotPerSecond / naivePerSecond;
      return { ratio: round(ratio), target: 3, pass: ratio >= 3, hotActorPerSecond: Math.round(hotPerSecond), naiveAppendsPerSecond: Math.round(naivePerSecond) };
    } finally {
      await node.close();
      await store.close();
      await nc.close();
    }
  },
};
