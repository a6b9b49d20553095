/**
 * The behaviour every `EventBus` adapter shares, run against each adapter by its own
 * spec. Nothing here sleeps: a delivery is awaited with a deadline, and a
 * non-delivery is proven by a sentinel published after it on the same node, which a
 * bus delivers in publish order.
 */
import { expect } from 'chai';
import { ClosedError } from '../../lib/errors.js';
import type { EventBus, EventStored } from '../../lib/eventbus/eventbus.js';

export interface BusOptions {
  readonly onError?: (error: Error) => void;
}

/** One process of the cluster: its buses share a connection (or whatever the adapter has). */
export interface EventBusNode {
  bus(namespace: string, options?: BusOptions): EventBus;
  /**
   * Resolves once the subscriptions made on this node are live in the backend. A network
   * bus subscribes asynchronously, so a notification another node publishes before
   * that may be missed (at-most-once, like core NATS).
   */
  ready(): Promise<void>;
}

export interface EventBusBackend {
  /** A new node on the shared backend; buses of one namespace on two nodes see each other. */
  node(): Promise<EventBusNode>;
  /** Closes every bus and node it made. */
  close(): Promise<void>;
}

let counter = 0;

/** A namespace no other spec uses, so specs sharing a backend cannot see each other. */
export function uniqueNamespace(label: string): string {
  counter += 1;
  return `${label}-${process.pid}-${counter}`;
}

export function notification(namespace: string, fields: Partial<EventStored> = {}): EventStored {
  counter += 1;
  return {
    namespace,
    type: 'Account',
    id: 'acc-1',
    version: 1,
    sequence: counter,
    events: [{ type: 'OPENED' }],
    commandIds: [`cmd-${counter}`],
    origin: 'node-1',
    ...fields,
  };
}

/** Collects deliveries and waits for them with a deadline instead of sleeping. */
export class Inbox {
  readonly received: EventStored[] = [];
  private readonly waiters = new Set<() => void>();

  readonly handler = (n: EventStored): void => {
    this.received.push(n);
    for (const wake of [...this.waiters]) wake();
  };

