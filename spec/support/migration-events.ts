import type { MigrationEvent } from '../../machines/migration.machine.js';

/** The version every `CAPTURED` of `MIGRATION_EVENTS` carries. */
export const CAPTURED_VERSION = 3;

/** The finite alphabet the migration machine's model-based specs explore: one instance of every event shape. */
export const MIGRATION_EVENTS: readonly MigrationEvent[] = [
  { type: 'PAUSE' },
  { type: 'DRAINED' },
  { type: 'CAPTURED', version: CAPTURED_VERSION },
  { type: 'ACK' },
  { type: 'NACK', reason: 'busy', retryable: true },
  { type: 'NACK', reason: 'refused', retryable: false },
  { type: 'TIMEOUT' },
  { type: 'DELETED' },
  { type: 'FAIL', reason: 'boom' },
];
