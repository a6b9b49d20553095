import { expect } from 'chai';
import { createServer } from 'node:net';
import { createWebSocketInspector } from '@statelyai/inspect';
import { createInspectorServer } from '@statelyai/inspect/server';
import { WebSocket } from 'ws';
import { createMemoryCluster, type MemoryCluster } from '../lib/index.js';
import { actors } from '../examples/bank/actors.js';

const FAST = { heartbeatMs: 25, failureTimeoutMs: 250, leaseMs: 250, planIntervalMs: 25, shards: 16 };

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

interface Received {
  type: string;
  sessionId: string;
  name?: string;
  snapshot?: { value?: unknown };
}

describe('inspection through @statelyai/inspect', function () {
  this.timeout(20_000);
  let cluster: MemoryCluster<typeof actors> | undefined;
  const stops: (() => void)[] = [];
  afterEach(async () => {
    await cluster?.close();
    for (const stop of stops.splice(0).reverse()) stop();
  });

  it('streams every migration machine to a WebSocket receiver of createInspectorServer, Pending → … → Deleted', async () => {
    const port = await freePort();
    const server = createInspectorServer({ port, autoOpen: false });
    stops.push(() => server.stop());
    await new Promise((r) => setTimeout(r, 50));

    // Stands in for the browser page the server bridges to the Stately UI.
    const received: Received[] = [];
    const receiver = new WebSocket(`ws://127.0.0.1:${port}`);
    stops.push(() => receiver.close());
    receiver.on('message', (data) => received.push(JSON.parse(data.toString()) as Received));
    await new Promise((resolve, reject) => receiver.once('open', resolve).once('error', reject));

    const inspector = createWebSocketInspector({ url: `ws://127.0.0.1:${port}` });
    stops.push(() => inspector.stop());
    cluster = await createMemoryCluster({ actors, namespace: 'bank', nodes: 2, cluster: FAST, inspect: inspector.inspect });
    for (let i = 0; i < 20; i++) await cluster.nodes[0].send('account', `acc-${i}`, { type: 'DEPOSIT', amount: 1 });
    const joined = await cluster.addNode();

    const migrations = () => new Set(received.filter((e) => e.type === '@xstate.actor' && e.name === 'migration').map((e) => e.sessionId));
    const deleted = () => [...migrations()].filter((id) => received.some((e) => e.type === '@xstate.snapshot' && e.sessionId === id && e.snapshot?.value === 'Deleted'));
    for (const deadline = Date.now() + 10_000; (joined.cluster().ownedShards === 0 || deleted().length === 0 || deleted().length < migrations().size) && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(migrations().size).to.be.greaterThan(0);
    expect(deleted()).to.have.length(migrations().size);
    const one = deleted()[0];
    const path = received.filter((e) => e.type === '@xstate.snapshot' && e.sessionId === one).map((e) => e.snapshot?.value);
    expect(path).to.deep.equal(['Pending', 'Paused', 'Capturing', 'Transferring', 'Acked', 'Deleted']);
  });
});
