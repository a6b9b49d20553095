/**
 * The behaviour every `Transport` adapter shares, run against each adapter by its own
 * spec. Two transports stand for two nodes. Nothing here sleeps: a slow handler waits
 * on a gate the spec opens, and every wait has a deadline.
 */
import { expect } from 'chai';
import { NoRespondersError, type RequestHandler, type Transport } from '../../lib/cluster/transport/transport.js';
import { ClosedError, TimeoutError } from '../../lib/errors.js';

export interface TransportOptions {
  readonly onError?: (error: Error) => void;
}

export interface TransportBackend {
  /** A new node on the shared backend, with its own transport (and connection). */
  transport(options?: TransportOptions): Promise<Transport>;
  /** Closes every transport it made (and whatever it opened for them). */
  close(): Promise<void>;
}

/** The error a promise rejects with; fails the spec when it fulfils instead. */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection, but the promise fulfilled');
}

/** A promise the spec resolves by hand, with a deadline on waiting for it. */
function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void; wait: (what: string, timeoutMs?: number) => Promise<T> } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (open = resolve));
  const wait = (what: string, timeoutMs = 5000) =>
    new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
      void promise.then((value) => {
        clearTimeout(timer);
        resolve(value);
      });
    });
  return { promise, open, wait };
}

const echo: RequestHandler = async (payload) => payload;

export function transportContract(name: string, factory: () => Promise<TransportBackend>): void {
  describe(`Transport contract: ${name}`, () => {
    let backend: TransportBackend;
    let node1: Transport;
    let node2: Transport;

    beforeEach(async () => {
      backend = await factory();
      node1 = await backend.transport();
      node2 = await backend.transport();
    });

    afterEach(async () => {
      await backend.close();
    });

    it('carries binary payloads to the node and its reply back', async () => {
      const seen: Uint8Array[] = [];
      await node2.serve('node-b', async (payload) => {
        seen.push(Uint8Array.from(payload));
        return Uint8Array.from([0xff, 0x00, ...[...payload].reverse()]);
      });
      const payload = Uint8Array.from({ length: 256 }, (_, i) => i);
      const reply = await node1.request('node-b', payload, 2000);
      expect([...seen[0]]).to.deep.equal([...payload]);
      expect([...reply]).to.deep.equal([0xff, 0x00, ...[...payload].reverse()]);
      expect([...(await node1.request('node-b', new Uint8Array(0), 2000))]).to.deep.equal([0xff, 0x00]);
    });

    it('serves several node ids, each with its own handler, and answers its own requests too', async () => {
      await node2.serve('b-1', async () => Uint8Array.of(1));
      await node2.serve('b-2', async () => Uint8Array.of(2));
      await node1.serve('a', async () => Uint8Array.of(3));
      expect([...(await node1.request('b-1', Uint8Array.of(0), 2000))]).to.deep.equal([1]);
      expect([...(await node1.request('b-2', Uint8Array.of(0), 2000))]).to.deep.equal([2]);
      expect([...(await node1.request('a', Uint8Array.of(0), 2000))]).to.deep.equal([3]);
      expect([...(await node2.request('a', Uint8Array.of(0), 2000))]).to.deep.equal([3]);
    });

    it('rejects with NoRespondersError for a node nobody serves, or serves no longer', async () => {
      const unknown = await rejection(node1.request('nobody', Uint8Array.of(1), 2000));
      expect(unknown).to.be.instanceOf(NoRespondersError);
      expect(unknown).to.include({ nodeId: 'nobody', code: 'NO_RESPONDERS' });

      const stop = await node2.serve('node-b', echo);
      expect([...(await node1.request('node-b', Uint8Array.of(7), 2000))]).to.deep.equal([7]);
      await stop();
      await stop();
      expect(await rejection(node1.request('node-b', Uint8Array.of(7), 2000))).to.be.instanceOf(NoRespondersError);
    });

    it('rejects with TimeoutError when the handler is slower, and takes its late reply in stride', async () => {
      const unhandled: unknown[] = [];
      const onUnhandled = (reason: unknown) => unhandled.push(reason);
      process.on('unhandledRejection', onUnhandled);
      try {
        const release = gate();
        const replied = gate();
        await node2.serve('slow', async (payload) => {
          await release.promise;
          replied.open();
          return payload;
        });
        const error = await rejection(node1.request('slow', Uint8Array.of(1), 100));
        expect(error).to.be.instanceOf(TimeoutError);
        expect(error).to.include({ timeoutMs: 100, code: 'TIMEOUT' });
        expect((error as Error).message).to.contain('slow');

        release.open();
        await replied.wait('the late reply');
        // A later exchange on the same transports proves the late reply broke nothing.
        expect([...(await node1.request('slow', Uint8Array.of(2), 2000))]).to.deep.equal([2]);
        await new Promise((resolve) => setImmediate(resolve));
        expect(unhandled).to.deep.equal([]);
      } finally {
        process.off('unhandledRejection', onUnhandled);
      }
    });

    it('answers 100 concurrent requests, each with its own reply', async () => {
      let turn = 0;
      await node2.serve('node-b', async (payload) => {
        // Replies finish out of order.
        for (let i = turn++ % 7; i > 0; i--) await Promise.resolve();
        return Uint8Array.from([...payload, 0xee]);
      });
      const requests = Array.from({ length: 100 }, (_, i) => node1.request('node-b', Uint8Array.of(i >> 8, i & 0xff), 5000));
      const replies = await Promise.all(requests);
      replies.forEach((reply, i) => expect([...reply]).to.deep.equal([i >> 8, i & 0xff, 0xee]));
    });

    it('reports a failing handler on its node and leaves the request unanswered (TimeoutError)', async () => {
      const reported: Error[] = [];
      const serving = await backend.transport({ onError: (error) => reported.push(error) });
      await serving.serve('throws', () => {
        throw new Error('handler bug (sync)');
      });
      await serving.serve('rejects', async () => {
        throw new Error('handler bug (async)');
      });
      await serving.serve('fine', echo);
      expect(await rejection(node1.request('throws', Uint8Array.of(1), 200))).to.be.instanceOf(TimeoutError);
      expect(await rejection(node1.request('rejects', Uint8Array.of(1), 200))).to.be.instanceOf(TimeoutError);
      expect(reported.map((e) => e.message).join('\n')).to.contain('handler bug (sync)').and.to.contain('handler bug (async)');
      expect(reported.every((e) => e instanceof Error)).to.equal(true);
      expect([...(await node1.request('fine', Uint8Array.of(9), 2000))]).to.deep.equal([9]);
    });

    it('stops serving on close and refuses further use with ClosedError, leaving other nodes working', async () => {
      await node2.serve('node-b', echo);
      await node1.serve('node-a', echo);
      await node2.close();
      expect(await rejection(node1.request('node-b', Uint8Array.of(1), 2000))).to.be.instanceOf(NoRespondersError);
      expect(await rejection(node2.request('node-a', Uint8Array.of(1), 2000))).to.be.instanceOf(ClosedError);
      expect(await rejection(node2.serve('node-b', echo))).to.be.instanceOf(ClosedError);
      expect([...(await node1.request('node-a', Uint8Array.of(1), 2000))]).to.deep.equal([1]);
    });
  });
}

