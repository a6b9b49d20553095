/**
 * NATSEventBus + JetStreamEventStore: two nodes (two connections, as two processes
 * would have) share one namespace on NATS.
 *
 *   NATS_URL=nats://127.0.0.1:4222 npm run example:eventbus-jetstream
 *
 * Node "north" writes; node "south" sees each EventStored, its version cache follows
 * north's appends, and its own append afterwards lands on the right version.
 */
import { connect } from '@nats-io/transport-node';
import { createNode, JetStreamEventStore, NATSEventBus, type EventStored } from '../../lib/index.js';
import { actors } from '../bank/actors.js';

const servers = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const namespace = process.env.NAMESPACE ?? `example-${Date.now()}`;

// North: a full node on NATS.
const north = await createNode({ actors, namespace, nodeId: 'north', nats: { servers } });

// South: the two adapters by hand, on a connection of its own.
const nc = await connect({ servers });
const store = await JetStreamEventStore.create(nc, { namespace });
const bus = new NATSEventBus(nc, namespace);
const seen: EventStored[] = [];
bus.subscribeToEventStored((n) => {
  seen.push(n);
  store.updateVersionCache({ type: n.type, id: n.id }, n.version, n.sequence);
  console.log(`south saw ${n.type}/${n.id} v${n.version} from ${n.origin}: ${n.events.map((e) => e.type).join(', ')}`);
});
await bus.flush();

for (const amount of [10, 20, 30]) await north.send('account', 'alice', { type: 'DEPOSIT', amount });
while (seen.length < 3) await new Promise((resolve) => setTimeout(resolve, 10));

// South appends at the version its cache learned from the bus: no lookup, no conflict.
const { version } = await store.append({ type: 'account', id: 'alice' }, [{ type: 'DEPOSIT', amount: 40 }], { expectedVersion: 3 });
console.log(`south appended at version ${version}`);

// North's resident copy is stale: its next append is fenced by the server, it catches up and decides again.
const { state } = await north.ask('account', 'alice', { type: 'WITHDRAW', amount: 1 });
console.log(`north: balance ${state.context.balance}, version ${(await north.state('account', 'alice')).version}`);

await bus.close();
await store.close();
await nc.close();
await north.close();
