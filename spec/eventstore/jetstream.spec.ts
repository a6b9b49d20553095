import { expect } from 'chai';
import sinon from 'sinon';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { createInbox, errors as natsErrors, type NatsConnection, type PublishOptions } from '@nats-io/nats-core';
import { decode } from '../../lib/codec/codec.js';
import { isCommitRecord } from '../../lib/codec/messages.js';
import {
  ClosedError,
  ConcurrencyError,
  DecodeError,
  EventStoreError,
  PayloadTooLargeError,
  ServerCapabilityError,
} from '../../lib/errors.js';
import type { EventStore, StreamId } from '../../lib/eventstore/eventstore.js';
import { JetStreamEventStore } from '../../lib/eventstore/jetstream.js';
import { Subjects } from '../../lib/subjects.js';
import { NatsServer } from '../support/nats-server.js';
import { collect, eventStoreContract, rejection, snapshot } from '../contract/eventstore.contract.js';

let counter = 0;
function uniqueNamespace(label: string): string {
  counter += 1;
  return `${label}-${process.pid}-${counter}`;
}

const account = (id: string): StreamId => ({ type: 'Account', id });
const ev = (type: string, extra: Record<string, unknown> = {}) => ({ type, ...extra });

async function messageCount(jsm: JetStreamManager, namespace: string): Promise<number> {
  return (await jsm.streams.info(new Subjects(namespace).eventStream)).state.messages;
}

/** Counts the requests a connection sends, by kind, from the moment it is called. */
function countRequests(nc: NatsConnection) {
  const spy = sinon.spy(nc, 'request');
  // Commits and lookups are published with a reply subject of the store's own (see ReplyMux), not requested.
  const published = sinon.spy(nc, 'publish');
  const subjects = (s: sinon.SinonSpy) => s.getCalls().map((call) => call.args[0] as string);
  const isLookup = (s: string) => s.startsWith('$JS.API.STREAM.MSG.GET.');
  return {
    lookups: () => subjects(spy).filter(isLookup).length + subjects(published).filter(isLookup).length,
    publishes: (subject: string) => subjects(published).filter((s) => s === subject).length,
    restore: () => {
      spy.restore();
      published.restore();
    },
  };
}

