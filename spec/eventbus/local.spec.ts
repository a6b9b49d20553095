import { expect } from 'chai';
import { LocalEventBus, LocalEventHub } from '../../lib/eventbus/local.js';
import type { EventBus } from '../../lib/eventbus/eventbus.js';
import { eventBusContract, Inbox, notification, uniqueNamespace } from '../contract/eventbus.contract.js';

eventBusContract('LocalEventBus', async () => {
  const hub = new LocalEventHub();
  const buses: EventBus[] = [];
  return {
    node: async () => ({
      bus: (namespace, options) => {
        const bus = new LocalEventBus(namespace, hub, options);
        buses.push(bus);
        return bus;
      },
      // Subscribing to the hub is synchronous: nothing to wait for.
      ready: async () => undefined,
    }),
    close: async () => {
      await Promise.all(buses.map((bus) => bus.close()));
    },
  };
});

describe('LocalEventBus', () => {
  it('still works with only a namespace (its own private hub)', async () => {
    const ns = uniqueNamespace('solo');
    const bus = new LocalEventBus(ns);
    const inbox = new Inbox();
    bus.subscribeToEventStored(inbox.handler);
    const sent = notification(ns);
    bus.publish(sent);
    await inbox.receives(sent);
    expect(inbox.received).to.deep.equal([sent]);
    await bus.close();
  });

  it('never runs a handler inside publish, and not after it unsubscribed in between', async () => {
    const ns = uniqueNamespace('async');
    const bus = new LocalEventBus(ns);
    const late = new Inbox();
    const witness = new Inbox();
    const unsubscribe = bus.subscribeToEventStored(late.handler);
    bus.subscribeToEventStored(witness.handler);
    const sent = notification(ns);
    bus.publish(sent);
    expect(late.received).to.deep.equal([]);
    unsubscribe();
    await witness.receives(sent);
    expect(late.received).to.deep.equal([]);
    await bus.close();
  });

  it('runs the handlers of one commit in subscription order, whether they filter by shard or not', async () => {
    const ns = uniqueNamespace('order');
    const bus = new LocalEventBus(ns);
    const calls: string[] = [];
    const unsubscribe = bus.subscribeToEventStored(() => calls.push('gone'), { shard: 2 });
    bus.subscribeToEventStored(() => calls.push('any-1'));
    bus.subscribeToEventStored(() => calls.push('shard-1'), { shard: 2 });
    bus.subscribeToEventStored(() => calls.push('any-2'), { type: 'Account' });
    bus.subscribeToEventStored(() => calls.push('other shard'), { shard: 3 });
    bus.subscribeToEventStored(() => calls.push('shard-2'), { shard: 2, id: 'acc-1' });
    unsubscribe();
    const witness = new Inbox();
    bus.subscribeToEventStored(witness.handler);
    const sent = notification(ns, { shard: 2 });
    bus.publish(sent);
    await witness.receives(sent);
    expect(calls).to.deep.equal(['any-1', 'shard-1', 'any-2', 'shard-2']);
    await bus.close();
  });
});
