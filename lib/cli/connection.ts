/**
 * How the operating commands reach a running cluster: a NATS connection whose failure is
 * a one-line `UsageError`, and a check that the namespace exists before anything is
 * read. Nothing here creates a stream or a bucket: a mistyped namespace is reported,
 * never brought into existence.
 */
import type { NodeConnectionOptions } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { JetStreamApiCodes, JetStreamApiError, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { Subjects } from '../subjects.js';
import { InvalidNameError, NatsAuthorizationError, NatsConnectionError } from '../errors.js';
import { connectToNats } from '../nats/connect.js';
import { UsageError } from './args.js';

export interface ConnectOptions extends Omit<NodeConnectionOptions, 'servers'> {
  /** Initial connection deadline. Default 5,000 ms. */
  readonly timeout?: number;
}

/**
 * Connects to NATS (`options` carry the credentials and TLS files of `natsAuth`); an
 * unreachable server, a failed TLS handshake or refused credentials are `UsageError`s.
 */
export async function connectNats(servers: string[], options: ConnectOptions = {}): Promise<NatsConnection> {
  try {
    return await connectToNats({ timeout: 5_000, ...options, servers });
  } catch (error) {
    if (error instanceof NatsAuthorizationError) {
      throw new UsageError(`${error.message} (check --nats-user/--nats-password, --nats-token, --nats-nkey or --nats-creds)`, { cause: error });
    }
    const reason = error instanceof NatsConnectionError && error.cause instanceof Error ? error.cause.message : error instanceof Error ? error.message : String(error);
    throw new UsageError(`cannot reach NATS at ${servers.join(',')}: ${reason}`, { cause: error });
  }
}

/** The namespace's names, or a `UsageError` for a namespace natstate cannot use. */
export function subjectsOf(namespace: string): Subjects {
  try {
    return new Subjects(namespace);
  } catch (error) {
    if (error instanceof InvalidNameError) throw new UsageError(error.message);
    throw error;
  }
}

export interface Namespace {
  readonly nc: NatsConnection;
  readonly jsm: JetStreamManager;
  readonly subjects: Subjects;
  readonly namespace: string;
  /** The cluster bucket (members, leader lease, shard map), opened without creating anything. */
  clusterBucket(): Promise<KV>;
}

/**
 * Checks that `namespace` exists on the server behind `nc`: some node has run in it, so
 * its cluster bucket and its event stream are there. Otherwise a `UsageError` that names
 * the namespace.
 */
export async function openNamespace(nc: NatsConnection, namespace: string): Promise<Namespace> {
  const subjects = subjectsOf(namespace);
  let jsm: JetStreamManager;
  try {
    jsm = await jetstreamManager(nc, { timeout: 5_000 });
  } catch (error) {
    throw new UsageError(`the NATS server at ${nc.getServer()} has no JetStream (natstate keeps its events and cluster state there): ${(error as Error).message}`);
  }
  const kvm = new Kvm(jsm.jetstream());
  const missing = (error: unknown) => error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound;
  const found = async (probe: () => Promise<unknown>) => {
    try {
      await probe();
      return true;
    } catch (error) {
      if (missing(error)) return false;
      throw new UsageError(`cannot read namespace "${namespace}" on ${nc.getServer()}: ${(error as Error).message}`);
    }
  };
  const known =
    (await found(async () => (await kvm.open(subjects.clusterBucket)).status())) && (await found(() => jsm.streams.info(subjects.eventStream)));
  if (!known) throw new UsageError(`unknown namespace "${namespace}": no natstate node has run in it on ${nc.getServer()}`);
  return {
    nc,
    jsm,
    subjects,
    namespace,
    clusterBucket: () => kvm.open(subjects.clusterBucket),
  };
}
