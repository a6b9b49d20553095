/**
 * `natstate history`: one actor's stored events (version, time, command id, event), read
 * from the namespace's event stream with `JetStreamEventStore`.
 */
import { JetStreamEventStore } from '../eventstore/jetstream.js';
import type { RecordedEvent } from '../eventstore/eventstore.js';
import { InvalidActorIdError, InvalidNameError } from '../errors.js';
import { validateActorId, validateActorType } from '../subjects.js';
import { UsageError, integer, natsOption, parse, required } from './args.js';
import { connectNats, openNamespace, type Namespace } from './connection.js';
import { NATS_AUTH_OPTIONS, natsAuth, natsAuthHelp } from './nats-auth.js';
import { table, timestamp } from './format.js';

export const usage = `Usage: natstate history --nats URL --namespace NS TYPE ID [--json]

The stored events of the actor TYPE/ID: version, time, command id and the event.

Options:
  --nats URL           NATS server(s) (default: $NATS_URL)
${natsAuthHelp(23)}
  --namespace NS       the cluster's namespace
  --from-version N     only events after version N (default 0: all)
  --json               print one JSON object: { type, id, version, events: [...] }

Example:
  natstate history --nats nats://127.0.0.1:4222 --namespace bank account acc-1`;

const OPTIONS = {
  nats: { type: 'string' },
  ...NATS_AUTH_OPTIONS,
  namespace: { type: 'string' },
  'from-version': { type: 'string' },
  json: { type: 'boolean' },
} as const;

export async function run(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parse('history', argv, OPTIONS, { min: 2, max: 2, names: 'TYPE ID' });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const { servers, auth } = natsAuth('history', natsOption('history', values.nats), values);
  const namespace = required('history', 'namespace', values.namespace);
  const fromVersion = integer('history', 'from-version', values['from-version'], 0, 0);
  const [type, id] = positionals;
  try {
    validateActorType(type);
    validateActorId(id);
  } catch (error) {
    if (error instanceof InvalidNameError || error instanceof InvalidActorIdError) throw new UsageError(`history: ${error.message}`);
    throw error;
  }
  const nc = await connectNats(servers, auth);
  try {
    const ns = await openNamespace(nc, namespace);
    const store = await JetStreamEventStore.create(nc, { namespace });
    try {
      const events: RecordedEvent[] = [];
      for await (const e of store.read({ type, id }, { fromVersion })) events.push(e);
      if (events.length === 0 && fromVersion === 0 && !(await typeHasEvents(ns, type))) {
        throw new UsageError(`unknown actor type "${type}" in namespace ${namespace}: no actor of that type has stored an event`);
      }
      const version = events.at(-1)?.version ?? (await store.version({ type, id }));
      if (values.json) {
        console.log(
          JSON.stringify({
            type,
            id,
            version,
            events: events.map((e) => ({ version: e.version, time: new Date(e.time).toISOString(), commandId: e.commandId, sequence: e.sequence, event: e.event })),
          }),
        );
      } else {
        console.log(`${type}/${id}: version ${version}, ${events.length} event(s)${fromVersion > 0 ? ` after version ${fromVersion}` : ''}`);
        if (events.length > 0) {
          console.log('');
          console.log(table(['version', 'time', 'command id', 'event'], events.map((e) => [String(e.version), timestamp(e.time), e.commandId, JSON.stringify(e.event)]), [0]));
        }
      }
      return 0;
    } finally {
      await store.close();
    }
  } finally {
    await nc.close();
  }
}

async function typeHasEvents(ns: Namespace, type: string): Promise<boolean> {
  return (await ns.jsm.streams.getMessage(ns.subjects.eventStream, { last_by_subj: ns.subjects.typeEvents(type) })) !== null;
}
