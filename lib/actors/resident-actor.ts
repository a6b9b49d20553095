import type { AnyMachineSnapshot, EventObject } from 'xstate';
import { RecentCommands } from './recent-commands.js';


/** A command or a state query waiting in an actor's mailbox. */
export interface Envelope {
  /** Absent for a state query. */
  readonly event?: EventObject;
  readonly commandId: string;
  /** The id was generated here, so it cannot repeat an earlier command. */
  readonly generated: boolean;
  readonly resolve: (reply: Reply) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * The outcome of one command, as `node.send` returns it. The actor's snapshot right after
 * the command rides along privately (for `ask` and `state`) without being part of the
 * public result.
 */
export class Reply {
  readonly #snapshot: AnyMachineSnapshot;
  constructor(
    readonly accepted: boolean,
    readonly version: number,
    readonly commandId: string,
    /** True when the command id had already been applied; nothing new was stored. */
    readonly duplicate: boolean,
    snapshot: AnyMachineSnapshot,
  ) {
    this.#snapshot = snapshot;
  }

  get snapshot(): AnyMachineSnapshot {
    return this.#snapshot;
  }
}

/**
 * One actor in memory: its current snapshot and version, its mailbox and the command ids
 * it applied recently (for idempotent retries). Kept deliberately small: a node may
 * hold hundreds of thousands of these.
 */
export class ResidentActor {
  snapshot!: AnyMachineSnapshot;
  version = 0;
  /** Store position of the event at `version` (0 when unknown or none). */
  sequence = 0;
  /** Version of the last snapshot saved to the store. */
  snapshotVersion = 0;
  loaded = false;
  running = false;
  /** Another writer stored events beyond `version`: catch up before the next command. */
  stale = false;
  lastUsed = 0;
  mailbox: Envelope[] = [];
  /** Waiting for the mailbox to run dry (a migration about to capture this actor). */
  idleWaiters?: (() => void)[];
  /** Recently applied command ids, bounded (see `RecentCommands`). */
  private recent?: RecentCommands;

  constructor(
    readonly type: string,
    readonly id: string,
  ) {}

  remember(commandId: string, version: number, window: number): void {
    if (!(window >= 1)) return;
    if (this.recent) this.recent.add(commandId, version, window);
    else this.recent = RecentCommands.of(commandId, version);
  }

  /** Remembers commands known by hash only, as a migration carries them (oldest first). */
  rememberHashes(hashes: readonly number[], versions: readonly number[], window: number): void {
    if (!(window >= 1)) return;
    this.recent = RecentCommands.fromHashes(hashes, versions, window);
  }

  appliedVersion(commandId: string): number | undefined {
    return this.recent?.versionOf(commandId);
  }

  /**
   * The versions whose ids the store must tell before `commands` can be checked against
   * those remembered: some command's hash matches one known by hash alone (undefined when
   * none does).
   */
  unresolvedFor(commands: readonly Envelope[]): { from: number; to: number } | undefined {
    const recent = this.recent;
    if (!recent || recent.resolved) return undefined;
    for (const envelope of commands) if (!envelope.generated && recent.mayBeUnresolved(envelope.commandId)) return recent.unresolvedVersions();
    return undefined;
  }

  /** Every remembered id is known (see `RecentCommands.resolve`). */
  get commandsResolved(): boolean {
    return this.recent?.resolved ?? true;
  }

  /** See `RecentCommands.resolve`. */
  resolveCommands(stored: ReadonlyMap<number, string>): void {
    this.recent?.resolve(stored);
  }

  /** Recently applied command ids with their versions, oldest first. */
  recentCommands(): [string, number][] {
    const { ids, versions } = this.recentCommandLists();
    return ids.map((id, i) => [id, versions[i]]);
  }

  /** The same, in two lists. */
  recentCommandLists(): { ids: string[]; versions: number[] } {
    return this.recent ? this.recent.lists() : { ids: [], versions: [] };
  }

  /** As a migration carries them: each id's hash and version, in two lists. */
  recentCommandHashes(): { hashes: number[]; versions: number[] } {
    return this.recent ? this.recent.hashLists() : { hashes: [], versions: [] };
  }

  forget(): void {
    this.recent = undefined;
  }
}
