/**
 * A natstate node in its own OS process, driven by its parent over IPC (see
 * node-process.ts). Configuration comes from the environment.
 */
import { connect } from '@nats-io/transport-node';
import { createNode, JetStreamEventStore } from '../../lib/index.js';
import { Subjects } from '../../lib/subjects.js';
import { journaledMigrations } from './migration-journal.js';
import { actors } from '../../examples/bank/actors.js';

const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is required`);
  return value;
};

/** Set by the parent (`armCrash`): SIGKILL this process once a migration reaches this status. */
let crashAt: string | undefined;

/**
 * Once set, requests this node sends to other nodes are lost on the way, as in a network
 * partition: a migration that reached Transferring can then neither finish nor fail before
 * its transfer timeout, so the crash below always lands mid-migration. Without it a fast
 * hand-over could finish (and journal) every migration before the crash, and a slow
 * journal read could miss the short moments a migration stands unfinished in the store.
 */
let partitioned = false;

const nc = await connect({ servers: env('NATS_URL'), maxReconnectAttempts: -1, reconnectTimeWait: 100 });
const ownSubject = new Subjects(env('NATSTATE_NAMESPACE')).node(env('NATSTATE_NODE_ID'));
const nodeSubjects = ownSubject.slice(0, ownSubject.lastIndexOf('.') + 1);
const publish = nc.publish.bind(nc);
nc.publish = (subject, payload, options) => {
  if (partitioned && subject.startsWith(nodeSubjects) && subject !== ownSubject) return;
  publish(subject, payload, options);
};

/** SIGKILL as soon as the store holds a migration of this node that is not final. */
async function crashOnceJournaledMidWay(): Promise<void> {
  // The partition drops only requests to node subjects: the store's reads pass.
  const store = await JetStreamEventStore.create(nc, { namespace: env('NATSTATE_NAMESPACE') });
  for (;;) {
    if ((await journaledMigrations(store, env('NATSTATE_NODE_ID'))).unfinished.length > 0) process.kill(process.pid, 'SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const node = await createNode({
  actors,
  namespace: env('NATSTATE_NAMESPACE'),
  nodeId: env('NATSTATE_NODE_ID'),
  nats: nc,
  cluster: JSON.parse(env('NATSTATE_CLUSTER', '{}')),
  onError: () => {},
  inspect: (event) => {
    const snapshot = (event as { snapshot?: { value?: unknown } }).snapshot;
    if (crashAt && event.type === '@xstate.snapshot' && snapshot?.value === crashAt) {
      crashAt = undefined;
      partitioned = true;
      void crashOnceJournaledMidWay();
    }
  },
});

type Request = { id: number; op: 'send' | 'ask' | 'state' | 'cluster' | 'leave' | 'arm-crash'; args: unknown[] };

process.on('message', async (request: Request) => {
  try {
    let result: unknown;
    const [type, id, event, commandId] = request.args as [string, string, never, string | undefined];
    if (request.op === 'send') result = await node.send(type as 'account', id, event, { commandId });
    else if (request.op === 'ask') result = await node.ask(type as 'account', id, event, { commandId });
    else if (request.op === 'state') result = await node.state(type as 'account', id);
    else if (request.op === 'cluster') result = node.cluster();
    else if (request.op === 'leave') result = await node.leave();
    else if (request.op === 'arm-crash') crashAt = String(request.args[0]);
    process.send!({ id: request.id, result });
  } catch (error) {
    const e = error as Error & { code?: string };
    process.send!({ id: request.id, error: { name: e.name, code: e.code, message: e.message } });
  }
});

process.on('SIGTERM', async () => {
  await node.leave();
  process.exit(0);
});

process.send!({ ready: true });
