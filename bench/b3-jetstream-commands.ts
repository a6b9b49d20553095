/**
 * B3: JetStream-backed commands spread over 1,000 actors vs raw pipelined `js.publish`
 * of payloads of the same size, from the same client, into the same stream, in the same
 * run. Target: ratio >= 0.9.
 *
 * Both sides are fully pipelined (everything issued, then awaited). natstate may
 * group-commit an actor's queued commands into one message; the figure without that help
 * (one command in flight per actor) is reported beside it as `unbatchedRatio`.
 */
import { connect } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { encode } from '../lib/codec/codec.js';
import { Subjects } from '../lib/subjects.js';
import { createNode } from '../lib/index.js';
import { account } from '../examples/bank/account.machine.js';
import { opsPerSecond, round, sideBySide, type Benchmark } from './harness.js';

const ACTORS = 1_000;
const COMMANDS = 20_000;

export const b3: Benchmark = {
  id: 'B3',
  title: 'JetStream commands (1,000 actors) vs raw js.publish',
  goal: 'ratio >= 0.9',
  needsNats: true,
  async run({ natsUrl }) {
    const nc = await connect({ servers: await natsUrl() });
    const namespace = `bench-b3-${Date.now()}`;
    const node = await createNode({ actors: { account }, namespace, nats: nc, snapshotEvery: 0, passivateAfterMs: 0 });
    const deposit = { type: 'DEPOSIT', amount: 1 } as const;
    try {
      // Warm up: every actor resident with its stream position cached.
      for (let i = 0; i < ACTORS; i += 100) {
        await Promise.all(Array.from({ length: 100 }, (_, j) => node.send('account', `acc-${i + j}`, deposit)));
      }

      const subjects = new Subjects(namespace);
      const payload = encode({ commitId: crypto.randomUUID(), version: 12345, time: Date.now(), events: [deposit], commandIds: [crypto.randomUUID()] });
      const js = jetstream(nc);
      const measured = await sideBySide(
        COMMANDS,
        {
          baseline: async () => {
            const acks: Promise<unknown>[] = new Array(COMMANDS);
            for (let i = 0; i < COMMANDS; i++) acks[i] = js.publish(subjects.events({ type: 'raw', id: `r-${i % ACTORS}` }), payload, { timeout: 60_000 });
            await Promise.all(acks);
          },
          natstate: async () => {
            const replies: Promise<unknown>[] = new Array(COMMANDS);
            for (let i = 0; i < COMMANDS; i++) replies[i] = node.send('account', `acc-${i % ACTORS}`, deposit);
            await Promise.all(replies);
          },
        },
        3,
      );
      const rawPerSecond = measured.baseline;
      const natstatePerSecond = measured.natstate;

      const unbatchedPerSecond = await opsPerSecond(COMMANDS, async () => {
        for (let wave = 0; wave < COMMANDS / ACTORS; wave++) {
          await Promise.all(Array.from({ length: ACTORS }, (_, i) => node.send('account', `acc-${i}`, deposit)));
        }
      });

      const ratio = natstatePerSecond / rawPerSecond;
      return {
        ratio: round(ratio),
        target: 0.9,
        pass: ratio >= 0.9,
        natstatePerSecond: Math.round(natstatePerSecond),
        rawPublishPerSecond: Math.round(rawPerSecond),
        unbatchedPerSecond: Math.round(unbatchedPerSecond),
        unbatchedRatio: round(unbatchedPerSecond / rawPerSecond),
        payloadBytes: payload.length,
      };
    } finally {
      await node.close();
      await nc.close();
    }
  },
};
