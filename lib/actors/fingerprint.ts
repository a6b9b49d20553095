import { createHash } from 'node:crypto';
import type { AnyStateMachine } from 'xstate';

/**
 * Identifies the shape of a machine: its id, its `version` (set `version` in the machine
 * config when an implementation changes behaviour without changing the graph) and its
 * state/transition definition. A stored snapshot is used only when its fingerprint
 * equals the running machine's; otherwise the actor is rebuilt from its events.
 */
export function machineFingerprint(machine: AnyStateMachine): string {
  const definition = JSON.stringify(machine.root.definition);
  return createHash('sha256').update(`${machine.id}\n${machine.version ?? ''}\n${definition}`).digest('base64url').slice(0, 32);
}
