/**
 * What every JetStream-backed adapter checks before it touches the server: its options,
 * that the server has JetStream, and that it is recent enough. One place, so the event
 * store and the cluster bucket fail alike and with the same clear messages. (nats.js
 * keeps its server-version gates in one module too.)
 */
import type { NatsConnection } from '@nats-io/nats-core';
import { JetStreamApiCodes, JetStreamApiError, StorageType } from '@nats-io/jetstream';
import { ServerCapabilityError } from '../errors.js';
import { DEFAULT_PREFIX, Subjects } from '../subjects.js';

export interface JetStreamOptions {
  readonly namespace: string;
  readonly prefix?: string;
  readonly replicas?: number;
  readonly storage?: 'file' | 'memory';
  readonly timeoutMs?: number;
}

export interface ResolvedJetStreamOptions {
  readonly subjects: Subjects;
  readonly replicas: number;
  readonly storage: StorageType;
  readonly timeoutMs: number;
}

/** The oldest nats-server natstate runs on (what Debian ships). */
export const MIN_SERVER = [2, 9] as const;

export function atLeast(version: string, min: readonly [number, number]): boolean {
  const [major = 0, minor = 0] = version.split('.').map((n) => parseInt(n, 10));
  return major > min[0] || (major === min[0] && minor >= min[1]);
}

/**
 * Validates the options and the server behind `nc`. `purpose` completes the sentence
 * "natstate ..." in the error for a server without JetStream.
 */
export function resolveJetStreamOptions(nc: NatsConnection, options: JetStreamOptions, purpose: string): ResolvedJetStreamOptions {
  const subjects = new Subjects(options.namespace, options.prefix ?? DEFAULT_PREFIX);
  const replicas = options.replicas ?? 1;
  const timeoutMs = options.timeoutMs ?? 5000;
  const storage = (options.storage ?? 'file') === 'memory' ? StorageType.Memory : StorageType.File;
  if (!Number.isSafeInteger(replicas) || replicas < 1) throw new RangeError(`replicas must be a positive integer, got ${replicas}`);
  if (!(timeoutMs > 0)) throw new RangeError(`timeoutMs must be positive, got ${timeoutMs}`);
  const info = nc.info;
  if (info && !info.jetstream) {
    throw new ServerCapabilityError(
      `nats-server ${info.version} at ${info.host}:${info.port} does not have JetStream enabled; ` +
        `natstate ${purpose} (start the server with -js or a jetstream {} block)`,
    );
  }
  if (info && !atLeast(info.version, MIN_SERVER)) {
    throw new ServerCapabilityError(`nats-server ${info.version} is too old: natstate needs ${MIN_SERVER.join('.')} or later`);
  }
  return { subjects, replicas, storage, timeoutMs };
}

/** The server or account answered that JetStream is not enabled. */
export function isJetStreamNotEnabled(err: unknown): boolean {
  return (
    (err instanceof Error && err.name === 'JetStreamNotEnabled') ||
    (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.JetStreamNotEnabledForAccount)
  );
}
