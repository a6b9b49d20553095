/**
 * `npm run chaos`: a natstate cluster under load while a nemesis injects faults, then an
 * independent check that nothing acknowledged was lost, nothing was applied twice and no
 * history diverged (docs/RELIABILITY.md). Exit 0 only if every invariant count is 0.
 *
 *   npm run chaos -- --duration 60 --seed 7 [--nodes 3] [--rate 50] [--cluster] [--json]
 */
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { NatstateError } from '../lib/errors.js';
import { UsageError, integer, parse } from '../lib/cli/args.js';
import { check, fewestReplicas, readHistory, type Findings, type Invariants, type LiveAccount } from './checker.js';
import { ACTOR_TYPE, Client, Load } from './load.js';
import { CLUSTER_FAULTS, FaultSchedule, Nemesis, SINGLE_SERVER_FAULTS, type FaultKind } from './nemesis.js';
import { ChaosSystem, type Timing } from './system.js';

const usage = `Usage: npm run chaos -- [options]

Runs a natstate cluster (nats-server + N natstate node processes hosting bank accounts)
under a steady load of deposits while a seeded nemesis kills, pauses and replaces nodes
and restarts NATS; then checks the JetStream streams directly. Exit 0 only if no
acknowledged deposit was lost, none was applied twice, no history has a gap or diverges,
every balance matches and every command got an answer.

Options:
  --duration SECONDS   how long faults are injected (default 60; the run goes on until
                       every fault kind was injected once)
  --seed N             seed of the fault schedule and the load (default: random, printed)
  --nodes N            natstate node processes (default 3)
  --rate N             deposits per second (default 50)
  --accounts N         accounts the deposits go to (default 40)
  --cluster            3 routed nats-servers, streams and buckets at 3 replicas; the
                       nemesis also kills one nats-server at a time
  --keep-logs          keep the node logs and the fault log even when the run passes
  --json               the last line of stdout is one JSON object with the figures`;

