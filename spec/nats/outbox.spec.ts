import { expect } from 'chai';
import sinon from 'sinon';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { Outbox, outboxOf } from '../../lib/nats/outbox.js';
import { NatsServer } from '../support/nats-server.js';

const text = (s: string) => new TextEncoder().encode(s);
const read = (b: Uint8Array) => new TextDecoder().decode(b);
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe('Outbox', function () {
  this.timeout(20_000);
  let server: NatsServer;
  let nc: NatsConnection;
  let listener: NatsConnection;

  before(async () => {
    server = await NatsServer.start();
    nc = await connect({ servers: server.url });
    listener = await connect({ servers: server.url });
  });

  after(async () => {
    await nc.close();
    await listener.close();
    await server.stop();
  });

  afterEach(() => sinon.restore());

  it('publishes nothing at once, then everything queued in one turn, in order, on the next turn', async () => {
    const outbox = new Outbox(nc);
    const publish = sinon.spy(nc, 'publish');
    const noError = sinon.spy();
    for (let i = 0; i < 5; i++) outbox.publish(`out.${i}`, text(String(i)), i === 2 ? { reply: 'back' } : undefined, noError);
    await Promise.resolve();
    expect(publish.callCount).to.equal(0);
    await nextTurn();
    expect(publish.args.map(([subject]) => subject)).to.deep.equal(['out.0', 'out.1', 'out.2', 'out.3', 'out.4']);
    expect(publish.args[2][2]).to.deep.equal({ reply: 'back' });
    expect(noError.called).to.equal(false);
  });

  it('gives a message that fails to publish its own error, and still sends the rest', async () => {
    const outbox = new Outbox(nc);
    const refused = new Error('refused');
    const publish = sinon.stub(nc, 'publish').callsFake((subject: string) => {
      if (subject === 'bad') throw refused;
    });
    const onBad = sinon.spy();
    const onGood = sinon.spy();
    outbox.publish('good.1', text('1'), undefined, onGood);
    outbox.publish('bad', text('x'), undefined, onBad);
    outbox.publish('good.2', text('2'), undefined, onGood);
    await nextTurn();
    expect(publish.args.map(([subject]) => subject)).to.deep.equal(['good.1', 'bad', 'good.2']);
    expect(onBad.args).to.deep.equal([[refused]]);
    expect(onGood.called).to.equal(false);
  });

  it('flush sends what is queued and resolves once the server has it', async () => {
    const got: string[] = [];
    listener.subscribe('flushed.*', {
      callback: (_error, msg) => {
        got.push(read(msg.data));
      },
    });
    await listener.flush();
    const outbox = outboxOf(nc);
    for (const s of ['a', 'b', 'c']) outbox.publish('flushed.x', text(s), undefined, () => undefined);
    await outbox.flush();
    // The listener's own round trip: whatever the server had is delivered before its PONG.
    await listener.flush();
    expect(got).to.deep.equal(['a', 'b', 'c']);
  });

  it('is one per connection', () => {
    expect(outboxOf(nc)).to.equal(outboxOf(nc));
    expect(outboxOf(nc)).to.not.equal(outboxOf(listener));
  });
});
