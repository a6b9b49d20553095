/**
 * `--actors MODULE`: the actor types a `natstate node` hosts, from a JS module (or a TS
 * one when run through tsx) that exports `{ typeName: machine }` as its default export or
 * as `actors`. `examples/bank/actors.ts` is one.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AnyStateMachine } from 'xstate';
import type { ActorTypes } from '../node.js';
import { UsageError } from './args.js';

function isMachine(value: unknown): value is AnyStateMachine {
  const m = value as Partial<AnyStateMachine> | null;
  return typeof m === 'object' && m !== null && typeof m.transition === 'function' && typeof m.getInitialSnapshot === 'function' && typeof m.root === 'object';
}

function asActorTypes(value: unknown): ActorTypes | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const entries = Object.entries(value);
  return entries.length > 0 && entries.every(([, machine]) => isMachine(machine)) ? (value as ActorTypes) : undefined;
}

export async function loadActors(path: string): Promise<ActorTypes> {
  const file = resolve(path);
  if (!existsSync(file)) throw new UsageError(`--actors: no such module "${path}"`);
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (error) {
    const e = error as Error & { code?: string };
    if (e.code === 'ERR_UNKNOWN_FILE_EXTENSION') {
      throw new UsageError(`--actors: cannot load "${path}": run natstate through tsx (node --import tsx) for a .ts module, or build it to .js`);
    }
    throw new UsageError(`--actors: cannot load "${path}": ${e.message?.split('\n')[0] ?? String(error)}`);
  }
  const actors = asActorTypes(module.actors) ?? asActorTypes(module.default);
  if (!actors) {
    throw new UsageError(`--actors: "${path}" exports no actor types (expected a default or named "actors" export mapping type names to XState machines)`);
  }
  return actors;
}
