/**
 * `NatsTransport` against a stubbed `NatsConnection`: the failure paths a real server
 * makes hard to force (a publish on a closed connection, a reply that never comes or
 * comes too late, a 503 status) on a simulated clock, with replies delivered by hand.
 */
import { expect } from 'chai';
import sinon from 'sinon';
import { errors as natsErrors, headers, type Msg, type MsgCallback, type MsgHdrs, type NatsConnection, type SubscriptionOptions } from '@nats-io/nats-core';
import { NatsTransport } from '../../../lib/cluster/transport/nats.js';
import { NoRespondersError } from '../../../lib/cluster/transport/transport.js';
import { ClosedError, TimeoutError } from '../../../lib/errors.js';
import { Subjects } from '../../../lib/subjects.js';

const NAMESPACE = 'mocked';
const subjects = new Subjects(NAMESPACE);
/** Taken before any spec fakes the timers: a real turn of the event loop. */
const realSetImmediate = setImmediate;
const nextTurn = () => new Promise<void>((resolve) => realSetImmediate(resolve));

interface FakeSubscription {
  readonly subject: string;
  readonly callback: MsgCallback<Msg>;
  readonly unsubscribe: sinon.SinonStub<[], void>;
  readonly drain: sinon.SinonStub<[], Promise<void>>;
  /** Settles when the subscription ends, as the client's does (here: never, unless a spec ends it). */
  readonly closed: Promise<void>;
}

/** Just the part of a `NatsConnection` the transport uses, recording what it is asked to do. */
class FakeConnection {
  readonly subscriptions: FakeSubscription[] = [];
  readonly info = { server_id: 'fake', server_name: 'fake', version: '2.10.0', host: '127.0.0.1', port: 4222 };
  readonly publish = sinon.stub<[string, Uint8Array, { reply: string }], void>();
  readonly flush = sinon.stub<[], Promise<void>>().resolves();
  readonly isClosed = sinon.stub<[], boolean>().returns(false);
  /** What `subscribe` throws, as the client does on a closed connection. */
  subscribeFails: Error | undefined;
  readonly subscribe = sinon.spy((subject: string, options: SubscriptionOptions) => {
    if (this.subscribeFails) throw this.subscribeFails;
    const subscription: FakeSubscription = {
      subject,
      callback: options.callback!,
      unsubscribe: sinon.stub(),
      drain: sinon.stub<[], Promise<void>>().resolves(),
      closed: new Promise<void>(() => {}),
    };
    this.subscriptions.push(subscription);
    return subscription;
  });

  get nc(): NatsConnection {
    return this as unknown as NatsConnection;
  }

  /** The reply inbox subscription (`<inbox>.*`). */
  get replies(): FakeSubscription {
    const found = this.subscriptions.filter((s) => s.subject.endsWith('.*'));
    expect(found, 'reply inbox subscriptions').to.have.length(1);
    return found[0];
  }

  /** The reply subject of the `n`th publish. */
  replySubject(n: number): string {
    return this.publish.getCall(n).args[2].reply;
  }

  /** Delivers a message on the subscription `subject` belongs to, as the client's parser would. */
  deliver(subscription: FakeSubscription, subject: string, data: Uint8Array, hdrs?: MsgHdrs): Msg {
    const msg = { subject, sid: 1, data, headers: hdrs, reply: `reply-to.${subject}` } as unknown as Msg;
    subscription.callback(null, msg);
    return msg;
  }

  reply(n: number, data: Uint8Array, hdrs?: MsgHdrs): void {
    this.deliver(this.replies, this.replySubject(n), data, hdrs);
  }
}

/** Settles `promise` into a record the spec can inspect at any instant of the fake clock. */
function track<T>(promise: Promise<T>): { settled: boolean; value?: T; error?: unknown } {
  const state: { settled: boolean; value?: T; error?: unknown } = { settled: false };
  promise.then(
    (value) => Object.assign(state, { settled: true, value }),
    (error: unknown) => Object.assign(state, { settled: true, error }),
  );
  return state;
}

