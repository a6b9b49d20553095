import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NatsServer } from '../support/nats-server.js';
import { CliProcess, expectUsageError, lastJson, natstate } from '../support/cli.js';
import { operatorSetup, tlsFiles, userNkey, type TlsFiles } from '../support/credentials.js';

const NODE = ['--namespace', 'bank', '--actors', 'examples/bank/actors.ts', '--shards', '4', '--heartbeat-ms', '100', '--failure-timeout-ms', '1000'];
const DEPOSIT = ['--namespace', 'bank', '--json', 'account', 'acc-1', '{"type":"DEPOSIT","amount":5}'];

/**
 * One nats-server configured for `config`: a node started with `good` credentials runs and
 * serves a command sent with `client` credentials (its own options, URL or environment);
 * a node started with `bad` ones fails at once, exit 2, one line matching `refused`.
 */
async function provesLogin(config: string, login: {
  good: (url: string) => string[];
  client: (url: string) => { args: string[]; env?: Record<string, string> };
  bad: (url: string) => string[];
  refused: (url: string) => RegExp;
  secret?: string;
}): Promise<void> {
  const server = await NatsServer.start({ config });
  const node = CliProcess.start(['node', ...login.good(server.url), ...NODE]);
  try {
    await node.waitFor(/node \S+ up: namespace bank/, 30_000);
    const client = login.client(server.url);
    const sent = await natstate(['send', ...client.args, ...DEPOSIT], { env: client.env });
    expect(sent.code, sent.stderr).to.equal(0);
    expect(lastJson<{ accepted: boolean; version: number }>(sent)).to.include({ accepted: true, version: 1 });

    const refused = await natstate(['node', ...login.bad(server.url), ...NODE], { timeoutMs: 30_000 });
    expectUsageError(refused, login.refused(server.url));
    if (login.secret) expect(refused.stderr).to.not.contain(login.secret);
  } finally {
    node.signal('SIGTERM');
    await node.exited;
    await server.stop();
  }
}

const authorizationFailed = (url: string) => new RegExp(`^natstate: NATS authorization failed for ${url}: Authorization Violation`);

describe('natstate on a NATS server that requires credentials or TLS', function () {
  this.timeout(120_000);
  let dir: string;
  let tls: TlsFiles;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'natstate-auth-'));
    tls = tlsFiles(dir);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('user and password: as options, in the URL or in the environment; a wrong password is refused', async () => {
    await provesLogin('authorization { users: [ { user: alice, password: "s3cret-pw" } ] }', {
      good: (url) => ['--nats', url, '--nats-user', 'alice', '--nats-password', 's3cret-pw'],
      client: (url) => ({ args: ['--nats', url.replace('nats://', 'nats://alice:s3cret-pw@')] }),
      bad: (url) => ['--nats', url],
      refused: authorizationFailed,
    });
    await provesLogin('authorization { users: [ { user: alice, password: "s3cret-pw" } ] }', {
      good: (url) => ['--nats', url.replace('nats://', 'nats://alice:s3cret-pw@')],
      client: (url) => ({ args: ['--nats', url], env: { NATS_USER: 'alice', NATS_PASSWORD: 's3cret-pw' } }),
      bad: (url) => ['--nats', url.replace('nats://', 'nats://alice:guessed-pw@')],
      refused: authorizationFailed,
      secret: 'guessed-pw',
    });
  });

  it('token: as an option, in the environment or in the URL; a wrong token is refused', async () => {
    await provesLogin('authorization { token: "t0ken-42" }', {
      good: (url) => ['--nats', url, '--nats-token', 't0ken-42'],
      client: (url) => ({ args: ['--nats', url], env: { NATS_TOKEN: 't0ken-42' } }),
      bad: (url) => ['--nats', url.replace('nats://', 'nats://guessed-token@')],
      refused: authorizationFailed,
      secret: 'guessed-token',
    });
  });

  it('nkey: a seed file; the seed of another key is refused', async () => {
    const user = userNkey();
    writeFileSync(join(dir, 'user.nk'), `${user.seed}\n`);
    writeFileSync(join(dir, 'other.nk'), `${userNkey().seed}\n`);
    await provesLogin(`authorization { users: [ { nkey: ${user.publicKey} } ] }`, {
      good: (url) => ['--nats', url, '--nats-nkey', join(dir, 'user.nk')],
      client: (url) => ({ args: ['--nats', url], env: { NATS_NKEY: join(dir, 'user.nk') } }),
      bad: (url) => ['--nats', url, '--nats-nkey', join(dir, 'other.nk')],
      refused: authorizationFailed,
    });
  });

  it('creds (decentralized JWT auth): a creds file; a user of an unknown account is refused', async () => {
    const operator = operatorSetup();
    writeFileSync(join(dir, 'user.creds'), operator.creds);
    writeFileSync(join(dir, 'stranger.creds'), operator.strangerCreds);
    await provesLogin(operator.config, {
      good: (url) => ['--nats', url, '--nats-creds', join(dir, 'user.creds')],
      client: (url) => ({ args: ['--nats', url], env: { NATS_CREDS: join(dir, 'user.creds') } }),
      bad: (url) => ['--nats', url, '--nats-creds', join(dir, 'stranger.creds')],
      refused: authorizationFailed,
    });
  });

  it('TLS: the server certificate is checked against the CA given; another CA fails', async () => {
    await provesLogin(`tls { cert_file: "${tls.serverCert}", key_file: "${tls.serverKey}" }`, {
      good: (url) => ['--nats', url, '--nats-tls-ca', tls.ca],
      client: (url) => ({ args: ['--nats', url], env: { NATS_CA: tls.ca } }),
      bad: (url) => ['--nats', url, '--nats-tls-ca', tls.otherCa],
      refused: (url) => new RegExp(`^natstate: cannot reach NATS at ${url}: .*certificate`),
    });
  });

  it('mutual TLS: a client certificate signed by the CA; none is refused', async () => {
    await provesLogin(`tls { cert_file: "${tls.serverCert}", key_file: "${tls.serverKey}", ca_file: "${tls.ca}", verify: true }`, {
      good: (url) => ['--nats', url, '--nats-tls-ca', tls.ca, '--nats-tls-cert', tls.clientCert, '--nats-tls-key', tls.clientKey],
      client: (url) => ({ args: ['--nats', url], env: { NATS_CA: tls.ca, NATS_CERT: tls.clientCert, NATS_KEY: tls.clientKey } }),
      bad: (url) => ['--nats', url, '--nats-tls-ca', tls.ca],
      refused: (url) => new RegExp(`^natstate: cannot reach NATS at ${url}: `),
    });
  });
});