  /** Resolves once `predicate` holds for what was received; rejects after `timeoutMs`. */
  until(predicate: (received: readonly EventStored[]) => boolean, what: string, timeoutMs = 3000): Promise<void> {
    if (predicate(this.received)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const wake = () => {
        if (!predicate(this.received)) return;
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(wake);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; received ${this.received.length}`));
      }, timeoutMs);
      this.waiters.add(wake);
    });
  }

  /** Waits until this exact notification (by its unique sequence) has arrived. */
  receives(n: EventStored): Promise<void> {
    return this.until((all) => all.some((r) => r.sequence === n.sequence), `notification #${n.sequence} (${n.type}/${n.id})`);
  }

  count(n: number): Promise<void> {
    return this.until((all) => all.length >= n, `${n} deliveries`);
  }

  get sequences(): number[] {
    return this.received.map((r) => r.sequence);
  }
}

export function eventBusContract(name: string, factory: () => Promise<EventBusBackend>): void {
  describe(`EventBus contract: ${name}`, () => {
    let backend: EventBusBackend;
    let node1: EventBusNode;
    let node2: EventBusNode;

    beforeEach(async () => {
      backend = await factory();
      node1 = await backend.node();
      node2 = await backend.node();
    });

    const ready = () => Promise.all([node1.ready(), node2.ready()]);

    afterEach(async () => {
      await backend.close();
    });

    it('delivers a notification to subscribers on both nodes with every field intact', async () => {
      const ns = uniqueNamespace('intact');
      const publisher = node1.bus(ns);
      const local = new Inbox();
      const remote = new Inbox();
      publisher.subscribeToEventStored(local.handler);
      node2.bus(ns).subscribeToEventStored(remote.handler);
      await ready();

      // Values plain JSON would lose: the codec must carry them through the bus.
      const deposited = { type: 'DEPOSITED', amount: 10n ** 30n, at: new Date('2024-02-29T12:34:56.789Z'), tags: new Set(['a', 'b']), memo: undefined };
      const noted = { type: 'NOTED', byKey: new Map([['k', 1]]) };
      const sent = notification(ns, {
        version: 7,
        events: [deposited, noted],
        commandIds: ['cmd-a', 'cmd-b'],
        origin: 'node-α',
      });
      publisher.publish(sent);

      await Promise.all([local.receives(sent), remote.receives(sent)]);
      for (const inbox of [local, remote]) {
        expect(inbox.received).to.have.length(1);
        const [got] = inbox.received;
        expect(got).to.deep.equal(sent);
        const event = got.events[0] as unknown as Record<string, unknown>;
        expect(event.at).to.be.instanceOf(Date);
        expect(event.amount).to.be.a('bigint');
        expect(event).to.have.property('memo', undefined);
      }
    });

    it('filters by type, by id and by both', async () => {
      const ns = uniqueNamespace('filter');
      const publisher = node1.bus(ns);
      const bus = node2.bus(ns);
      const all = new Inbox();
      const byType = new Inbox();
      const byId = new Inbox();
      const byBoth = new Inbox();
      bus.subscribeToEventStored(all.handler);
      bus.subscribeToEventStored(byType.handler, { type: 'Account' });
      bus.subscribeToEventStored(byId.handler, { id: 'a-1' });
      bus.subscribeToEventStored(byBoth.handler, { type: 'Account', id: 'a-1' });
      await ready();

      const accountA2 = notification(ns, { type: 'Account', id: 'a-2' });
      const orderA1 = notification(ns, { type: 'Order', id: 'a-1' });
      const orderA2 = notification(ns, { type: 'Order', id: 'a-2' });
      // Matches every filter, so it is the sentinel for all of them.
      const accountA1 = notification(ns, { type: 'Account', id: 'a-1' });
      for (const n of [accountA2, orderA1, orderA2, accountA1]) publisher.publish(n);

      await Promise.all([all, byType, byId, byBoth].map((inbox) => inbox.receives(accountA1)));
      expect(all.sequences).to.deep.equal([accountA2, orderA1, orderA2, accountA1].map((n) => n.sequence));
      expect(byType.sequences).to.deep.equal([accountA2.sequence, accountA1.sequence]);
      expect(byId.sequences).to.deep.equal([orderA1.sequence, accountA1.sequence]);
      expect(byBoth.sequences).to.deep.equal([accountA1.sequence]);
    });

    it('filters by shard, alone and with a type or id; a subscription without one hears every shard and none', async () => {
      const ns = uniqueNamespace('shard');
      const publisher = node1.bus(ns);
      const bus = node2.bus(ns);
      const all = new Inbox();
      const shard3 = new Inbox();
      const shard3Order = new Inbox();
      const shard0 = new Inbox();
      bus.subscribeToEventStored(all.handler);
      bus.subscribeToEventStored(shard3.handler, { shard: 3 });
      bus.subscribeToEventStored(shard3Order.handler, { shard: 3, type: 'Order' });
      bus.subscribeToEventStored(shard0.handler, { shard: 0 });
      await ready();

      const noShard = notification(ns);
      const account3 = notification(ns, { shard: 3 });
      const account30 = notification(ns, { shard: 30 });
      const account0 = notification(ns, { shard: 0, id: 'acc-0' });
      // Matches every filter of shard 3: their sentinel.
      const order3 = notification(ns, { shard: 3, type: 'Order' });
      // The last one: the sentinel of shard 0 and of the unfiltered subscription.
      const order0 = notification(ns, { shard: 0, type: 'Order' });
      for (const n of [noShard, account3, account30, account0, order3, order0]) publisher.publish(n);

      await Promise.all([...[shard3, shard3Order].map((inbox) => inbox.receives(order3)), ...[all, shard0].map((inbox) => inbox.receives(order0))]);
      expect(all.sequences).to.deep.equal([noShard, account3, account30, account0, order3, order0].map((n) => n.sequence));
      expect(shard3.sequences).to.deep.equal([account3.sequence, order3.sequence]);
      expect(shard3Order.sequences).to.deep.equal([order3.sequence]);
      expect(shard0.sequences).to.deep.equal([account0.sequence, order0.sequence]);
      expect(all.received[1]).to.deep.equal(account3);
      expect(all.received[0]).to.not.have.property('shard');
    });

    it('stops delivering to a handler once it is unsubscribed', async () => {
      const ns = uniqueNamespace('unsub');
      const publisher = node1.bus(ns);
      const bus = node2.bus(ns);
      const leaving = new Inbox();
      const staying = new Inbox();
      const unsubscribe = bus.subscribeToEventStored(leaving.handler);
      bus.subscribeToEventStored(staying.handler);

      await ready();
      const first = notification(ns);
      publisher.publish(first);
      await Promise.all([leaving.receives(first), staying.receives(first)]);

      unsubscribe();
      unsubscribe(); // idempotent
      const second = notification(ns);
      publisher.publish(second);
      await staying.receives(second);
      expect(leaving.sequences).to.deep.equal([first.sequence]);
      expect(staying.sequences).to.deep.equal([first.sequence, second.sequence]);
    });

    it('isolates namespaces both ways, whatever types and ids they use', async () => {
      // Namespaces that would collide if names reached subjects unencoded.
      const base = uniqueNamespace('iso');
      const nsA = `${base}.es`;
      const nsB = `${base}_2Ees`;
      const publisherA = node1.bus(nsA);
      const publisherB = node1.bus(nsB);
      const inboxA = new Inbox();
      const inboxB = new Inbox();
      const filteredB = new Inbox();
      // A receiver may drop a misaddressed message, but none should ever reach it.
      const errors: Error[] = [];
      const onError = (error: Error) => errors.push(error);
      node2.bus(nsA, { onError }).subscribeToEventStored(inboxA.handler);
      const busB = node2.bus(nsB, { onError });
      busB.subscribeToEventStored(inboxB.handler);
      busB.subscribeToEventStored(filteredB.handler, { type: 'Account', id: '*' });

      await ready();
      const fromA = notification(nsA, { id: '*' });
      const strayB = notification(nsB, { id: '*' });
      const fromB = notification(nsB, { id: '*' });
      const sentinelA = notification(nsA, { id: '*' });
      publisherA.publish(fromA);
      // A bus only carries its own namespace: this one is not sent at all.
      publisherA.publish(strayB);
      publisherB.publish(fromB);
      publisherA.publish(sentinelA);

      await Promise.all([inboxA.receives(sentinelA), inboxB.receives(fromB), filteredB.receives(fromB)]);
      expect(inboxA.sequences).to.deep.equal([fromA.sequence, sentinelA.sequence]);
      expect(inboxB.sequences).to.deep.equal([fromB.sequence]);
      expect(filteredB.sequences).to.deep.equal([fromB.sequence]);
      expect(inboxA.received.map((n) => n.namespace)).to.deep.equal([nsA, nsA]);
      expect(inboxB.received.map((n) => n.namespace)).to.deep.equal([nsB]);
      expect(errors).to.deep.equal([]);
    });

    it("keeps ids and types with '.', '*', '>', spaces, escapes and unicode apart under filters", async () => {
      const ns = uniqueNamespace('ids');
      const ids = ['.', '*', '>', ' ', 'a.b', 'a', 'b', '_2E', 'a*', 'ünï cødé ✓'];
      const types = ['*', '>', 'Account'];
      const publisher = node1.bus(ns);
      const bus = node2.bus(ns);
      const byId = new Map(ids.map((id) => [id, new Inbox()]));
      const byType = new Map(types.map((type) => [type, new Inbox()]));
      for (const [id, inbox] of byId) bus.subscribeToEventStored(inbox.handler, { type: 'Account', id });
      for (const [type, inbox] of byType) bus.subscribeToEventStored(inbox.handler, { type });

      // Every (type, id) once, then every id again on 'Account' as the sentinels.
      await ready();
      const first = types.flatMap((type) => ids.map((id) => notification(ns, { type, id })));
      const sentinels = ids.map((id) => notification(ns, { type: 'Account', id, version: 2 }));
      for (const n of [...first, ...sentinels]) publisher.publish(n);

      await Promise.all(sentinels.map((s) => byId.get(s.id)!.receives(s)));
      for (const [id, inbox] of byId) {
        expect(inbox.received.map((n) => [n.type, n.id, n.version]), `filter id ${JSON.stringify(id)}`).to.deep.equal([
          ['Account', id, 1],
          ['Account', id, 2],
        ]);
      }
      await byType.get('Account')!.receives(sentinels[sentinels.length - 1]);
      for (const [type, inbox] of byType) {
        const expected = [...first, ...sentinels].filter((n) => n.type === type).map((n) => n.sequence);
        expect(inbox.sequences, `filter type ${JSON.stringify(type)}`).to.deep.equal(expected);
      }
    });

    it('reports a throwing handler to onError without stopping other handlers or later deliveries', async () => {
      const ns = uniqueNamespace('throw');
      const errors: Error[] = [];
      const publisher = node1.bus(ns);
      const bus = node2.bus(ns, { onError: (error) => errors.push(error) });
      const boom = new Error('handler failed');
      const calls: number[] = [];
      const rejected: number[] = [];
      bus.subscribeToEventStored((n) => {
        calls.push(n.sequence);
        throw boom;
      });
      bus.subscribeToEventStored(async (n) => {
        rejected.push(n.sequence);
        throw new Error(`async handler failed on #${n.sequence}`);
      });
      const healthy = new Inbox();
      bus.subscribeToEventStored(healthy.handler);

      await ready();
      const first = notification(ns);
      const second = notification(ns);
      publisher.publish(first);
      publisher.publish(second);
      await healthy.receives(second);
      await waitFor(() => errors.length >= 4, 'four reported handler errors');

      expect(healthy.sequences).to.deep.equal([first.sequence, second.sequence]);
      expect(calls).to.deep.equal([first.sequence, second.sequence]);
      expect(rejected).to.deep.equal([first.sequence, second.sequence]);
      expect(errors.filter((e) => e === boom)).to.have.length(2);
      expect(errors.map((e) => e.message).filter((m) => m.startsWith('async handler failed')).sort()).to.deep.equal(
        [`async handler failed on #${first.sequence}`, `async handler failed on #${second.sequence}`].sort(),
      );
    });

    it('survives a throwing handler on a bus without onError', async () => {
      const ns = uniqueNamespace('throw-silent');
      const publisher = node1.bus(ns);
      const bus = node2.bus(ns);
      bus.subscribeToEventStored(() => {
        throw new Error('nobody listens');
      });
      const healthy = new Inbox();
      bus.subscribeToEventStored(healthy.handler);

      await ready();
      const first = notification(ns);
      const second = notification(ns);
      publisher.publish(first);
      await healthy.receives(first);
      publisher.publish(second);
      await healthy.receives(second);
      expect(healthy.sequences).to.deep.equal([first.sequence, second.sequence]);
    });

    it('stops all delivery on close() and refuses use afterwards', async () => {
      const ns = uniqueNamespace('close');
      const publisher = node1.bus(ns);
      const closing = node2.bus(ns);
      const witness = node2.bus(ns);
      const closed = new Inbox();
      const filtered = new Inbox();
      const open = new Inbox();
      closing.subscribeToEventStored(closed.handler);
      const unsubscribe = closing.subscribeToEventStored(filtered.handler, { id: 'acc-1' });
      witness.subscribeToEventStored(open.handler);

      await ready();
      const before = notification(ns);
      publisher.publish(before);
      await Promise.all([closed.receives(before), filtered.receives(before), open.receives(before)]);

      await closing.close();
      await closing.close(); // idempotent
      unsubscribe(); // harmless after close
      const after = notification(ns);
      publisher.publish(after);
      await open.receives(after);
      expect(closed.sequences).to.deep.equal([before.sequence]);
      expect(filtered.sequences).to.deep.equal([before.sequence]);

      expect(() => closing.publish(notification(ns))).to.throw(ClosedError);
      expect(() => closing.subscribeToEventStored(() => undefined)).to.throw(ClosedError);
    });
  });
}

/** Polls a condition without fixed sleeps in the spec body; fails after `timeoutMs`. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
