/**
 * Argument parsing for the `natstate` command, on `node:util` `parseArgs`. Every mistake
 * in what the user typed becomes a `UsageError`: one line on stderr, exit code 2, never
 * a stack trace.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Something the user typed (or pointed at) is wrong: the message says what. Exit code 2. */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UsageError';
  }
}

export type OptionSpecs = NonNullable<ParseArgsConfig['options']>;

export interface Parsed<O extends OptionSpecs> {
  readonly values: { readonly [K in keyof O]?: O[K] extends { type: 'boolean' } ? boolean : string } & { readonly help?: boolean };
  readonly positionals: string[];
}

/** `help` is added to every command's options. */
export const HELP = { help: { type: 'boolean', short: 'h' } } as const;

/**
 * Parses `argv` for `command`. Unknown options, missing option values and positionals
 * outside `[min, max]` are `UsageError`s that name the command.
 */
export function parse<O extends OptionSpecs>(command: string, argv: readonly string[], options: O, positionals: { min: number; max: number; names: string }): Parsed<O> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: { ...options, ...HELP }, allowPositionals: positionals.max > 0, strict: true });
  } catch (error) {
    throw new UsageError(`${command}: ${parseErrorMessage(error)} (see natstate ${command} --help)`);
  }
  const values = parsed.values as Parsed<O>['values'];
  if (values.help) return { values, positionals: parsed.positionals };
  const count = parsed.positionals.length;
  if (count < positionals.min) throw new UsageError(`${command}: expected ${positionals.names} (see natstate ${command} --help)`);
  if (count > positionals.max) {
    throw new UsageError(`${command}: unexpected argument "${parsed.positionals[positionals.max]}" (see natstate ${command} --help)`);
  }
  return { values, positionals: parsed.positionals };
}

/** parseArgs' messages, shortened to what the user needs. */
function parseErrorMessage(error: unknown): string {
  const e = error as Error & { code?: string };
  const option = /'(-[^' ]+)/.exec(e.message)?.[1];
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${option ?? e.message}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return option ? `option ${option} needs a value` : e.message;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${/'([^']+)'/.exec(e.message)?.[1] ?? ''}`.trim();
    default:
      return e.message;
  }
}

export function required(command: string, name: string, value: string | undefined): string {
  if (value === undefined || value === '') throw new UsageError(`${command}: --${name} is required (see natstate ${command} --help)`);
  return value;
}

/** A whole number option within `[min, max]`, or `fallback` when absent. */
export function integer(command: string, name: string, value: string | undefined, fallback: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  const n = /^\s*\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `a whole number of at least ${min}` : `a whole number from ${min} to ${max}`;
    throw new UsageError(`${command}: --${name} must be ${range}, got "${value}"`);
  }
  return n;
}

/**
 * A NATS server list as the client takes it: `nats://host:port`, `host:port` or a
 * comma-separated list of those. Checked here so a typo fails at once, not after a
 * connection timeout.
 */
export function natsServers(command: string, value: string): string[] {
  const servers = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (servers.length === 0) throw new UsageError(`${command}: --nats needs a server URL such as nats://127.0.0.1:4222`);
  for (const server of servers) {
    let url: URL | undefined;
    try {
      url = new URL(server.includes('://') ? server : `nats://${server}`);
    } catch {
      url = undefined;
    }
    if (!url || !['nats:', 'tls:', 'ws:', 'wss:'].includes(url.protocol) || url.hostname === '') {
      throw new UsageError(`${command}: --nats "${server}" is not a NATS URL (expected nats://host:port)`);
    }
  }
  return servers;
}

/** The `--nats` option, falling back to the NATS_URL environment variable. */
export function natsOption(command: string, value: string | undefined): string[] {
  const url = value ?? process.env.NATS_URL;
  if (url === undefined || url === '') throw new UsageError(`${command}: --nats is required (or set NATS_URL), e.g. --nats nats://127.0.0.1:4222`);
  return natsServers(command, url);
}

/** An event given on the command line: a JSON object with a string `type`. */
export function eventArgument(command: string, text: string): { type: string; [key: string]: unknown } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${command}: the event is not valid JSON (${(error as Error).message}); e.g. '{"type":"DEPOSIT","amount":10}'`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value) || typeof (value as { type?: unknown }).type !== 'string') {
    throw new UsageError(`${command}: the event must be a JSON object with a string "type", e.g. '{"type":"DEPOSIT","amount":10}'`);
  }
  return value as { type: string };
}
