/**
 * The one place natstate opens a NATS connection itself (`createNode({ nats: options })`
 * and the CLI): every nats.js connection option (user and password, token, nkey, creds
 * or any `authenticator`, `tls`, `inboxPrefix`...) goes through untouched, and a failure
 * becomes a typed error: `NatsAuthorizationError` when the server refused the
 * credentials, `NatsConnectionError` otherwise. Either names the servers without any
 * credentials, and neither is retried: a wrong password fails at once.
 *
 * One default differs from nats.js: `noAsyncTraces` is on unless the caller sets it.
 * With it off, nats.js builds an Error (a stack trace) for every request and every
 * JetStream publish up front, just in case it fails: about a fifth of a busy node's CPU
 * (B9 over NATS). Our errors are typed and name what failed, so the trace adds little.
 */
import { connect, type NodeConnectionOptions } from '@nats-io/transport-node';
import { errors, type NatsConnection } from '@nats-io/nats-core';
import { NatsAuthorizationError, NatsConnectionError } from '../errors.js';

/** `servers` as nats.js takes them, as a list, with any `user:password@` or `token@` left out. */
export function redactServers(servers: string | readonly string[] | undefined): string[] {
  const list: readonly string[] = servers === undefined ? ['127.0.0.1:4222'] : typeof servers === 'string' ? [servers] : servers;
  return list.map((server) => server.replace(/^([a-z]+:\/\/)?[^/@]*@/i, '$1'));
}

export async function connectToNats(options: NodeConnectionOptions): Promise<NatsConnection> {
  try {
    return await connect({ noAsyncTraces: true, ...options });
  } catch (error) {
    const servers = redactServers(options.servers);
    const reason = error instanceof Error ? error.message : String(error);
    if (error instanceof errors.AuthorizationError || error instanceof errors.UserAuthenticationExpiredError) {
      throw new NatsAuthorizationError(servers, reason, { cause: error });
    }
    throw new NatsConnectionError(servers, reason, { cause: error });
  }
}
