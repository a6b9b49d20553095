/** Reads a node's migration journal from the store, as a restarted node would. */
import { createActor } from 'xstate';
import type { EventStore } from '../../lib/eventstore/eventstore.js';
import type { MigrationRecord } from '../../lib/cluster/migration.js';
import { isFinalMigration, migrationMachine, migrationStatus } from '../../machines/migration.machine.js';

/** How many migrations `nodeId` journaled, and the keys of those not final in the store. */
export async function journaledMigrations(store: EventStore, nodeId: string): Promise<{ started: number; unfinished: string[] }> {
  const open = new Map<string, ReturnType<typeof createActor<typeof migrationMachine>>>();
  for await (const e of store.read({ type: '$natstate.migrations', id: nodeId })) {
    const record = e.event as unknown as MigrationRecord;
    if (record.type === 'START') open.set(record.key, createActor(migrationMachine, { input: record.input }).start());
    else open.get(record.key)?.send(record.event);
  }
  const unfinished = [...open].filter(([, actor]) => !isFinalMigration(migrationStatus(actor.getSnapshot()))).map(([key]) => key);
  for (const actor of open.values()) actor.stop();
  return { started: open.size, unfinished };
}
