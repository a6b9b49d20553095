/**
 * How every command logs in to NATS and encrypts the connection: user and password,
 * token, nkey seed file or creds file, TLS CA, client certificate and key, and an inbox
 * prefix. Options win over the environment (`NATS_USER`, `NATS_PASSWORD`, `NATS_TOKEN`,
 * `NATS_NKEY`, `NATS_CREDS`, `NATS_CA`, `NATS_CERT`, `NATS_KEY`, `NATS_INBOX_PREFIX`:
 * the nats CLI's names). A user and password (`nats://USER:PASSWORD@host`) or a token
 * (`nats://TOKEN@host`) in the server URL count as options too. Every mistake is a
 * `UsageError` before anything connects; no credential is ever printed.
 */
import { readFileSync } from 'node:fs';
import { credsAuthenticator, nkeyAuthenticator, nkeys, type ConnectionOptions } from '@nats-io/nats-core';
import { redactServers } from '../nats/connect.js';
import { UsageError } from './args.js';

export const NATS_AUTH_OPTIONS = {
  'nats-user': { type: 'string' },
  'nats-password': { type: 'string' },
  'nats-token': { type: 'string' },
  'nats-nkey': { type: 'string' },
  'nats-creds': { type: 'string' },
  'nats-tls-ca': { type: 'string' },
  'nats-tls-cert': { type: 'string' },
  'nats-tls-key': { type: 'string' },
  'nats-inbox-prefix': { type: 'string' },
} as const;

type AuthOption = keyof typeof NATS_AUTH_OPTIONS;
export type NatsAuthValues = { readonly [K in AuthOption]?: string };

const ENV: Record<AuthOption, string> = {
  'nats-user': 'NATS_USER',
  'nats-password': 'NATS_PASSWORD',
  'nats-token': 'NATS_TOKEN',
  'nats-nkey': 'NATS_NKEY',
  'nats-creds': 'NATS_CREDS',
  'nats-tls-ca': 'NATS_CA',
  'nats-tls-cert': 'NATS_CERT',
  'nats-tls-key': 'NATS_KEY',
  'nats-inbox-prefix': 'NATS_INBOX_PREFIX',
};

const HELP: [string, string][] = [
  ['--nats-user USER', 'log in as USER (or NATS_USER; or nats://USER:PASSWORD@host)'],
  ['--nats-password PW', "USER's password (or NATS_PASSWORD)"],
  ['--nats-token TOKEN', 'log in with a token (or NATS_TOKEN; or nats://TOKEN@host)'],
  ['--nats-nkey FILE', 'log in with the nkey seed in FILE (or NATS_NKEY)'],
  ['--nats-creds FILE', 'log in with a creds file: user JWT and seed (or NATS_CREDS)'],
  ['--nats-tls-ca FILE', 'trust the server certificate signed by this CA (or NATS_CA)'],
  ['--nats-tls-cert FILE', 'client certificate for mutual TLS (or NATS_CERT)'],
  ['--nats-tls-key FILE', "the client certificate's private key (or NATS_KEY)"],
  ['--nats-inbox-prefix P', 'reply subjects under P instead of _INBOX (or NATS_INBOX_PREFIX)'],
];

/** The options' help lines, descriptions starting at `column` like the command's other options. */
export function natsAuthHelp(column: number): string {
  return HELP.map(([option, text]) => (option.length < column - 3 ? `  ${option.padEnd(column - 3)} ${text}` : `  ${option}\n${' '.repeat(column)}${text}`)).join('\n');
}

/** What the connection needs besides the servers. */
export type NatsAuth = Pick<ConnectionOptions, 'user' | 'pass' | 'token' | 'authenticator' | 'tls' | 'inboxPrefix'>;

interface Given {
  readonly value: string;
  /** `--nats-user`, `NATS_USER` or `the URL`, for messages. */
  readonly from: string;
}

/**
 * The servers without credentials in their URLs, and the connection options for the
 * credentials and TLS files given as options, in the URLs or in the environment.
 */
