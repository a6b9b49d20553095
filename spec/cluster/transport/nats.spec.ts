import { expect } from 'chai';
import type { NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { NatsTransport } from '../../../lib/cluster/transport/nats.js';
import { NoRespondersError } from '../../../lib/cluster/transport/transport.js';
import { ClosedError } from '../../../lib/errors.js';
import { Subjects } from '../../../lib/subjects.js';
import { transportContract } from '../../contract/transport.contract.js';
import { NatsServer } from '../../support/nats-server.js';

let counter = 0;
function uniqueNamespace(label: string): string {
  counter += 1;
  return `${label}-${process.pid}-${counter}`;
}

describe('NatsTransport', function () {
  this.timeout(20_000);
  let server: NatsServer;
  const connections: NatsConnection[] = [];
  const transports: NatsTransport[] = [];

  async function connection(): Promise<NatsConnection> {
    const nc = await connect({ servers: server.url });
    connections.push(nc);
    return nc;
  }

  function transport(nc: NatsConnection, namespace: string, options?: ConstructorParameters<typeof NatsTransport>[2]): NatsTransport {
    const t = new NatsTransport(nc, namespace, options);
    transports.push(t);
    return t;
  }

  async function closeAll(): Promise<void> {
    await Promise.all(transports.splice(0).map((t) => t.close()));
    await Promise.all(connections.splice(0).map((nc) => nc.close()));
  }

  before(async () => {
    server = await NatsServer.start();
  });

  after(async () => {
    await closeAll();
    await server?.stop();
  });

  // Each node has its own connection, as two processes of a cluster would.
  transportContract('NatsTransport', async () => {
    const namespace = uniqueNamespace('transport');
    return {
      transport: async (options) => transport(await connection(), namespace, options),
      close: closeAll,
    };
  });

  describe('on a real nats-server', () => {
    afterEach(closeAll);

    it('does not reach a node of the same id in another namespace or under another prefix', async () => {
      const ns = uniqueNamespace('iso');
      const server1 = transport(await connection(), ns);
      await server1.serve('node-1', async () => Uint8Array.of(1));
      const nc = await connection();
      for (const other of [transport(nc, uniqueNamespace('iso')), transport(nc, ns, { prefix: 'other' })]) {
        const error = await other.request('node-1', Uint8Array.of(0), 2000).catch((e: unknown) => e);
        expect(error).to.be.instanceOf(NoRespondersError);
      }
      expect([...(await transport(nc, ns).request('node-1', Uint8Array.of(0), 2000))]).to.deep.equal([1]);
    });

    it('serves on the subject Subjects names for the node', async () => {
      const ns = uniqueNamespace('subject');
      await transport(await connection(), ns).serve('node/ä', async (payload) => Uint8Array.from([...payload, 1]));
      const reply = await (await connection()).request(new Subjects(ns).node('node/ä'), Uint8Array.of(5), { timeout: 2000 });
      expect([...reply.data]).to.deep.equal([5, 1]);
    });

    it('rejects with ClosedError once its connection is closed', async () => {
      const nc = await connection();
      const t = transport(nc, uniqueNamespace('closed'));
      await nc.close();
      expect(await t.request('node-1', Uint8Array.of(0), 1000).catch((e: unknown) => e)).to.be.instanceOf(ClosedError);
      expect(await t.serve('node-1', async (p) => p).catch((e: unknown) => e)).to.be.instanceOf(ClosedError);
    });
  });
});
