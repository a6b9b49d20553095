import { expect } from 'chai';
import { nkeyAuthenticator } from '@nats-io/nats-core';
import { createNode, NatsAuthorizationError, NatsConnectionError } from '../../lib/index.js';
import { connectToNats, redactServers } from '../../lib/nats/connect.js';
import { account } from '../../examples/bank/account.machine.js';
import { freePort, NatsServer } from '../support/nats-server.js';
import { userNkey } from '../support/credentials.js';

const actors = { account };
const CLUSTER = { shards: 4, heartbeatMs: 100, failureTimeoutMs: 1_000, leaseMs: 1_000 };

describe('createNode with NATS connection options (credentials pass through)', function () {
  this.timeout(60_000);
  let server: NatsServer;
  const key = userNkey();
  before(async () => {
    server = await NatsServer.start({
      config: `authorization { users: [ { user: alice, password: "right-pw" }, { nkey: ${key.publicKey} } ] }`,
    });
  });
  after(async () => {
    await server?.stop();
  });

  it('logs in with the options given (user and password, nkey authenticator) and serves commands', async () => {
    const encoder = new TextEncoder();
    for (const login of [{ user: 'alice', pass: 'right-pw' }, { authenticator: nkeyAuthenticator(encoder.encode(key.seed)) }]) {
      const node = await createNode({ actors, namespace: 'auth', nats: { servers: server.url, ...login }, cluster: CLUSTER });
      try {
        expect((await node.send('account', 'acc-1', { type: 'DEPOSIT', amount: 1 })).accepted).to.equal(true);
      } finally {
        await node.close();
      }
    }
  });

  it('wrong credentials reject at once with a NatsAuthorizationError that names the server, not the secret', async () => {
    const error = await createNode({
      actors,
      namespace: 'auth',
      nats: { servers: server.url.replace('nats://', 'nats://alice:leaked@'), user: 'alice', pass: 'guessed-pw', maxReconnectAttempts: -1 },
      cluster: CLUSTER,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).to.be.instanceOf(NatsAuthorizationError);
    const refused = error as NatsAuthorizationError;
    expect(refused.code).to.equal('NATS_AUTHORIZATION');
    expect(refused.message).to.equal(`NATS authorization failed for ${server.url}: Authorization Violation`);
    expect(refused.servers).to.deep.equal([server.url]);
  });

  it('a server that does not answer rejects with a NatsConnectionError', async () => {
    const url = `nats://127.0.0.1:${await freePort()}`;
    const error = await createNode({ actors, namespace: 'auth', nats: { servers: [url], timeout: 2_000 } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).to.be.instanceOf(NatsConnectionError);
    expect((error as NatsConnectionError).message).to.match(new RegExp(`^cannot connect to NATS at ${url}: `));
  });

  it('turns nats.js async traces off unless the caller sets noAsyncTraces', async () => {
    const traces = (nc: unknown) => (nc as { protocol: { options: { noAsyncTraces?: boolean } } }).protocol.options.noAsyncTraces;
    const byDefault = await connectToNats({ servers: server.url, user: 'alice', pass: 'right-pw' });
    const chosen = await connectToNats({ servers: server.url, user: 'alice', pass: 'right-pw', noAsyncTraces: false });
    try {
      expect(traces(byDefault)).to.equal(true);
      expect(traces(chosen)).to.equal(false);
    } finally {
      await Promise.all([byDefault.close(), chosen.close()]);
    }
  });

  it('redactServers leaves credentials out of server URLs', () => {
    expect(redactServers(['nats://u:p@a:4222', 'tok@b:4223', 'tls://c:4224'])).to.deep.equal(['nats://a:4222', 'b:4223', 'tls://c:4224']);
    expect(redactServers('nats://t@a')).to.deep.equal(['nats://a']);
  });
});