const OPTIONS = {
  duration: { type: 'string' },
  seed: { type: 'string' },
  nodes: { type: 'string' },
  rate: { type: 'string' },
  accounts: { type: 'string' },
  cluster: { type: 'boolean' },
  'keep-logs': { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

const TIMING: Timing = { heartbeatMs: 500, failureTimeoutMs: 3_000 };
const ROUTE_DEADLINE_MS = 15_000;
const GRACE_MS = 10_000;
const RETRY_BUDGET_MS = 45_000;
const LIVE_BUDGET_MS = 60_000;
/** Load goes on this long after the last fault, so a recovering cluster (a stale owner back from a pause) is under load. */
const TAIL_MS = 5_000;

const started = Date.now();
const progress = (line: string) => process.stderr.write(`[chaos ${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface ChaosResult extends Invariants {
  readonly seed: number;
  readonly faults: Partial<Record<FaultKind, number>>;
  readonly sent: number;
  readonly acknowledged: number;
  readonly errored: number;
  /** Typed errors the load got and answered by sending again with the same command id. */
  readonly retried: number;
  /** Events the checker read from the accounts' streams. */
  readonly stored: number;
  /** Fewest JetStream replicas among the event stream and the buckets. */
  readonly replicas: number;
  /** Nodes that did not come back up (or finish leaving) after a fault. */
  readonly unrecovered: number;
}

/** The state of every account as the live cluster answers it (retrying typed errors). */
async function askLive(client: Client, accounts: readonly string[]): Promise<Map<string, LiveAccount>> {
  const live = new Map<string, LiveAccount>();
  await Promise.all(
    accounts.map(async (account) => {
      const deadline = Date.now() + LIVE_BUDGET_MS;
      for (;;) {
        try {
          const reply = await client.router.sendMessage(ACTOR_TYPE, account, undefined, undefined, true);
          const context = reply.state?.context as { balance?: unknown } | undefined;
          live.set(account, typeof context?.balance === 'number' ? { balance: context.balance, version: reply.version } : { error: `no balance in ${JSON.stringify(reply.state)}` });
          return;
        } catch (error) {
          if (!(error instanceof NatstateError) || Date.now() > deadline) {
            live.set(account, { error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
            return;
          }
          await sleep(500);
        }
      }
    }),
  );
  return live;
}

function table(result: ChaosResult, findings: Findings, cluster: boolean, nodes: number): string {
  const rows: [string, string | number][] = [
    ['seed', result.seed],
    ['setup', `${nodes} natstate nodes, ${cluster ? '3 routed nats-servers' : '1 nats-server'}, streams at ${result.replicas} replica(s)`],
    ...Object.entries(result.faults).map(([kind, n]) => [`faults: ${kind}`, n] as [string, number]),
    ['commands sent', result.sent],
    ['acknowledged', result.acknowledged],
    ['errored (typed error, retries spent)', result.errored],
    ['typed errors retried (same command id)', result.retried],
    ['applied without a reply', findings.appliedWithoutReply],
    ['events stored', result.stored],
    ['lost', result.lost],
    ['duplicated', result.duplicated],
    ['gaps', result.gaps],
    ['divergent', result.divergent],
    ['balance mismatches', result.balanceMismatches],
    ['unanswered', result.unanswered],
    ['nodes not recovered', result.unrecovered],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parse('chaos', argv, OPTIONS, { min: 0, max: 0, names: '' });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const durationS = integer('chaos', 'duration', values.duration, 60, 1);
  const seed = integer('chaos', 'seed', values.seed, Math.floor(Math.random() * 1_000_000), 0);
  const nodeCount = integer('chaos', 'nodes', values.nodes, 3, 2, 9);
  const rate = integer('chaos', 'rate', values.rate, 50, 1, 2_000);
  const accountCount = integer('chaos', 'accounts', values.accounts, 40, 1);
  const cluster = values.cluster === true;
  const kinds = cluster ? CLUSTER_FAULTS : SINGLE_SERVER_FAULTS;

  progress(`seed ${seed}: starting ${cluster ? 'a 3-server NATS cluster' : 'nats-server'} and ${nodeCount} natstate nodes`);
  const system = await ChaosSystem.start({ cluster, nodes: nodeCount, namespace: `chaos-${seed}`, timing: TIMING });
  const stopOnSignal = () => {
    // Stops every process and deletes the NATS store; the exit handler kills what is left if this hangs.
    setTimeout(() => process.exit(130), 10_000).unref();
    void system.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', stopOnSignal);
  process.once('SIGTERM', stopOnSignal);
  const nc = await connect({ servers: system.nats.urls, maxReconnectAttempts: -1, reconnectTimeWait: 250, name: 'natstate chaos' });
  let passed = false;
  const nemesis = new Nemesis(system, new FaultSchedule(seed, kinds, TIMING.failureTimeoutMs), kinds, progress);
  try {
    const client = await Client.open(nc, system.namespace, ROUTE_DEADLINE_MS);
    const load = new Load(client, {
      nc,
      namespace: system.namespace,
      rate,
      accounts: accountCount,
      seed,
      routeDeadlineMs: ROUTE_DEADLINE_MS,
      retryBudgetMs: RETRY_BUDGET_MS,
      graceMs: GRACE_MS,
    });
    progress(`load: ${rate} deposits/s over ${accountCount} accounts; nemesis: ${kinds.join(', ')} for ${durationS} s`);
    load.start();
    await nemesis.run(durationS * 1_000);
    progress(`nemesis done; load goes on for ${TAIL_MS / 1000} s`);
    await sleep(TAIL_MS);
    progress('load stopped; waiting for every command to get its outcome');
    await load.stop();

    const commands = [...load.commands.values()];
    const accounts = [...new Set(commands.map((c) => c.account))];
    progress(`asking the live cluster for ${accounts.length} accounts`);
    const live = await askLive(client, accounts);
    progress('reading the event stream from JetStream');
    const history = await readHistory(nc, system.namespace, ACTOR_TYPE);
    const findings = check(commands, history, live);
    const replicas = await fewestReplicas(nc, system.namespace);
    await client.close();

    const count = (outcome: string) => commands.filter((c) => c.outcome === outcome).length;
    const result: ChaosResult = {
      seed,
      faults: Object.fromEntries(nemesis.injected),
      sent: commands.length,
      acknowledged: count('acknowledged'),
      errored: count('errored'),
      retried: load.typedErrors,
      stored: findings.storedEvents,
      replicas,
      lost: findings.lost,
      duplicated: findings.duplicated,
      gaps: findings.gaps,
      divergent: findings.divergent,
      balanceMismatches: findings.balanceMismatches,
      unanswered: findings.unanswered,
      unrecovered: nemesis.unrecovered,
    };
    const setupHolds = replicas === system.replicas && result.acknowledged > 0;
    passed = setupHolds && [result.lost, result.duplicated, result.gaps, result.divergent, result.balanceMismatches, result.unanswered, result.unrecovered].every((n) => n === 0);
    console.log(table(result, findings, cluster, nodeCount));
    for (const line of findings.details) console.log(`  ${line}`);
    if (!setupHolds) console.log(`  setup: ${result.acknowledged} command(s) acknowledged, streams at ${replicas} replica(s) (expected ${system.replicas}): the run tested nothing it claims`);
    console.log(passed ? 'PASS: every invariant holds' : `FAIL: see the lines above; node logs in ${system.logDir}`);
    writeFileSync(join(system.logDir, 'faults.log'), nemesis.history.join('\n') + '\n');
    if (values.json) console.log(JSON.stringify(result));
  } finally {
    if (!passed) writeFileSync(join(system.logDir, 'nats.log'), system.nats.log);
    await nc.close().catch(() => undefined);
    await system.close();
    if (passed && !values['keep-logs']) rmSync(system.logDir, { recursive: true, force: true });
    else progress(`logs kept in ${system.logDir}`);
  }
  return passed ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`chaos: ${error instanceof Error ? (error instanceof UsageError ? error.message : (error.stack ?? error.message)) : String(error)}\n`);
    process.exit(error instanceof UsageError ? 2 : 1);
  },
);
