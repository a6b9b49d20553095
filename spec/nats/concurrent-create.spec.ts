import { expect } from 'chai';
import sinon from 'sinon';
import { JetStreamApiError } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import { createRacingOthers, isCreateRace } from '../../lib/nats/concurrent-create.js';
import { NatsKV } from '../../lib/cluster/kv/nats.js';
import { JetStreamEventStore } from '../../lib/eventstore/jetstream.js';
import { NatsServer } from '../support/nats-server.js';

const overlap = () => new JetStreamApiError({ code: 400, err_code: 10065, description: 'subjects overlap with an existing stream' });

describe('creating a stream or bucket that other nodes create at the same moment', function () {
  this.timeout(60_000);

  it('tries again while it loses the race ("subjects overlap"), and only then', async () => {
    const create = sinon.stub();
    create.onCall(0).rejects(overlap());
    create.onCall(1).rejects(overlap());
    create.onCall(2).resolves('bucket');
    expect(await createRacingOthers(create)).to.equal('bucket');
    expect(create.callCount).to.equal(3);

    const other = new JetStreamApiError({ code: 400, err_code: 10058, description: 'stream name already in use with a different configuration' });
    const refused = sinon.stub().rejects(other);
    let error: unknown;
    await createRacingOthers(refused).catch((e: unknown) => (error = e));
    expect(error).to.equal(other);
    expect(refused.callCount).to.equal(1);
    expect(isCreateRace(new Error('subjects overlap with an existing stream'))).to.equal(false);
  });

  it('gives up after five attempts with the last error', async () => {
    const create = sinon.stub().rejects(overlap());
    let error: unknown;
    await createRacingOthers(create).catch((e: unknown) => (error = e));
    expect(isCreateRace(error)).to.equal(true);
    expect(create.callCount).to.equal(5);
  });

  describe('on a real nats-server', () => {
    let server: NatsServer;
    const connections: NatsConnection[] = [];
    before(async () => {
      server = await NatsServer.start();
    });
    after(async () => {
      await Promise.all(connections.map((nc) => nc.close()));
      await server?.stop();
    });

    it('an event store and a cluster bucket whose bucket create loses the race try again and open', async () => {
      const nc = await connect({ servers: server.url });
      const create = sinon.stub(Kvm.prototype, 'create');
      try {
        create.onFirstCall().rejects(overlap());
        create.callThrough();
        const store = await JetStreamEventStore.create(nc, { namespace: 'lost-once', storage: 'memory' });
        expect(create.callCount).to.equal(2);
        create.resetHistory();
        create.onFirstCall().rejects(overlap());
        const kv = await NatsKV.create(nc, { namespace: 'lost-once', storage: 'memory' });
        expect(create.callCount).to.equal(2);
        await kv.put('k', new TextEncoder().encode('v'));
        expect(new TextDecoder().decode((await kv.get('k'))?.value)).to.equal('v');
        await kv.close();
        await store.close();
      } finally {
        create.restore();
        await nc.close();
      }
    });

    it('eight nodes opening one namespace at once all get its stream and bucket', async () => {
      for (let i = 0; i < 8; i++) connections.push(await connect({ servers: server.url }));
      for (let round = 0; round < 3; round++) {
        const namespace = `race-${round}`;
        const kvs = await Promise.all(connections.map((nc) => NatsKV.create(nc, { namespace, storage: 'memory' })));
        const stores = await Promise.all(connections.map((nc) => JetStreamEventStore.create(nc, { namespace, storage: 'memory' })));
        await kvs[0].put('k', new TextEncoder().encode('v'));
        expect(new TextDecoder().decode((await kvs[7].get('k'))?.value)).to.equal('v');
        expect(stores).to.have.length(8);
        await Promise.all(kvs.map((kv) => kv.close()));
        await Promise.all(stores.map((store) => store.close()));
      }
    });
  });
});
