import type { NatsConnection } from '@nats-io/nats-core';
import { jetstreamManager } from '@nats-io/jetstream';
import { Subjects } from '../../lib/subjects.js';

/**
 * The subjects of one actor type in a namespace's event stream and their message counts,
 * read with raw JetStream (natstate's own journals, of other types, left out).
 */
export async function storedSubjects(nc: NatsConnection, namespace: string, type: string): Promise<Record<string, number>> {
  const subjects = new Subjects(namespace);
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(subjects.eventStream, { subjects_filter: subjects.typeEvents(type) });
  return info.state.subjects ?? {};
}
