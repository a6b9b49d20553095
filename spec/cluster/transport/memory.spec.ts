import { expect } from 'chai';
import { MemoryTransport, MemoryTransportHub } from '../../../lib/cluster/transport/memory.js';
import { transportContract } from '../../contract/transport.contract.js';

describe('MemoryTransport', () => {
  // Every node of an embedded network has its own transport on one shared hub.
  transportContract('MemoryTransport', async () => {
    const hub = new MemoryTransportHub();
    const transports: MemoryTransport[] = [];
    return {
      transport: async (options) => {
        const transport = new MemoryTransport(hub, options);
        transports.push(transport);
        return transport;
      },
      close: async () => {
        await Promise.all(transports.splice(0).map((t) => t.close()));
      },
    };
  });

  it('leaves a node id alone on close once another transport serves it', async () => {
    const hub = new MemoryTransportHub();
    const old = new MemoryTransport(hub);
    const successor = new MemoryTransport(hub);
    const requester = new MemoryTransport(hub);
    await old.serve('node-b', async () => Uint8Array.of(1));
    await successor.serve('node-b', async () => Uint8Array.of(2));
    await old.close();
    expect([...(await requester.request('node-b', Uint8Array.of(0), 1000))]).to.deep.equal([2]);
  });
});