describe('NatsTransport over a stubbed connection', () => {
  let clock: sinon.SinonFakeTimers;
  let fake: FakeConnection;
  let onError: sinon.SinonSpy<[Error], void>;
  let transport: NatsTransport;

  beforeEach(() => {
    // setImmediate stays real: the transport's messages leave on the next turn (see `Outbox`).
    clock = sinon.useFakeTimers({ shouldAdvanceTime: false, toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
    fake = new FakeConnection();
    onError = sinon.spy((_error: Error) => undefined);
    transport = new NatsTransport(fake.nc, NAMESPACE, { onError });
  });

  afterEach(async () => {
    await transport.close();
    clock.restore();
    sinon.restore();
  });

  it('rejects with ClosedError when the publish finds the connection closed or draining, and forgets the request', async () => {
    fake.publish.onFirstCall().throws(new natsErrors.ClosedConnectionError());
    fake.publish.onSecondCall().throws(new natsErrors.DrainingConnectionError());
    for (const attempt of [transport.request('n1', Uint8Array.of(1), 1000), transport.request('n1', Uint8Array.of(2), 1000)]) {
      const error = await attempt.catch((e: unknown) => e);
      expect(error).to.be.instanceOf(ClosedError);
      expect(error).to.include({ code: 'CLOSED', message: 'the NATS connection is closed' });
    }
    // Nothing stays pending: the sweep timer stops and a reply to either is ignored.
    await clock.tickAsync(20);
    expect(clock.countTimers()).to.equal(0);
    expect(() => fake.reply(0, Uint8Array.of(9))).not.to.throw();
    expect(onError.called).to.equal(false);
  });

  it('rejects with ClosedError when the reply inbox cannot be subscribed on a closed connection', async () => {
    fake.subscribeFails = new natsErrors.ClosedConnectionError();
    const error = await transport.request('n1', Uint8Array.of(1), 1000).catch((e: unknown) => e);
    expect(error).to.be.instanceOf(ClosedError);
    expect(error).to.include({ message: 'the NATS connection is closed' });
    expect(fake.subscribe.calledOnce).to.equal(true);
    expect(fake.publish.called).to.equal(false);
    expect(clock.countTimers()).to.equal(0);
  });

  it('rejects with TimeoutError after timeoutMs without a reply, and ignores the reply that comes later', async () => {
    const unhandled = sinon.spy();
    process.on('unhandledRejection', unhandled);
    try {
      const request = track(transport.request('n1', Uint8Array.of(1), 100));
      await clock.tickAsync(99);
      expect(request.settled, 'settled before timeoutMs').to.equal(false);
      await clock.tickAsync(10);
      expect(request.error).to.be.instanceOf(TimeoutError);
      expect(request.error).to.include({ code: 'TIMEOUT', timeoutMs: 100, operation: 'request to node n1' });
      // No request left: the sweep timer stops.
      expect(clock.countTimers()).to.equal(0);

      expect(() => fake.reply(0, Uint8Array.of(7))).not.to.throw();
      await clock.tickAsync(100);
      await nextTurn();
      expect(request.value).to.equal(undefined);
      expect(unhandled.called, 'unhandled rejection').to.equal(false);
      expect(onError.called).to.equal(false);
    } finally {
      process.off('unhandledRejection', unhandled);
    }
  });

  it('rejects with NoRespondersError naming the node when the server answers with status 503', async () => {
    const request = track(transport.request('node-7', Uint8Array.of(1), 1000));
    await nextTurn();
    fake.reply(0, new Uint8Array(0), headers(503, 'No Responders'));
    await clock.tickAsync(0);
    expect(request.error).to.be.instanceOf(NoRespondersError);
    expect(request.error).to.include({ code: 'NO_RESPONDERS', nodeId: 'node-7' });
    expect((request.error as Error).message).to.contain('"node-7"');
    // Answered: it does not time out as well.
    await clock.tickAsync(2000);
    expect(clock.countTimers()).to.equal(0);
    expect(request.error).to.be.instanceOf(NoRespondersError);
  });

  it('publishes to the node subject and resolves each of concurrent requests with its own reply, in any order', async () => {
    const payloads = [Uint8Array.of(1), Uint8Array.of(2), Uint8Array.of(3)];
    const requests = ['n1', 'n2', 'n3'].map((node, i) => transport.request(node, payloads[i], 1000));
    expect(fake.publish.callCount, 'sent on the next turn').to.equal(0);
    await nextTurn();
    expect(fake.publish.callCount).to.equal(3);
    expect(fake.subscribe.calledOnce, 'one inbox for every request').to.equal(true);
    const inbox = fake.replies.subject.slice(0, -'.*'.length);
    const replySubjects = [0, 1, 2].map((n) => fake.replySubject(n));
    expect(new Set(replySubjects).size).to.equal(3);
    for (const [n, node] of ['n1', 'n2', 'n3'].entries()) {
      const [subject, payload] = fake.publish.getCall(n).args;
      expect(subject).to.equal(subjects.node(node));
      expect(payload).to.equal(payloads[n]);
      expect(replySubjects[n]).to.match(new RegExp(`^${inbox.replaceAll('.', '\\.')}\\.\\d+$`));
    }

    fake.reply(2, Uint8Array.of(30));
    fake.reply(0, Uint8Array.of(10));
    fake.reply(1, Uint8Array.of(20));
    // A second reply to an answered request changes nothing.
    fake.reply(0, Uint8Array.of(99));
    const replies = await Promise.all(requests);
    expect(replies.map((r) => [...r])).to.deep.equal([[10], [20], [30]]);
    await clock.tickAsync(20);
    expect(clock.countTimers()).to.equal(0);
  });

  it('rejects pending requests with ClosedError on close, unsubscribes the inbox and drains what it served', async () => {
    await transport.serve('n1', async () => Uint8Array.of(1));
    const served = fake.subscriptions.find((s) => s.subject === subjects.node('n1'))!;
    const requests = [transport.request('n2', Uint8Array.of(1), 1000), transport.request('n3', Uint8Array.of(2), 1000)].map(track);
    const replies = fake.replies;
    await transport.close();
    for (const request of requests) {
      expect(request.error).to.be.instanceOf(ClosedError);
      expect(request.error).to.include({ message: 'NatsTransport is closed' });
    }
    expect(replies.unsubscribe.calledOnce).to.equal(true);
    expect(served.drain.calledOnce).to.equal(true);
    expect(fake.flush.callCount).to.equal(2); // once by serve, once after the drain
    expect(clock.countTimers()).to.equal(0);

    await nextTurn();
    expect(() => fake.reply(0, Uint8Array.of(5))).not.to.throw();
    expect(await transport.request('n2', Uint8Array.of(1), 1000).catch((e: unknown) => e)).to.be.instanceOf(ClosedError);
    expect(await transport.serve('n1', async () => Uint8Array.of(1)).catch((e: unknown) => e)).to.be.instanceOf(ClosedError);
    expect(fake.publish.callCount).to.equal(2);
  });

  it('reports a serve handler that throws or rejects to onError and responds nothing', async () => {
    const thrown = new Error('handler bug');
    const rejected = new Error('async handler bug');
    await transport.serve('n1', () => {
      throw thrown;
    });
    await transport.serve('n2', async () => {
      throw rejected;
    });
    await transport.serve('n3', async (payload) => Uint8Array.from([...payload, 1]));
    const on = (node: string) => fake.subscriptions.find((s) => s.subject === subjects.node(node))!;
    const msgs = ['n1', 'n2', 'n3'].map((node) => fake.deliver(on(node), subjects.node(node), Uint8Array.of(4)));
    await clock.tickAsync(0);
    await nextTurn();

    expect(onError.callCount).to.equal(2);
    const [first, second] = onError.getCalls().map((call) => call.args[0]);
    expect(first.cause).to.equal(thrown);
    expect(first.message).to.contain('node n1').and.contain('handler bug');
    expect(second.cause).to.equal(rejected);
    expect(second.message).to.contain('node n2');
    // Only the control, a handler that works, is answered (on its request's reply subject).
    expect(fake.publish.args.map(([subject, data]) => [subject, [...data]])).to.deep.equal([[msgs[2].reply, [4, 1]]]);
  });
});
