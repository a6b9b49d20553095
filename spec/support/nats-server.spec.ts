import { expect } from 'chai';
import { connect } from '@nats-io/transport-node';
import { NatsServer, findNatsServer, natsServerVersion } from './nats-server.js';

describe('spec harness: nats-server', () => {
  it('spawns an isolated JetStream server on a free port, restarts it with its store, and stops it', async function () {
    this.timeout(20_000);
    const server = await NatsServer.start();
    try {
      expect(server.port).to.not.equal(4222);
      const nc = await connect({ servers: server.url });
      expect(nc.info?.jetstream).to.equal(true);
      await nc.close();
      await server.kill();
      expect(server.running).to.equal(false);
      await server.restart();
      const again = await connect({ servers: server.url });
      expect(again.info?.port).to.equal(server.port);
      await again.close();
    } finally {
      await server.stop();
    }
    expect(server.running).to.equal(false);
  });

  it('reports the binary version it runs', () => {
    const bin = findNatsServer();
    expect(bin).to.be.a('string');
    expect(natsServerVersion(bin!)).to.match(/v2\.\d+\.\d+/);
  });
});
