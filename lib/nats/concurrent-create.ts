/**
 * Several nodes starting at once all create the namespace's stream and bucket; JetStream
 * takes an identical create as a no-op. nats-server 2.9 can still refuse the second of
 * two creates that race each other with "subjects overlap with an existing stream"
 * (err_code 10065): the first one holds the subjects but is not registered under its name
 * yet. Trying again a moment later finds the stream that won.
 */
import { JetStreamApiError, type JetStreamClient } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { ResolvedJetStreamOptions } from './jetstream-options.js';

/** JetStream's err_code for a stream whose subjects another stream already has. */
const SUBJECTS_OVERLAP = 10065;
const ATTEMPTS = 5;

export function isCreateRace(error: unknown): boolean {
  return error instanceof JetStreamApiError && error.code === SUBJECTS_OVERLAP;
}

/** Runs `create`, again after 25, 50, 100, 200 ms while it loses such a race. */
export async function createRacingOthers<T>(create: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await create();
    } catch (error) {
      if (attempt >= ATTEMPTS || !isCreateRace(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 25 * 2 ** (attempt - 1)));
    }
  }
}

/**
 * Creates a KV bucket keeping one value per key, or binds to the one another node
 * created: every bucket natstate opens goes through here, so none can lose the race.
 */
export function createBucket(js: JetStreamClient, name: string, { replicas, storage, timeoutMs }: Pick<ResolvedJetStreamOptions, 'replicas' | 'storage' | 'timeoutMs'>): Promise<KV> {
  return createRacingOthers(() => new Kvm(js).create(name, { history: 1, replicas, storage, timeout: timeoutMs }));
}
