import { expect } from 'chai';
import sinon from 'sinon';
import { connect } from '@nats-io/transport-node';
import { headers, type NatsConnection } from '@nats-io/nats-core';
import { ReplyMux } from '../../lib/nats/reply-mux.js';
import { ClosedError, TimeoutError } from '../../lib/errors.js';
import { NatsServer } from '../support/nats-server.js';

const text = (s: string) => new TextEncoder().encode(s);
const read = (b: Uint8Array) => new TextDecoder().decode(b);

describe('ReplyMux', function () {
  this.timeout(20_000);
  let server: NatsServer;
  let nc: NatsConnection;
  let responder: NatsConnection;

  before(async () => {
    server = await NatsServer.start();
    nc = await connect({ servers: server.url });
    responder = await connect({ servers: server.url });
    // Echoes the payload and a header back, after `delay-ms` if the request carries one.
    responder.subscribe('echo', {
      callback: (_, msg) => {
        const delay = Number(msg.headers?.get('delay-ms') || 0);
        setTimeout(() => msg.respond(text(`${read(msg.data)}:${msg.headers?.get('tag') ?? ''}`)), delay);
      },
    });
    await responder.flush();
  });

  after(async () => {
    await nc.close();
    await responder.close();
    await server.stop();
  });

  afterEach(() => sinon.restore());

  it('matches replies to their requests over one inbox subscription, without nc.request', async () => {
    const mux = new ReplyMux(nc, { owner: 'test', onError: () => {} });
    const request = sinon.spy(nc, 'request');
    const subscribe = sinon.spy(nc, 'subscribe');
    const replies = await Promise.all(
      Array.from({ length: 50 }, (_, i) => {
        const h = headers();
        h.set('tag', `t${i}`);
        h.set('delay-ms', String((50 - i) % 7));
        return mux.request('echo', text(`m${i}`), 2000, 'echo', h);
      }),
    );
    expect(replies.map((r) => read(r.data))).to.deep.equal(Array.from({ length: 50 }, (_, i) => `m${i}:t${i}`));
    expect(request.callCount).to.equal(0);
    expect(subscribe.callCount).to.equal(1);
    mux.close();
  });

  it('passes a "no responders" status on, and times out naming what it waited for', async () => {
    const mux = new ReplyMux(nc, { owner: 'test', onError: () => {} });
    const nobody = await mux.request('nobody.listens', text('x'), 2000, 'no one');
    expect(nobody.headers?.code).to.equal(503);

    await responder.subscribe('silent', { callback: () => {} });
    await responder.flush();
    const started = Date.now();
    const error = await mux.request('silent', text('x'), 100, 'the silent one').catch((e: unknown) => e);
    expect(error).to.be.instanceOf(TimeoutError);
    expect((error as TimeoutError).message).to.match(/the silent one timed out after 100 ms/);
    expect(Date.now() - started).to.be.within(90, 1000);
    mux.close();
  });

  it('close fails what waits with ClosedError and refuses new requests', async () => {
    const mux = new ReplyMux(nc, { owner: 'the test mux', onError: () => {} });
    const h = headers();
    h.set('delay-ms', '300');
    const waiting = mux.request('echo', text('slow'), 2000, 'echo', h).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 20));
    mux.close();
    const error = await waiting;
    expect(error).to.be.instanceOf(ClosedError);
    expect((error as Error).message).to.match(/the test mux is closed/);
    expect(await mux.request('echo', text('late'), 2000, 'echo').catch((e: unknown) => e)).to.be.instanceOf(ClosedError);
  });

  it('fails what waits with ClosedError at once when the connection closes under it', async () => {
    const own = await connect({ servers: server.url });
    const mux = new ReplyMux(own, { owner: 'test', onError: () => {} });
    await responder.subscribe('ignored', { callback: () => {} });
    await responder.flush();
    const waiting = mux.request('ignored', text('x'), 10_000, 'the ignored one').catch((e: unknown) => e);
    await own.flush();
    const started = Date.now();
    await own.close();
    const error = await waiting;
    expect(error).to.be.instanceOf(ClosedError);
    expect(Date.now() - started).to.be.below(2000);
    expect(await mux.request('ignored', text('y'), 10_000, 'after').catch((e: unknown) => e)).to.be.instanceOf(ClosedError);
  });

  it('closeWhenIdle lets the requests in flight finish, refuses new ones, then drops its subscription', async () => {
    const mux = new ReplyMux(nc, { owner: 'test', onError: () => {} });
    const h = headers();
    h.set('delay-ms', '200');
    const waiting = mux.request('echo', text('slow'), 2000, 'echo', h);
    const unsubscribe = sinon.spy();
    await new Promise((r) => setTimeout(r, 20));
    const subscription = (mux as unknown as { replies: { subscription: { unsubscribe(): void } } }).replies.subscription;
    const original = subscription.unsubscribe.bind(subscription);
    subscription.unsubscribe = () => {
      unsubscribe();
      original();
    };
    mux.closeWhenIdle();
    expect(await mux.request('echo', text('new'), 2000, 'echo').catch((e: unknown) => e)).to.be.instanceOf(ClosedError);
    expect(unsubscribe.callCount).to.equal(0);
    expect(read((await waiting).data)).to.equal('slow:');
    expect(unsubscribe.callCount).to.equal(1);
  });
});
