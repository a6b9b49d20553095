import { expect } from 'chai';
import type { ConnectionOptions, NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { encode } from '../../lib/codec/codec.js';
import { DecodeError, PayloadTooLargeError } from '../../lib/errors.js';
import { NATSEventBus, type NATSEventBusOptions } from '../../lib/eventbus/nats.js';
import { Subjects } from '../../lib/subjects.js';
import { eventBusContract, Inbox, notification, uniqueNamespace } from '../contract/eventbus.contract.js';
import { NatsServer } from '../support/nats-server.js';

describe('NATSEventBus', function () {
  this.timeout(20_000);
  let server: NatsServer;
  const connections: NatsConnection[] = [];
  const buses: NATSEventBus[] = [];

  async function connection(options: Omit<ConnectionOptions, 'servers'> = {}, target = server): Promise<NatsConnection> {
    const nc = await connect({ ...options, servers: target.url });
    connections.push(nc);
    return nc;
  }

  function bus(nc: NatsConnection, namespace: string, options?: NATSEventBusOptions): NATSEventBus {
    const b = new NATSEventBus(nc, namespace, options);
    buses.push(b);
    return b;
  }

  async function closeAll(): Promise<void> {
    await Promise.all(buses.splice(0).map((b) => b.close()));
    await Promise.all(connections.splice(0).map((nc) => nc.close()));
  }

  before(async () => {
    server = await NatsServer.start();
  });

  after(async () => {
    await closeAll();
    await server?.stop();
  });

  // Each node is its own connection, as two processes of a cluster would have.
  eventBusContract('NATSEventBus', async () => ({
    node: async () => {
      const nc = await connection();
      return { bus: (namespace, options) => bus(nc, namespace, options), ready: () => nc.flush() };
    },
    close: closeAll,
  }));

  describe('on a real nats-server', () => {
    afterEach(closeAll);

    it('broadcasts to its own node: a bus receives what it publishes', async () => {
      const ns = uniqueNamespace('self');
      const nc = await connection();
      const only = bus(nc, ns);
      const sibling = bus(nc, ns);
      const own = new Inbox();
      const other = new Inbox();
      only.subscribeToEventStored(own.handler);
      sibling.subscribeToEventStored(other.handler, { type: 'Account' });
      const sent = notification(ns);
      only.publish(sent);
      await Promise.all([own.receives(sent), other.receives(sent)]);
      expect(own.received).to.deep.equal([sent]);
      expect(other.received).to.deep.equal([sent]);
    });

    it('carries the event flow of two nodes to both, in each publisher’s order', async () => {
      const ns = uniqueNamespace('flow');
      const nodes = [await connection(), await connection()].map((nc) => bus(nc, ns));
      const inboxes = nodes.map((b) => {
        const inbox = new Inbox();
        b.subscribeToEventStored(inbox.handler);
        return inbox;
      });
      await Promise.all(nodes.map((b) => b.flush()));
      const perNode = 50;
      const published = nodes.map((b, n) =>
        Array.from({ length: perNode }, (_, i) => notification(ns, { id: `acc-${n}`, version: i + 1, origin: `node-${n}` })),
      );
      for (let i = 0; i < perNode; i++) {
        nodes[0].publish(published[0][i]);
        nodes[1].publish(published[1][i]);
      }
      await Promise.all(inboxes.map((inbox) => inbox.count(2 * perNode)));
      for (const inbox of inboxes) {
        for (const origin of ['node-0', 'node-1']) {
          const versions = inbox.received.filter((r) => r.origin === origin).map((r) => r.version);
          expect(versions).to.deep.equal(Array.from({ length: perNode }, (_, i) => i + 1));
        }
      }
    });

    it('drops undecodable and misaddressed payloads with a DecodeError and keeps the subscription alive', async () => {
      const ns = uniqueNamespace('raw');
      const subjects = new Subjects(ns);
      const nc = await connection();
      const errors: Error[] = [];
      const b = bus(nc, ns, { onError: (error) => errors.push(error) });
      const all = new Inbox();
      const forX = new Inbox();
      const forY = new Inbox();
      b.subscribeToEventStored(all.handler);
      b.subscribeToEventStored(forX.handler, { id: 'x' });
      b.subscribeToEventStored(forY.handler, { id: 'y' });

      await b.flush();
      const raw = await connection();
      const onX = subjects.eventStored({ type: 'Account', id: 'x' });
      const forged = [
        new TextEncoder().encode('not json'),
        new Uint8Array([0xff, 0xfe, 0xfd]), // not UTF-8
        new Uint8Array(0),
        new TextEncoder().encode('{"no":"envelope"}'),
        encode({ namespace: ns, type: 'Account', id: 'x' }), // wrong shape
        encode(notification(`${ns}-other`, { id: 'x' })), // another namespace
        encode(notification(ns, { id: 'y' })), // another actor's notification
        encode(notification(ns, { type: 'Order', id: 'x' })), // another type
      ];
      for (const payload of forged) raw.publish(onX, payload);
      const valid = notification(ns, { id: 'x' });
      raw.publish(onX, encode(valid));

      await Promise.all([all.receives(valid), forX.receives(valid)]);
      expect(all.received).to.deep.equal([valid]);
      expect(forX.received).to.deep.equal([valid]);
      expect(forY.received).to.deep.equal([]);
      // Every forged payload was seen by two subscriptions (all, forX), each reporting it.
      expect(errors).to.have.length(2 * forged.length);
      for (const error of errors) {
        expect(error).to.be.instanceOf(DecodeError);
        expect((error as DecodeError).what).to.equal('EventStored');
      }

      const later = notification(ns, { id: 'y' });
      b.publish(later);
      await forY.receives(later);
      expect(forY.received).to.deep.equal([later]);
    });

    it('reports a notification over max_payload to onError instead of throwing, and sends nothing', async () => {
      const ns = uniqueNamespace('big');
      const errors: Error[] = [];
      const nc = await connection();
      const publisher = bus(nc, ns, { onError: (error) => errors.push(error) });
      const inbox = new Inbox();
      const subscriber = bus(await connection(), ns);
      subscriber.subscribeToEventStored(inbox.handler);
      await subscriber.flush();
      const limit = nc.info!.max_payload;

      const blob = { type: 'BLOB', data: 'x'.repeat(limit) };
      const tooBig = notification(ns, { events: [blob] });
      expect(() => publisher.publish(tooBig)).not.to.throw();
      expect(errors).to.have.length(1);
      expect(errors[0]).to.be.instanceOf(PayloadTooLargeError);
      expect((errors[0] as PayloadTooLargeError).limit).to.equal(limit);
      expect((errors[0] as PayloadTooLargeError).size).to.be.greaterThan(limit);

      const sentinel = notification(ns);
      publisher.publish(sentinel);
      await inbox.receives(sentinel);
      expect(inbox.received).to.deep.equal([sentinel]);
    });

    it('reports a publish on a closed connection to onError instead of throwing', async () => {
      const ns = uniqueNamespace('gone');
      const errors: Error[] = [];
      const nc = await connection();
      const b = bus(nc, ns, { onError: (error) => errors.push(error) });
      await nc.close();
      expect(() => b.publish(notification(ns))).not.to.throw();
      // The notice leaves on the next turn (see `Outbox`), and fails then.
      await new Promise((resolve) => setImmediate(resolve));
      expect(errors).to.have.length(1);
      expect(errors[0].message).to.match(/closed/i);
      await b.close();
    });

    it('flush() waits for the server and close() leaves the connection open', async () => {
      const ns = uniqueNamespace('own');
      const nc = await connection();
      const b = bus(nc, ns);
      const inbox = new Inbox();
      bus(nc, ns).subscribeToEventStored(inbox.handler);
      b.subscribeToEventStored(() => undefined);
      b.publish(notification(ns));
      await b.flush();
      await b.close();
      expect(nc.isClosed()).to.equal(false);
      const after = notification(ns);
      bus(nc, ns).publish(after);
      await inbox.receives(after);
      expect(inbox.received).to.have.length(2);
    });

    it('keeps delivering after the nats-server restarts', async () => {
      const restarting = await NatsServer.start();
      try {
        const ns = uniqueNamespace('restart');
        const options = { reconnectTimeWait: 50, maxReconnectAttempts: -1 };
        const ncs = [await connection(options, restarting), await connection(options, restarting)];
        const [publisher, subscriber] = ncs.map((nc) => bus(nc, ns));
        const inbox = new Inbox();
        subscriber.subscribeToEventStored(inbox.handler);
        await subscriber.flush();
        const before = notification(ns);
        publisher.publish(before);
        await inbox.receives(before);

        const reconnected = ncs.map(async (nc) => {
          for await (const status of nc.status()) if (status.type === 'reconnect') return;
        });
        await restarting.restart();
        await Promise.all(reconnected);
        // The client resubscribes on reconnect; a round trip proves the server has it.
        await Promise.all(ncs.map((nc) => nc.flush()));

        const after = notification(ns);
        publisher.publish(after);
        await inbox.receives(after);
        expect(inbox.sequences).to.deep.equal([before.sequence, after.sequence]);
      } finally {
        await closeAll();
        await restarting.stop();
      }
    });

    it('keeps buses with different prefixes apart', async () => {
      const ns = uniqueNamespace('prefix');
      const nc = await connection();
      const prefixed = bus(nc, ns, { prefix: 'other' });
      const plain = bus(nc, ns);
      const viaPrefix = new Inbox();
      const viaDefault = new Inbox();
      prefixed.subscribeToEventStored(viaPrefix.handler);
      plain.subscribeToEventStored(viaDefault.handler);

      const sent = notification(ns);
      prefixed.publish(sent);
      const sentinel = notification(ns);
      plain.publish(sentinel);
      prefixed.publish(sentinel);
      await Promise.all([viaPrefix.receives(sentinel), viaDefault.receives(sentinel)]);
      expect(viaPrefix.sequences).to.deep.equal([sent.sequence, sentinel.sequence]);
      expect(viaDefault.sequences).to.deep.equal([sentinel.sequence]);
    });
  });
});
