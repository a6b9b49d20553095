import { expect } from 'chai';
import { ClosedError, TimeoutError } from '../../../lib/errors.js';
import { MemoryTransport, MemoryTransportHub } from '../../../lib/cluster/transport/memory.js';
import { NoRespondersError } from '../../../lib/cluster/transport/transport.js';
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

  describe('requests handed over as objects (messages: true)', () => {
    it('hands the message object itself to the node and brings its reply object back', async () => {
      const hub = new MemoryTransportHub();
      const received: object[] = [];
      const answer = { kind: 'ok' };
      await new MemoryTransport(hub).serve('node-b', async () => Uint8Array.of(9), async (message) => (received.push(message), answer));
      const requester = new MemoryTransport(hub, { messages: true });
      const message = { kind: 'route', n: 1 };
      expect(await requester.requestMessage!('node-b', message, 1000)).to.equal(answer);
      expect(received).to.have.length(1);
      expect(received[0]).to.equal(message);
      // Bytes still go to the byte handler.
      expect([...(await requester.request('node-b', Uint8Array.of(0), 1000))]).to.deep.equal([9]);
    });

    it('resolves undefined for a node that serves bytes only, and is absent without the option', async () => {
      const hub = new MemoryTransportHub();
      await new MemoryTransport(hub).serve('node-b', async () => Uint8Array.of(1));
      expect(await new MemoryTransport(hub, { messages: true }).requestMessage!('node-b', {}, 1000)).to.equal(undefined);
      expect(new MemoryTransport(hub).requestMessage).to.equal(undefined);
    });

    it('fails like a byte request: nobody serving, a failing handler (reported, unanswered), closed', async () => {
      const hub = new MemoryTransportHub();
      const reported: Error[] = [];
      await new MemoryTransport(hub, { onError: (e) => reported.push(e) }).serve('node-b', async () => Uint8Array.of(1), async () => {
        throw new Error('boom');
      });
      const requester = new MemoryTransport(hub, { messages: true });
      expect(await requester.requestMessage!('node-x', {}, 1000).catch((e: unknown) => e)).to.be.instanceOf(NoRespondersError);
      expect(await requester.requestMessage!('node-b', {}, 30).catch((e: unknown) => e)).to.be.instanceOf(TimeoutError);
      expect(reported.map((e) => e.message)).to.deep.equal(['natstate: the handler of node node-b failed, the request stays unanswered: boom']);
      await requester.close();
      expect(await requester.requestMessage!('node-b', {}, 1000).catch((e: unknown) => e)).to.be.instanceOf(ClosedError);
    });
  });
});
