import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from '../../lib/cli/args.js';
import { natsAuth, type NatsAuthValues } from '../../lib/cli/nats-auth.js';
import { credsFile, userNkey } from '../support/credentials.js';

const URL = 'nats://127.0.0.1:4222';

function mistake(values: NatsAuthValues, env: NodeJS.ProcessEnv = {}, servers = [URL]): string {
  try {
    natsAuth('node', servers, values, env);
  } catch (error) {
    expect(error).to.be.instanceOf(UsageError);
    return (error as Error).message;
  }
  throw new Error('expected a UsageError');
}

describe('CLI NATS credentials and TLS options (natsAuth)', () => {
  let dir: string;
  const file = (name: string, content: string) => {
    writeFileSync(join(dir, name), content);
    return join(dir, name);
  };
  before(() => (dir = mkdtempSync(join(tmpdir(), 'natstate-nats-auth-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('passes user and password, token and TLS files through to the connection options', () => {
    const ca = file('ca.pem', 'CA');
    expect(natsAuth('node', [URL], { 'nats-user': 'alice', 'nats-password': 'pw', 'nats-tls-ca': ca }, {}).auth).to.deep.equal({
      user: 'alice',
      pass: 'pw',
      tls: { caFile: ca, certFile: undefined, keyFile: undefined },
    });
    expect(natsAuth('node', [URL], {}, { NATS_TOKEN: 'tk', NATS_INBOX_PREFIX: '_INBOX_bank' }).auth).to.deep.equal({ token: 'tk', inboxPrefix: '_INBOX_bank' });
    expect(natsAuth('node', [URL], {}, {}).auth).to.deep.equal({});
  });

  it('takes user:password@ or token@ out of the URLs and logs in with them', () => {
    expect(natsAuth('node', ['nats://alice:p%40ss@127.0.0.1:4222', 'alice:p%40ss@127.0.0.1:4223'], {}, { NATS_TOKEN: 'ignored' })).to.deep.equal({
      servers: [URL, '127.0.0.1:4223'],
      auth: { user: 'alice', pass: 'p@ss' },
    });
    expect(natsAuth('node', ['nats://tk@127.0.0.1:4222'], {}, {})).to.deep.equal({ servers: [URL], auth: { token: 'tk' } });
  });

  it('options replace credentials from the environment, never mix with them', () => {
    expect(natsAuth('node', [URL], { 'nats-token': 'tk' }, { NATS_USER: 'u', NATS_PASSWORD: 'p' }).auth).to.deep.equal({ token: 'tk' });
  });

  it('nkey and creds files become authenticators', () => {
    const seed = file('user.nk', `${userNkey().seed}\n`);
    expect(natsAuth('node', [URL], { 'nats-nkey': seed }, {}).auth.authenticator).to.be.a('function');
    const creds = file('user.creds', credsFile('a.b.c', userNkey().seed));
    expect(natsAuth('node', [URL], {}, { NATS_CREDS: creds }).auth.authenticator).to.be.a('function');
  });

  it('bad combinations and unreadable or wrong files are usage errors that name the option', () => {
    const seed = file('user2.nk', userNkey().seed);
    expect(mistake({ 'nats-user': 'u', 'nats-password': 'p', 'nats-token': 't' })).to.match(/node: --nats-user and --nats-token are alternatives: log in one way/);
    expect(mistake({}, { NATS_NKEY: seed, NATS_CREDS: seed })).to.match(/NATS_NKEY and NATS_CREDS are alternatives/);
    expect(mistake({ 'nats-password': 'p' })).to.match(/--nats-password needs a user/);
    expect(mistake({}, { NATS_USER: 'u' })).to.match(/NATS_USER needs a password/);
    expect(mistake({ 'nats-token': 't' }, {}, ['nats://u:p@127.0.0.1:4222'])).to.match(/credentials are both in the --nats URL and in --nats-token/);
    expect(mistake({}, {}, ['nats://u:p@127.0.0.1:4222', 'nats://v:p@127.0.0.1:4223'])).to.match(/different credentials/);
    expect(mistake({ 'nats-nkey': join(dir, 'missing.nk') })).to.match(/--nats-nkey: cannot read ".*missing.nk" \(ENOENT\)/);
    expect(mistake({ 'nats-nkey': file('pub.nk', userNkey().publicKey) })).to.match(/holds no nkey user seed/);
    expect(mistake({ 'nats-creds': seed })).to.match(/is not a NATS creds file/);
    expect(mistake({ 'nats-tls-cert': seed })).to.match(/--nats-tls-cert needs its private key/);
    expect(mistake({}, { NATS_KEY: seed })).to.match(/NATS_KEY needs its certificate/);
    expect(mistake({ 'nats-tls-ca': join(dir, 'missing.pem') })).to.match(/--nats-tls-ca: cannot read/);
    expect(mistake({ 'nats-inbox-prefix': 'bad prefix.>' })).to.match(/is not a subject prefix/);
  });
});
