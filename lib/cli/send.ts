/**
 * `natstate send|ask`: one command to one actor of a running cluster, from the terminal.
 * The command is routed like any node routes it (`Router.sendMessage`: shard map, owner,
 * retries with one command id) but from a client that is no member: it never owns a
 * shard, so it joins nothing and changes no placement.
 */
import type { AnyEventObject } from 'xstate';
import { v4 as uuid } from 'uuid';
import { NatsKV } from '../cluster/kv/nats.js';
import { Router, type RoutedReply, type RouterOptions } from '../cluster/router.js';
import { ShardMapStore } from '../cluster/shard-map.js';
import { NatsTransport } from '../cluster/transport/nats.js';
import { InvalidActorIdError, InvalidNameError, NotOwnerError, RemoteError } from '../errors.js';
import { validateActorId, validateActorType } from '../subjects.js';
import { UsageError, eventArgument, integer, natsOption, parse, required } from './args.js';
import { connectNats, openNamespace } from './connection.js';
import { NATS_AUTH_OPTIONS, natsAuth, natsAuthHelp } from './nats-auth.js';

const OPTIONS_HELP = `Options:
  --nats URL           NATS server(s) (default: $NATS_URL)
${natsAuthHelp(23)}
  --namespace NS       the cluster's namespace
  --command-id ID      idempotency key: sending again with the same id applies it once
  --timeout-ms MS      give up routing after this long (default 10000)
  --json               print the reply as JSON`;

export const usage = {
  send: `Usage: natstate send --nats URL --namespace NS TYPE ID 'EVENT_JSON'

Sends one command (an XState event) to the actor TYPE/ID on whichever node owns it, and
prints the reply once the event is stored: accepted or not, and the actor's version.

${OPTIONS_HELP}

Example:
  natstate send --nats nats://127.0.0.1:4222 --namespace bank account acc-1 '{"type":"DEPOSIT","amount":10}'`,
  ask: `Usage: natstate ask --nats URL --namespace NS TYPE ID ['EVENT_JSON']

Like send, and also prints the actor's state (value and context) right after the
command. Without an event it only reads the state.

${OPTIONS_HELP}

Examples:
  natstate ask --nats nats://127.0.0.1:4222 --namespace bank account acc-1 '{"type":"WITHDRAW","amount":3}'
  natstate ask --nats nats://127.0.0.1:4222 --namespace bank account acc-1`,
};

const OPTIONS = {
  nats: { type: 'string' },
  ...NATS_AUTH_OPTIONS,
  namespace: { type: 'string' },
  'command-id': { type: 'string' },
  'timeout-ms': { type: 'string' },
  json: { type: 'boolean' },
} as const;

/** Stands in for the actor host of a node that owns nothing: routing never hands it a command. */
const NO_HOST: RouterOptions['host'] = {
  validate: () => undefined as never,
  dispatch: () => Promise.reject(new Error('a natstate client owns no shard')),
};

/** Owners' answers that mean the user named something that does not exist or does not fit. */
const USER_MISTAKES = new Set(['UNKNOWN_ACTOR_TYPE', 'INVALID_EVENT', 'INVALID_ACTOR_ID', 'INVALID_NAME', 'PAYLOAD_TOO_LARGE']);

export async function run(command: 'send' | 'ask', argv: readonly string[]): Promise<number> {
  const { values, positionals } = parse(command, argv, OPTIONS, {
    min: command === 'ask' ? 2 : 3,
    max: 3,
    names: command === 'ask' ? 'TYPE ID [EVENT_JSON]' : "TYPE ID 'EVENT_JSON'",
  });
  if (values.help) {
    console.log(usage[command]);
    return 0;
  }
  const { servers, auth } = natsAuth(command, natsOption(command, values.nats), values);
  const namespace = required(command, 'namespace', values.namespace);
  const timeoutMs = integer(command, 'timeout-ms', values['timeout-ms'], 10_000);
  const [type, id, eventText] = positionals;
  try {
    validateActorType(type);
    validateActorId(id);
  } catch (error) {
    if (error instanceof InvalidNameError || error instanceof InvalidActorIdError) throw new UsageError(`${command}: ${error.message}`);
    throw error;
  }
  const event: AnyEventObject | undefined = eventText === undefined ? undefined : eventArgument(command, eventText);
  const commandId = values['command-id'];

  const nc = await connectNats(servers, auth);
  const ns = await openNamespace(nc, namespace).catch(async (error: unknown) => {
    await nc.close();
    throw error;
  });
  const kv = await NatsKV.create(nc, { namespace, onError: () => {} });
  const shardMap = new ShardMapStore({ kv, subjects: ns.subjects, onError: () => {} });
  const transport = new NatsTransport(nc, namespace, { onError: () => {} });
  try {
    await shardMap.start();
    if (!shardMap.current) throw new Error(`namespace "${namespace}" has no shard map yet: start a node first (natstate node)`);
    const router = new Router({
      nodeId: `natstate-cli-${uuid()}`,
      host: NO_HOST,
      shardMap,
      transport,
      deadlineMs: timeoutMs,
      requestTimeoutMs: Math.min(5_000, timeoutMs),
      maxPayload: nc.info?.max_payload,
    });
    let reply: RoutedReply;
    try {
      reply = await router.sendMessage(type, id, event, commandId, command === 'ask');
    } catch (error) {
      throw explain(error, namespace, timeoutMs);
    }
    console.log(values.json ? JSON.stringify(reply) : formatReply(type, id, reply, event === undefined));
    return 0;
  } finally {
    shardMap.close();
    await transport.close();
    await kv.close();
    await nc.close();
  }
}

function explain(error: unknown, namespace: string, timeoutMs: number): unknown {
  if (error instanceof RemoteError && USER_MISTAKES.has(error.remoteCode)) {
    // The owner's own message, without the "node X failed the command with Y:" wrapping.
    const original = error.message.slice(error.message.indexOf(`${error.remoteName}: `) + error.remoteName.length + 2);
    return new UsageError(`${original} (namespace ${namespace})`);
  }
  if (error instanceof NotOwnerError) {
    return new Error(`no node of namespace "${namespace}" took the command within ${timeoutMs} ms: is any node running? (${error.message})`);
  }
  return error;
}

function formatReply(type: string, id: string, reply: RoutedReply, query: boolean): string {
  const lines: string[] = [];
  if (!query) {
    const outcome = reply.duplicate
      ? 'already applied (same command id): nothing new stored'
      : reply.accepted
        ? 'accepted'
        : 'not accepted (the machine took no transition): nothing stored';
    lines.push(`${type}/${id}: ${outcome}; version ${reply.version}; command id ${reply.commandId}`);
  } else {
    lines.push(`${type}/${id}: version ${reply.version}`);
  }
  if (reply.state) {
    lines.push(`state: ${JSON.stringify(reply.state.value)} (${reply.state.status})`);
    lines.push(`context: ${JSON.stringify(reply.state.context)}`);
  }
  return lines.join('\n');
}