describe('JetStreamEventStore', function () {
  this.timeout(20_000);
  let server: NatsServer;
  let nc: NatsConnection;
  let nc2: NatsConnection;
  let jsm: JetStreamManager;

  before(async () => {
    server = await NatsServer.start();
    nc = await connect({ servers: server.url });
    nc2 = await connect({ servers: server.url });
    jsm = await jetstreamManager(nc);
  });

  after(async () => {
    await nc?.close();
    await nc2?.close();
    await server?.stop();
  });

  eventStoreContract('JetStreamEventStore', async () => {
    const namespace = uniqueNamespace('contract');
    const stores: EventStore[] = [await JetStreamEventStore.create(nc, { namespace })];
    return {
      store: stores[0],
      other: async () => {
        const other = await JetStreamEventStore.create(nc2, { namespace });
        stores.push(other);
        return other;
      },
      teardown: async () => {
        await Promise.all(stores.map((s) => s.close()));
        const names = new Subjects(namespace);
        await jsm.streams.delete(names.eventStream);
        await jsm.streams.delete(`KV_${names.snapshotBucket}`);
      },
    };
  });

  describe('layout in JetStream', () => {
    it('stores one message per commit on the actor subject, with the commit id for dedupe', async () => {
      const namespace = uniqueNamespace('layout');
      const store = await JetStreamEventStore.create(nc, { namespace });
      const s = account('user@example.com');
      await store.append(s, [ev('A')], { expectedVersion: 0 });
      await store.append(s, [ev('B'), ev('C'), ev('D')], { expectedVersion: 1, commitId: 'commit-2', commandIds: ['x', 'y', 'z'] });
      await store.append(account('other'), [ev('E'), ev('F')], { expectedVersion: 0 });
      expect(await messageCount(jsm, namespace)).to.equal(3);

      const names = new Subjects(namespace);
      const stored = await jsm.streams.getMessage(names.eventStream, { last_by_subj: names.events(s) });
      expect(stored?.subject).to.equal(names.events(s));
      expect(stored?.header.get('Nats-Msg-Id')).to.match(/^commit-2@/);
      const record = decode(stored!.data, isCommitRecord, 'commit record');
      expect(record).to.deep.include({ commitId: 'commit-2', version: 4, commandIds: ['x', 'y', 'z'] });
      expect(record.events).to.deep.equal([ev('B'), ev('C'), ev('D')]);
      await store.close();
    });

    it('creates the stream and a one-value-per-key snapshot bucket, idempotently', async () => {
      const namespace = uniqueNamespace('create');
      const first = await JetStreamEventStore.create(nc, { namespace });
      await first.append(account('a'), [ev('A')], { expectedVersion: 0 });
      const second = await JetStreamEventStore.create(nc2, { namespace });
      expect(await second.version(account('a'))).to.equal(1);

      const names = new Subjects(namespace);
      const { config } = await jsm.streams.info(names.eventStream);
      expect(config).to.deep.include({
        subjects: [names.eventStreamSubjects],
        storage: 'file',
        num_replicas: 1,
        discard: 'old',
        allow_rollup_hdrs: false,
        deny_delete: true,
        deny_purge: true,
      });
      const kv = await jsm.streams.info(`KV_${names.snapshotBucket}`);
      expect(kv.config.max_msgs_per_subject).to.equal(1);
      expect(first.maxPayload).to.equal(nc.info?.max_payload);
      await first.close();
      await second.close();
    });

    it('keeps namespaces apart: same type and id, separate streams', async () => {
      const [nsA, nsB] = [uniqueNamespace('iso'), uniqueNamespace('iso')];
      const a = await JetStreamEventStore.create(nc, { namespace: nsA });
      const b = await JetStreamEventStore.create(nc, { namespace: nsB });
      await a.append(account('same'), [ev('IN_A')], { expectedVersion: 0 });
      await b.append(account('same'), [ev('IN_B1'), ev('IN_B2')], { expectedVersion: 0 });
      await a.saveSnapshot(account('same'), snapshot(1));
      expect((await collect(a.read(account('same')))).map((e) => e.event.type)).to.deep.equal(['IN_A']);
      expect((await collect(b.read(account('same')))).map((e) => e.event.type)).to.deep.equal(['IN_B1', 'IN_B2']);
      expect(await b.loadSnapshot(account('same'))).to.equal(undefined);
      expect(new Subjects(nsA).eventStream).to.not.equal(new Subjects(nsB).eventStream);
      expect(await messageCount(jsm, nsA)).to.equal(1);
      expect(await messageCount(jsm, nsB)).to.equal(1);
      await a.close();
      await b.close();
    });

    it('leaves the connection open on close, for its owner', async () => {
      const store = await JetStreamEventStore.create(nc2, { namespace: uniqueNamespace('owner') });
      await store.close();
      expect(nc2.isClosed()).to.equal(false);
      await nc2.flush();
    });

    it('closing lets a commit already published get its ack, and fails one that has not gone out yet with ClosedError', async () => {
      const namespace = uniqueNamespace('closing');
      const store = await JetStreamEventStore.create(nc, { namespace });
      const warm = account('warm');
      await store.append(warm, [ev('A')], { expectedVersion: 0 });
      // The position is cached: this commit is published before append returns its promise.
      const inFlight = store.append(warm, [ev('B')], { expectedVersion: 1 });
      // No position yet: this one is still looking the stream up when the store closes.
      const notSent = store.append(account('cold'), [ev('A')], { expectedVersion: 0 });
      await store.close();
      expect(await inFlight).to.include({ version: 2, duplicate: false });
      await rejection(notSent, ClosedError);
      expect(await messageCount(jsm, namespace)).to.equal(2);
    });

    it('reports a lost connection as EventStoreError', async () => {
      const own = await connect({ servers: server.url, reconnect: false });
      const store = await JetStreamEventStore.create(own, { namespace: uniqueNamespace('lost') });
      await own.close();
      await rejection(store.append(account('a'), [ev('A')], { expectedVersion: 0 }), EventStoreError);
      await rejection(store.version(account('a')), EventStoreError);
    });

    it('reports a commit the server refuses, or a stream gone from under it (for a commit and a lookup), as EventStoreError and stores nothing', async () => {
      const namespace = uniqueNamespace('refused');
      const names = new Subjects(namespace);
      const store = await JetStreamEventStore.create(nc, { namespace });
      const s = account('a');
      await store.append(s, [ev('A')], { expectedVersion: 0 });
      const info = await jsm.streams.info(names.eventStream);
      await jsm.streams.update(names.eventStream, { ...info.config, max_msg_size: 64 });
      const tooLarge = await rejection(store.append(s, [ev('B', { pad: 'x'.repeat(200) })], { expectedVersion: 1 }), EventStoreError);
      expect(tooLarge.message).to.match(/maximum/i);
      expect(await messageCount(jsm, namespace)).to.equal(1);
      await jsm.streams.delete(names.eventStream);
      const gone = await rejection(store.append(s, [ev('C')], { expectedVersion: 1 }), EventStoreError);
      expect(gone.message).to.match(/no JetStream stream takes this subject/);
      // A lookup gets JetStream's own error (not "no message"), as an EventStoreError.
      const lookup = await rejection(store.version(account('b')), EventStoreError);
      expect(lookup.message).to.match(/looking up the stream: stream not found/);
      await store.close();
    });
  });

  describe('version cache', () => {
    let namespace: string;
    let a: JetStreamEventStore;
    let b: JetStreamEventStore;
    const s = account('cached');

    beforeEach(async () => {
      namespace = uniqueNamespace('cache');
      a = await JetStreamEventStore.create(nc, { namespace });
      b = await JetStreamEventStore.create(nc2, { namespace });
    });

    afterEach(async () => {
      sinon.restore();
      await a.close();
      await b.close();
    });

    it('a stale cache on another connection costs a lookup, never a wrong write', async () => {
      await a.append(s, [ev('A')], { expectedVersion: 0 });
      expect(await b.version(s)).to.equal(1);
      const moved = await a.append(s, [ev('B'), ev('C')], { expectedVersion: 1 });

      const error = await rejection(b.append(s, [ev('X')], { expectedVersion: 1 }), ConcurrencyError);
      expect(error).to.include({ expectedVersion: 1, actualVersion: 3 });
      const result = await b.append(s, [ev('D')], { expectedVersion: 3 });
      expect(result.version).to.equal(4);
      expect(result.sequence).to.be.greaterThan(moved.sequence);
      expect((await collect(a.read(s))).map((e) => [e.event.type, e.version])).to.deep.equal([
        ['A', 1],
        ['B', 2],
        ['C', 3],
        ['D', 4],
      ]);
    });

    it('retries once when the cached sequence is stale but the version is right', async () => {
      const first = await a.append(s, [ev('A')], { expectedVersion: 0 });
      const second = await a.append(s, [ev('B')], { expectedVersion: 1 });
      b.updateVersionCache(s, 2, first.sequence);
      const requests = countRequests(nc2);
      const result = await b.append(s, [ev('C')], { expectedVersion: 2 });
      expect(result).to.include({ version: 3, duplicate: false });
      expect(result.sequence).to.be.greaterThan(second.sequence);
      expect(requests.publishes(new Subjects(namespace).events(s))).to.equal(2);
      expect(requests.lookups()).to.equal(1);
      expect(await messageCount(jsm, namespace)).to.equal(3);
    });

    it('takes a hint from updateVersionCache instead of looking the stream up', async () => {
      await a.append(s, [ev('A')], { expectedVersion: 0 });
      const latest = await a.append(s, [ev('B')], { expectedVersion: 1 });
      b.updateVersionCache(s, latest.version, latest.sequence);
      const requests = countRequests(nc2);
      await b.append(s, [ev('C')], { expectedVersion: 2 });
      expect(requests.lookups()).to.equal(0);
      expect(requests.publishes(new Subjects(namespace).events(s))).to.equal(1);

      // Without a sequence the hint drops the entry: the next append looks the stream up.
      const next = await a.append(s, [ev('D')], { expectedVersion: 3 });
      b.updateVersionCache(s, next.version);
      await b.append(s, [ev('E')], { expectedVersion: 4 });
      expect(requests.lookups()).to.equal(1);
      expect(await a.version(s)).to.equal(5);
    });

    it('never writes on a poisoned cache: every wrong hint ends in a retry or a ConcurrencyError', async () => {
      const other = account('someone-else');
      await a.append(s, [ev('A')], { expectedVersion: 0 });
      const truth = await a.append(s, [ev('B')], { expectedVersion: 1 });
      const foreign = await a.append(other, [ev('O')], { expectedVersion: 0 });

      // A version from the future with a sequence that does not exist.
      b.updateVersionCache(s, 10, truth.sequence + 1000);
      expect(await rejection(b.append(s, [ev('X')], { expectedVersion: 10 }), ConcurrencyError)).to.include({ actualVersion: 2 });
      // The next version, but the sequence of another actor's commit.
      b.updateVersionCache(s, 3, foreign.sequence);
      expect(await rejection(b.append(s, [ev('X')], { expectedVersion: 3 }), ConcurrencyError)).to.include({ actualVersion: 2 });
      // A newer version for the sequence the cache already holds: contradictory, so ignored.
      b.updateVersionCache(s, 5, truth.sequence);
      expect(await rejection(b.append(s, [ev('X')], { expectedVersion: 5 }), ConcurrencyError)).to.include({ actualVersion: 2 });
      // An old, once true position in a store that knew nothing yet.
      const fresh = await JetStreamEventStore.create(nc2, { namespace });
      fresh.updateVersionCache(s, 1, truth.sequence - 1);
      expect(await rejection(fresh.append(s, [ev('X')], { expectedVersion: 1 }), ConcurrencyError)).to.include({ actualVersion: 2 });
      // Invalid hints are ignored.
      fresh.updateVersionCache({ type: 'Account', id: '' }, 1, 1);
      fresh.updateVersionCache(s, -1, 1);
      await fresh.close();

      expect(await b.append(s, [ev('C')], { expectedVersion: 2 })).to.include({ version: 3 });
      expect((await collect(a.read(s))).map((e) => [e.event.type, e.version])).to.deep.equal([
        ['A', 1],
        ['B', 2],
        ['C', 3],
      ]);
      expect(await messageCount(jsm, namespace)).to.equal(4);
    });

    it('keeps the stream whole under many writers racing on two connections', async () => {
      const writers = [a, b, a, b];
      const perWriter = 8;
      await Promise.all(
        writers.map(async (store, w) => {
          for (let done = 0; done < perWriter; ) {
            const version = await store.version(s);
            try {
              await store.append(s, [ev(`W${w}`), ev(`W${w}`)], { expectedVersion: version });
              done += 1;
            } catch (error) {
              if (!(error instanceof ConcurrencyError)) throw error;
            }
          }
        }),
      );
      const events = await collect(b.read(s));
      expect(events.map((e) => e.version)).to.deep.equal(Array.from({ length: 64 }, (_, i) => i + 1));
      for (let i = 0; i < events.length; i += 2) expect(events[i].sequence).to.equal(events[i + 1].sequence);
      expect(await messageCount(jsm, namespace)).to.equal(32);
    });
  });

  describe('lost acknowledgements', () => {
    let conn: NatsConnection;

    beforeEach(async () => {
      conn = await connect({ servers: server.url });
    });

    afterEach(async () => {
      sinon.restore();
      await conn.close();
    });

    /**
     * Loses the acks of the next `count` publishes to `subject`: the commit reaches the
     * server with a reply subject nobody reads (`delivered`), or never leaves the client.
     */
    function loseAcks(subject: string, count: number, delivered: boolean): () => number {
      const publish = conn.publish.bind(conn);
      let left = count;
      let published = 0;
      (sinon.stub(conn, 'publish') as sinon.SinonStub).callsFake((subj: string, data: Uint8Array, opts?: PublishOptions) => {
        if (subj !== subject) return publish(subj, data, opts);
        published += 1;
        if (left === 0) return publish(subj, data, opts);
        left -= 1;
        if (delivered) publish(subj, data, { ...opts, reply: createInbox() });
      });
      return () => published;
    }

    it('publishes the commit again under the same message id, so it is stored once', async () => {
      const namespace = uniqueNamespace('lost-ack');
      const store = await JetStreamEventStore.create(conn, { namespace, timeoutMs: 1000 });
      const s = account('acked-late');
      const published = loseAcks(new Subjects(namespace).events(s), 2, true);
      const result = await store.append(s, [ev('A'), ev('B')], { expectedVersion: 0 });
      expect(result).to.include({ version: 2, duplicate: false });
      expect(published()).to.equal(3);
      expect(await messageCount(jsm, namespace)).to.equal(1);
      expect((await collect(store.read(s))).map((e) => e.sequence)).to.deep.equal([result.sequence, result.sequence]);
      await store.close();
    });

    it('stores a commit whose first publish never reached the server', async () => {
      const namespace = uniqueNamespace('lost-pub');
      const store = await JetStreamEventStore.create(conn, { namespace, timeoutMs: 1000 });
      const s = account('dropped');
      loseAcks(new Subjects(namespace).events(s), 1, false);
      expect(await store.append(s, [ev('A')], { expectedVersion: 0 })).to.include({ version: 1, duplicate: false });
      expect(await messageCount(jsm, namespace)).to.equal(1);
      await store.close();
    });

    it('gives up with EventStoreError after repeated timeouts; a retry with the commit id stores nothing new', async () => {
      const namespace = uniqueNamespace('lost-all');
      const store = await JetStreamEventStore.create(conn, { namespace, timeoutMs: 1000 });
      const s = account('unlucky');
      loseAcks(new Subjects(namespace).events(s), 10, true);
      const error = await rejection(store.append(s, [ev('A')], { expectedVersion: 0, commitId: 'c-1' }), EventStoreError);
      expect(error.message).to.match(/same commitId/);
      sinon.restore();
      expect(await store.append(s, [ev('A')], { expectedVersion: 0, commitId: 'c-1' })).to.include({ version: 1, duplicate: true });
      expect(await messageCount(jsm, namespace)).to.equal(1);
      await store.close();
    });
  });

  describe('reading', () => {
    it('replays thousands of events in a few pull requests and cleans up its consumer', async () => {
      const namespace = uniqueNamespace('replay');
      const store = await JetStreamEventStore.create(nc, { namespace });
      const s = account('long');
      for (let v = 0; v < 3000; v += 10) {
        const events = Array.from({ length: 10 }, (_, i) => ev('TICK', { n: v + i + 1 }));
        await store.append(s, events, { expectedVersion: v });
      }
      const pulls = sinon.spy(nc, 'publish');
      try {
        const started = Date.now();
        const events = await collect(store.read(s));
        const elapsed = Date.now() - started;
        expect(events).to.have.length(3000);
        expect(events.every((e, i) => e.version === i + 1 && e.event.n === i + 1)).to.equal(true);
        expect(pulls.getCalls().filter((c) => String(c.args[0]).startsWith('$JS.API.CONSUMER.MSG.NEXT.')).length).to.be.below(5);
        expect(elapsed).to.be.below(3000);
      } finally {
        pulls.restore();
      }

      let seen = 0;
      for await (const e of store.read(s, { fromVersion: 100 })) if (++seen === 5 || e.version > 200) break;
      const consumers = await jsm.consumers.list(new Subjects(namespace).eventStream).next();
      expect(consumers).to.deep.equal([]);
      await store.close();
    });

    it('falls back to the start of the stream when the start sequence hint is wrong', async () => {
      const store = await JetStreamEventStore.create(nc, { namespace: uniqueNamespace('hint') });
      const s = account('hinted');
      for (let v = 0; v < 6; v++) await store.append(s, [ev(`E${v + 1}`)], { expectedVersion: v });
      const all = await collect(store.read(s));
      const tooLate = await collect(store.read(s, { fromVersion: 2, fromSequence: all[4].sequence }));
      expect(tooLate.map((e) => e.version)).to.deep.equal([3, 4, 5, 6]);
      const pastTheEnd = await collect(store.read(s, { fromVersion: 2, fromSequence: all[5].sequence + 100 }));
      expect(pastTheEnd.map((e) => e.version)).to.deep.equal([3, 4, 5, 6]);
      await store.close();
    });
  });

  describe('corrupt data', () => {
    it('raises DecodeError for a foreign message on an actor subject or a corrupt snapshot', async () => {
      const namespace = uniqueNamespace('corrupt');
      const names = new Subjects(namespace);
      const store = await JetStreamEventStore.create(nc, { namespace });
      const s = account('victim');
      await store.append(s, [ev('A')], { expectedVersion: 0 });
      const js = jsm.jetstream();
      await js.publish(names.events(s), new TextEncoder().encode('{"not":"a commit"'));

      await rejection(collect(store.read(s)), DecodeError);
      await rejection(store.version(s), DecodeError);
      await rejection(store.append(s, [ev('B')], { expectedVersion: 1 }), DecodeError);
      expect(await messageCount(jsm, namespace)).to.equal(2);

      const kv = await new Kvm(js).open(names.snapshotBucket);
      await kv.put(names.snapshotKey(s), new TextEncoder().encode(JSON.stringify({ json: { version: 'x' } })));
      await rejection(store.loadSnapshot(s), DecodeError);
      await store.close();
    });
  });

  describe('with max_payload 65536', () => {
    let small: NatsServer;
    let conn: NatsConnection;

    before(async () => {
      small = await NatsServer.start({ config: 'max_payload: 65536' });
      conn = await connect({ servers: small.url });
    });

    after(async () => {
      await conn?.close();
      await small?.stop();
    });

    it('rejects an oversized commit or snapshot with PayloadTooLargeError and stores nothing', async () => {
      const namespace = uniqueNamespace('big');
      const store = await JetStreamEventStore.create(conn, { namespace });
      expect(store.maxPayload).to.equal(65536);
      const s = account('big');
      const error = await rejection(
        store.append(s, [ev('A', { blob: 'x'.repeat(40_000) }), ev('B', { blob: 'y'.repeat(30_000) })], { expectedVersion: 0 }),
        PayloadTooLargeError,
      );
      expect(error.size).to.be.greaterThan(error.limit);
      expect(error.limit).to.be.at.most(65536);
      await rejection(store.saveSnapshot(s, snapshot(1, { state: { blob: 'z'.repeat(70_000) } })), PayloadTooLargeError);
      expect(await store.version(s)).to.equal(0);
      expect(await store.loadSnapshot(s)).to.equal(undefined);
      expect(await messageCount(await jetstreamManager(conn), namespace)).to.equal(0);

      // Just under the limit, headers included, still fits.
      const fits = await store.append(s, [ev('A', { blob: 'x'.repeat(error.limit - 400) })], { expectedVersion: 0 });
      expect(fits.version).to.equal(1);
      await store.close();
    });
  });

  describe('without JetStream', () => {
    it('refuses a server without JetStream with ServerCapabilityError', async () => {
      const plain = await NatsServer.start({ config: 'jetstream: disabled' });
      const conn = await connect({ servers: plain.url });
      try {
        const error = await rejection(JetStreamEventStore.create(conn, { namespace: 'ns' }), ServerCapabilityError);
        expect(error.message).to.match(/JetStream/);
      } finally {
        await conn.close();
        await plain.stop();
      }
    });

    it('refuses an account without JetStream with ServerCapabilityError', async () => {
      const accounts = await NatsServer.start({ config: 'accounts { PLAIN: { users: [{ user: plain, password: plain }] } }' });
      const conn = await connect({ servers: accounts.url, user: 'plain', pass: 'plain' });
      try {
        const error = await rejection(JetStreamEventStore.create(conn, { namespace: 'ns' }), ServerCapabilityError);
        expect(error.message).to.match(/JetStream/);
      } finally {
        await conn.close();
        await accounts.stop();
      }
    });
  });

  describe('across a nats-server restart', () => {
    it('keeps the events and goes on appending once the server is back', async () => {
      const restarting = await NatsServer.start();
      const conn = await connect({ servers: restarting.url, reconnectTimeWait: 50, maxReconnectAttempts: -1 });
      try {
        const namespace = uniqueNamespace('restart');
        const store = await JetStreamEventStore.create(conn, { namespace, timeoutMs: 1000 });
        const s = account('durable');
        await store.append(s, [ev('A'), ev('B')], { expectedVersion: 0 });
        await store.saveSnapshot(s, snapshot(2));

        await restarting.kill();
        await rejection(store.version(s), EventStoreError);
        await restarting.restart();

        const deadline = Date.now() + 10_000;
        let version: number | undefined;
        while (version === undefined) {
          try {
            version = await store.version(s);
          } catch (error) {
            expect(error).to.be.instanceOf(EventStoreError);
            if (Date.now() > deadline) throw error;
            await new Promise((r) => setTimeout(r, 50));
          }
        }
        expect(version).to.equal(2);
        await store.append(s, [ev('C')], { expectedVersion: 2 });
        await rejection(store.append(s, [ev('X')], { expectedVersion: 2 }), ConcurrencyError);
        expect((await collect(store.read(s))).map((e) => e.event.type)).to.deep.equal(['A', 'B', 'C']);
        expect(await store.loadSnapshot(s)).to.deep.equal(snapshot(2));
        await store.close();
      } finally {
        await conn.close();
        await restarting.stop();
      }
    });
  });
});
