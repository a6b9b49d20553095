#!/usr/bin/env node
/**
 * The `natstate` command: picks the subcommand and runs it. Exit codes: 0 done, 1 failed
 * (a demo that did not verify, a cluster that did not answer), 2 a user mistake (bad
 * arguments, NATS unreachable, unknown namespace or actor type), always with one line
 * `natstate: <what is wrong>` on stderr and no stack trace.
 */
import { readFileSync } from 'node:fs';
import { NatstateError } from '../errors.js';
import { UsageError } from './args.js';

const usage = `natstate — event-sourced XState actors on NATS JetStream, sharded over a cluster

Usage: natstate <command> [options]

Commands:
  demo       a 3-node cluster in this process moves 1,000 accounts under load; nothing is lost
  node       run one cluster node on NATS, hosting the actor types of a module
  status     members, leader, shard map and migrations of a running cluster
  send       send a command (an XState event) to an actor
  ask        send a command and print the actor's state right after it
  history    the stored events of one actor

Examples:
  natstate demo                                    # embedded in memory, no infrastructure
  natstate demo --nats nats://127.0.0.1:4222 --json
  natstate node --nats nats://127.0.0.1:4222 --namespace bank --actors dist/examples/bank/actors.js
  natstate status --nats nats://127.0.0.1:4222 --namespace bank
  natstate send --nats nats://127.0.0.1:4222 --namespace bank account acc-1 '{"type":"DEPOSIT","amount":10}'
  natstate ask --nats nats://127.0.0.1:4222 --namespace bank account acc-1 '{"type":"WITHDRAW","amount":3}'
  natstate history --nats nats://127.0.0.1:4222 --namespace bank account acc-1

natstate <command> --help tells a command's options. --nats defaults to $NATS_URL.
Exit codes: 0 ok, 1 failed, 2 usage error (bad arguments, NATS unreachable, unknown namespace or type).`;

const COMMANDS: Record<string, (argv: readonly string[]) => Promise<number>> = {
  demo: async (argv) => (await import('./demo.js')).run(argv),
  node: async (argv) => (await import('./node-command.js')).run(argv),
  status: async (argv) => (await import('./status.js')).run(argv),
  send: async (argv) => (await import('./send.js')).run('send', argv),
  ask: async (argv) => (await import('./send.js')).run('ask', argv),
  history: async (argv) => (await import('./history.js')).run(argv),
};

function version(): string {
  for (const path of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'natstate') return pkg.version ?? 'unknown';
    } catch {
      // not at this depth: from source (lib/cli) or built (dist/lib/cli)
    }
  }
  return 'unknown';
}

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    const topic = command === 'help' ? rest[0] : undefined;
    if (topic && COMMANDS[topic]) return COMMANDS[topic](['--help']);
    console.log(usage);
    return command === undefined ? 2 : 0;
  }
  if (command === '--version' || command === '-v') {
    console.log(version());
    return 0;
  }
  const run = COMMANDS[command];
  if (!run) throw new UsageError(`unknown command "${command}"; commands: ${Object.keys(COMMANDS).join(', ')} (natstate --help)`);
  return run(rest);
}

/** One line for the user; the stack only when asked for (NATSTATE_DEBUG=1) or for a bug. */
function report(error: unknown): number {
  const debug = process.env.NATSTATE_DEBUG === '1';
  if (error instanceof UsageError) {
    process.stderr.write(`natstate: ${error.message}\n`);
    if (debug && error.cause) console.error(error.cause);
    return error.exitCode;
  }
  if (error instanceof NatstateError || (error instanceof Error && error.constructor === Error)) {
    process.stderr.write(`natstate: ${error.message}\n`);
    if (debug) console.error(error);
    return 1;
  }
  process.stderr.write(`natstate: unexpected error: ${error instanceof Error ? error.message : String(error)} (NATSTATE_DEBUG=1 shows the stack)\n`);
  if (debug) console.error(error);
  return 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => process.exit(report(error)),
);
