/**
 * A natstate node in its own OS process, driven by its parent over IPC (see
 * node-process.ts). Configuration comes from the environment.
 */
import { createNode } from '../../lib/index.js';
import { actors } from '../../examples/bank/actors.js';

const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is required`);
  return value;
};

/** Set by the parent (`armCrash`): SIGKILL this process once a migration reaches this status. */
let crashAt: string | undefined;

const node = await createNode({
  actors,
  namespace: env('NATSTATE_NAMESPACE'),
  nodeId: env('NATSTATE_NODE_ID'),
  nats: { servers: env('NATS_URL'), maxReconnectAttempts: -1, reconnectTimeWait: 100 },
  cluster: JSON.parse(env('NATSTATE_CLUSTER', '{}')),
  onError: () => {},
  inspect: (event) => {
    const snapshot = (event as { snapshot?: { value?: unknown } }).snapshot;
    // A moment later, so that this migration and the ones beside it are journaled mid-way.
    if (crashAt && event.type === '@xstate.snapshot' && snapshot?.value === crashAt) setTimeout(() => process.kill(process.pid, 'SIGKILL'), 30);
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
