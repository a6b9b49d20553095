/**
 * Watch live migrations in the Stately inspector.
 *   npx tsx examples/inspector/main.ts            # opens http://localhost:8080 in a browser
 *   INSPECT_PORT=9000 NO_OPEN=1 npx tsx examples/inspector/main.ts
 *
 * `createInspectorServer` serves a page that embeds the Stately inspector and relays
 * what `createWebSocketInspector` sends it; every migration machine of every node shows
 * up there, going Pending → Paused → Capturing → Transferring → Acked → Deleted.
 */
import { createWebSocketInspector } from '@statelyai/inspect';
import { createInspectorServer } from '@statelyai/inspect/server';
import { createMemoryCluster } from '../../lib/index.js';
import { actors } from '../bank/actors.js';

const port = Number(process.env.INSPECT_PORT ?? 8080);
const server = createInspectorServer({ port, autoOpen: !process.env.NO_OPEN && !process.env.CI });
const inspector = createWebSocketInspector({ url: `ws://localhost:${port}` });
console.log(`inspector: open http://localhost:${port}`);

let migrated = 0;
const cluster = await createMemoryCluster({
  actors,
  namespace: 'bank',
  nodes: 2,
  inspect: inspector.inspect,
  cluster: { migration: { onMigration: (m) => m.status === 'Deleted' && migrated++ } },
});
for (let i = 0; i < 20; i++) await cluster.nodes[0].send('account', `acc-${i}`, { type: 'DEPOSIT', amount: 10 });
const joined = await cluster.addNode(); // a third node joins: some shards, and their actors, move to it
const settled = () => {
  const views = cluster.nodes.map((node) => node.cluster());
  return joined.cluster().ownedShards > 0 && views.every((v) => v.epoch === views[0].epoch && v.migrations.running === 0);
};
for (const deadline = Date.now() + 15_000; !settled() && Date.now() < deadline; ) await new Promise((resolve) => setTimeout(resolve, 50));
console.log(`migrations completed: ${migrated > 0 ? 'yes' : 'none'}`);
await cluster.close();
// Give the inspector a moment to flush what it has not sent yet.
await new Promise((resolve) => setTimeout(resolve, 200));
inspector.stop();
server.stop();
