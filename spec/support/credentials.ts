/**
 * Throwaway credentials for the security specs, made in the spec itself: nkey pairs,
 * a decentralized-auth setup (operator, account and user JWTs, a creds file and the
 * nats-server configuration that trusts them) and a TLS CA with server and client
 * certificates (by `openssl`). Nothing here is fit for production.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nkeys } from '@nats-io/nats-core';

export interface NkeyPair {
  readonly seed: string;
  readonly publicKey: string;
}

const text = new TextDecoder();

function pair(kp: nkeys.KeyPair): NkeyPair & { kp: nkeys.KeyPair } {
  return { kp, seed: text.decode(kp.getSeed()), publicKey: kp.getPublicKey() };
}

export function userNkey(): NkeyPair {
  const { seed, publicKey } = pair(nkeys.createUser());
  return { seed, publicKey };
}

const base64url = (bytes: Uint8Array | string) => Buffer.from(bytes).toString('base64url');

/** A NATS JWT (v2) of `sub`, with `nats` claims, signed by `issuer`. */
function jwt(issuer: nkeys.KeyPair, sub: string, name: string, nats: Record<string, unknown>): string {
  const header = base64url(JSON.stringify({ typ: 'JWT', alg: 'ed25519-nkey' }));
  const claims: Record<string, unknown> = { jti: '', iat: Math.floor(Date.now() / 1000), iss: issuer.getPublicKey(), name, sub, nats: { ...nats, version: 2 } };
  claims.jti = createHash('sha256').update(JSON.stringify(claims)).digest('hex').toUpperCase().slice(0, 52);
  const payload = base64url(JSON.stringify(claims));
  const signature = base64url(issuer.sign(new TextEncoder().encode(`${header}.${payload}`)));
  return `${header}.${payload}.${signature}`;
}

const UNLIMITED = { subs: -1, data: -1, payload: -1 };

export function credsFile(userJwt: string, userSeed: string): string {
  return [
    '-----BEGIN NATS USER JWT-----',
    userJwt,
    '------END NATS USER JWT------',
    '',
    '-----BEGIN USER NKEY SEED-----',
    userSeed,
    '------END USER NKEY SEED------',
    '',
  ].join('\n');
}

export interface Operator {
  /** nats-server configuration: trust the operator, preload its account (JetStream on). */
  readonly config: string;
  /** A creds file of a user of that account. */
  readonly creds: string;
  /** A creds file of a user signed by an account the server does not know. */
  readonly strangerCreds: string;
}

/** An operator with a system account, one JetStream-enabled account and one user, as `nsc` would make them. */
export function operatorSetup(): Operator {
  const operator = nkeys.createOperator();
  const account = nkeys.createAccount();
  const system = nkeys.createAccount();
  const stranger = nkeys.createAccount();
  const user = nkeys.createUser();
  const operatorJwt = jwt(operator, operator.getPublicKey(), 'spec-operator', { type: 'operator' });
  const accountJwt = jwt(operator, account.getPublicKey(), 'spec-account', {
    type: 'account',
    limits: { ...UNLIMITED, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1, mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 },
  });
  const systemJwt = jwt(operator, system.getPublicKey(), 'SYS', { type: 'account', limits: { ...UNLIMITED, conn: -1 } });
  const userClaims = { type: 'user', pub: {}, sub: {}, ...UNLIMITED };
  const userSeed = text.decode(user.getSeed());
  return {
    config: [
      `operator: "${operatorJwt}"`,
      `system_account: ${system.getPublicKey()}`,
      'resolver: MEMORY',
      `resolver_preload: { ${account.getPublicKey()}: "${accountJwt}", ${system.getPublicKey()}: "${systemJwt}" }`,
    ].join('\n'),
    creds: credsFile(jwt(account, user.getPublicKey(), 'spec-user', userClaims), userSeed),
    strangerCreds: credsFile(jwt(stranger, user.getPublicKey(), 'spec-user', userClaims), userSeed),
  };
}

export interface TlsFiles {
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  /** A CA that signed nothing here: trusting it alone, the server's certificate fails. */
  readonly otherCa: string;
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, written into `dir`. */
export function tlsFiles(dir: string): TlsFiles {
  const file = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const ca = (name: string) => openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', file(`${name}.key`), '-out', file(`${name}.pem`));
  ca('spec-ca');
  ca('other-ca');
  const signed = (name: string, extensions: string) => {
    writeFileSync(file(`${name}.ext`), extensions);
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', file(`${name}.key`), '-out', file(`${name}.csr`));
    openssl('x509', '-req', '-in', file(`${name}.csr`), '-CA', file('spec-ca.pem'), '-CAkey', file('spec-ca.key'), '-CAcreateserial', '-days', '2', '-extfile', file(`${name}.ext`), '-out', file(`${name}.pem`));
  };
  signed('server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  signed('client', 'extendedKeyUsage=clientAuth\n');
  return {
    ca: file('spec-ca.pem'),
    serverCert: file('server.pem'),
    serverKey: file('server.key'),
    clientCert: file('client.pem'),
    clientKey: file('client.key'),
    otherCa: file('other-ca.pem'),
  };
}