export function natsAuth(command: string, servers: readonly string[], values: NatsAuthValues, env: NodeJS.ProcessEnv = process.env): { servers: string[]; auth: NatsAuth } {
  const fromUrl = urlCredentials(command, servers);
  const option = (name: AuthOption): Given | undefined => (values[name] !== undefined ? { value: values[name], from: `--${name}` } : undefined);
  const environment = (name: AuthOption): Given | undefined => (env[ENV[name]] ? { value: env[ENV[name]]!, from: ENV[name] } : undefined);
  const LOGIN: AuthOption[] = ['nats-user', 'nats-password', 'nats-token', 'nats-nkey', 'nats-creds'];
  const optionsGiven = LOGIN.some((name) => values[name] !== undefined);
  if (optionsGiven && fromUrl.credentials) {
    throw new UsageError(`${command}: credentials are both in the --nats URL and in ${LOGIN.filter((n) => values[n] !== undefined).map((n) => `--${n}`).join(', ')}: give them once`);
  }
  // One source of credentials: options (or the URL), else the environment; never a mix.
  const login = (name: AuthOption): Given | undefined => {
    if (fromUrl.credentials) return fromUrl.credentials[name];
    return optionsGiven ? option(name) : environment(name);
  };
  const [user, password, token, nkey, creds] = LOGIN.map(login);
  const ways = [user, token, nkey, creds].filter((g): g is Given => g !== undefined);
  if (ways.length > 1) throw new UsageError(`${command}: ${ways.map((g) => g.from).join(' and ')} are alternatives: log in one way`);
  if (password && !user) throw new UsageError(`${command}: ${password.from} needs a user (--nats-user or NATS_USER)`);
  if (user && !password) throw new UsageError(`${command}: ${user.from} needs a password (--nats-password or NATS_PASSWORD)`);

  const auth: { -readonly [K in keyof NatsAuth]: NatsAuth[K] } = {};
  if (user && password) Object.assign(auth, { user: user.value, pass: password.value });
  if (token) auth.token = token.value;
  if (nkey) auth.authenticator = nkeyAuthenticator(nkeySeed(command, nkey));
  if (creds) auth.authenticator = credsAuthenticator(credsFile(command, creds));

  const tls = (name: AuthOption) => option(name) ?? environment(name);
  const [ca, cert, key] = (['nats-tls-ca', 'nats-tls-cert', 'nats-tls-key'] as const).map(tls);
  if (cert && !key) throw new UsageError(`${command}: ${cert.from} needs its private key (--nats-tls-key or NATS_KEY)`);
  if (key && !cert) throw new UsageError(`${command}: ${key.from} needs its certificate (--nats-tls-cert or NATS_CERT)`);
  if (ca || cert) {
    for (const file of [ca, cert, key]) if (file) readable(command, file);
    auth.tls = { caFile: ca?.value, certFile: cert?.value, keyFile: key?.value };
  }
  const inbox = tls('nats-inbox-prefix');
  if (inbox) {
    if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(inbox.value)) throw new UsageError(`${command}: ${inbox.from} "${inbox.value}" is not a subject prefix such as _INBOX_bank`);
    auth.inboxPrefix = inbox.value;
  }
  return { servers: fromUrl.servers, auth };
}

/** `USER:PASSWORD@` or `TOKEN@` in the server URLs, the same in all (the servers are returned without them). */
function urlCredentials(command: string, servers: readonly string[]): { servers: string[]; credentials?: Partial<Record<AuthOption, Given>> } {
  const from = 'the --nats URL';
  let credentials: Partial<Record<AuthOption, Given>> | undefined;
  let seen: string | undefined;
  for (const server of servers) {
    const url = new URL(server.includes('://') ? server : `nats://${server}`);
    if (url.username === '' && url.password === '') continue;
    if (seen !== undefined && seen !== `${url.username}:${url.password}`) throw new UsageError(`${command}: the --nats URLs carry different credentials: give one user or token`);
    seen = `${url.username}:${url.password}`;
    const username = decodeURIComponent(url.username);
    credentials =
      url.password === ''
        ? { 'nats-token': { value: username, from } }
        : { 'nats-user': { value: username, from }, 'nats-password': { value: decodeURIComponent(url.password), from } };
  }
  return { servers: redactServers(servers), credentials };
}

function readable(command: string, file: Given): Buffer {
  try {
    return readFileSync(file.value);
  } catch (error) {
    throw new UsageError(`${command}: ${file.from}: cannot read "${file.value}" (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
}

/** The seed in an nkey seed file (a user seed, `SU...`), checked so a wrong file fails here. */
function nkeySeed(command: string, file: Given): Uint8Array {
  const seed = readable(command, file).toString('utf8').trim();
  const bytes = new TextEncoder().encode(seed);
  try {
    if (!seed.startsWith('SU')) throw new Error('not a user seed');
    nkeys.fromSeed(bytes);
  } catch {
    throw new UsageError(`${command}: ${file.from}: "${file.value}" holds no nkey user seed (a line starting with SU)`);
  }
  return bytes;
}

/** A creds file's bytes, checked for its two sections so a wrong file fails here. */
function credsFile(command: string, file: Given): Uint8Array {
  const bytes = readable(command, file);
  const text = bytes.toString('utf8');
  if (!/-+BEGIN NATS USER JWT-+/.test(text) || !/-+BEGIN USER NKEY SEED-+/.test(text)) {
    throw new UsageError(`${command}: ${file.from}: "${file.value}" is not a NATS creds file (it needs a user JWT and a user nkey seed section)`);
  }
  return new Uint8Array(bytes);
}
