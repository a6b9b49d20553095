/** Reads a node's migration journal from the store, as a restarted node would. */
import type { EventStore } from '../../lib/eventstore/eventstore.js';
import { migrationJournalStream, replayMigrations, type MigrationRecord } from '../../lib/cluster/migration.js';
import { isFinalMigration, migrationStatus } from '../../machines/migration.machine.js';

/** How many migrations `nodeId` journaled, and the keys of those not final in the store. */
export async function journaledMigrations(store: EventStore, nodeId: string): Promise<{ started: number; unfinished: string[] }> {
  const records: MigrationRecord[] = [];
  for await (const e of store.read(migrationJournalStream(nodeId))) records.push(e.event as unknown as MigrationRecord);
  const open = replayMigrations(records);
  const unfinished = [...open].filter(([, actor]) => !isFinalMigration(migrationStatus(actor.getSnapshot()))).map(([key]) => key);
  for (const actor of open.values()) actor.stop();
  return { started: open.size, unfinished };
}
