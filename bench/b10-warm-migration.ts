/**
 * B10: the first command on an actor's new owner, after a live migration (state installed
 * from the source) vs after a cold recovery from JetStream, for actors with 1,000 events.
 * Target: ratio (warm ÷ cold) <= 0.2. Cold recovery here replays all 1,000 events (no
 * snapshot); with a snapshot every 100 events it is reported as `coldWithSnapshotMs`.
 */
import { connect } from '@nats-io/transport-node';
import { ActorHost } from '../lib/actors/actor-host.js';
import { LocalEventBus } from '../lib/eventbus/local.js';
import { JetStreamEventStore } from '../lib/index.js';
import { account } from '../examples/bank/account.machine.js';
import { round, type Benchmark } from './harness.js';

const ACTORS = 10;
const EVENTS = 1_000;

export const b10: Benchmark = {
  id: 'B10',
  title: 'first command after warm migration vs cold recovery (1,000 events)',
  goal: 'ratio <= 0.2',
  needsNats: true,
  async run({ natsUrl }) {
    const nc = await connect({ servers: await natsUrl() });
    const namespace = `bench-b10-${Date.now()}`;
    const store = await JetStreamEventStore.create(nc, { namespace });
    const host = (nodeId: string, snapshotEvery = 0) =>
      new ActorHost({ namespace, nodeId, actors: { account }, store, bus: new LocalEventBus(namespace), snapshotEvery, passivateAfterMs: 0 });
    const deposit = { type: 'DEPOSIT', amount: 1 } as const;
    const ids = Array.from({ length: ACTORS }, (_, i) => `acc-${i}`);
    try {
      // 1,000 single-event commits per actor, actors written side by side: `ids` with no
      // snapshot (a cold recovery replays all 1,000), `snapshotted` with one every 100.
      const source = host('source', 0);
      const withSnapshots = host('source-snapshots', 100);
      const snapshottedIds = ids.map((id) => `${id}-s`);
      for (let n = 0; n < EVENTS; n++) {
        await Promise.all([
          ...ids.map((id) => source.dispatch('account', id, deposit, undefined)),
          ...snapshottedIds.map((id) => withSnapshots.dispatch('account', id, deposit, undefined)),
        ]);
      }
      await withSnapshots.close();

      const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
      const firstCommand = async (target: ActorHost, id: string) => {
        const t = performance.now();
        await target.dispatch('account', id, deposit, undefined);
        return performance.now() - t;
      };

      const warmHost = host('warm');
      const warm: number[] = [];
      for (const id of ids) {
        await source.whenIdle('account', id);
        const capture = source.capture('account', id);
        if (!capture) throw new Error(`${id} is not capturable on the source`);
        warmHost.install('account', id, capture);
        source.release('account', id);
        warm.push(await firstCommand(warmHost, id));
      }
      const cold: number[] = [];
      const coldHost = host('cold');
      for (const id of ids) cold.push(await firstCommand(coldHost, id));
      const snapshotted: number[] = [];
      const snapshotHost = host('snapshot', 100);
      for (const id of snapshottedIds) snapshotted.push(await firstCommand(snapshotHost, id));
      await Promise.all([source.close(), warmHost.close(), coldHost.close(), snapshotHost.close()]);

      const ratio = median(warm) / median(cold);
      return {
        ratio: round(ratio, 3),
        target: 0.2,
        pass: ratio <= 0.2,
        warmMs: round(median(warm), 3),
        coldMs: round(median(cold), 3),
        coldWithSnapshotMs: round(median(snapshotted), 3),
      };
    } finally {
      await store.close();
      await nc.close();
    }
  },
};
