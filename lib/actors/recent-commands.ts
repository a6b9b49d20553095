/**
 * The command ids an actor applied last, with the version each produced: a ring of at
 * most `window` entries, for idempotent retries. A lookup compares small-integer hashes
 * kept in one array and reads an id only when its hash matches.
 *
 * Why not a `Map`: with one per actor, tens of thousands of maps in the old generation
 * each took every new id as a key. Under B9's load the lookups and inserts (with the
 * host's loop around them) grew from 10% to 15% of the event loop within seconds as the
 * maps grew (hashing and flattening each new id, growing tables, cache misses across the
 * heap); with this ring, 6–7.5% (ARCHITECTURE.md, "Idempotency in two layers").
 *
 * Here an add writes three array slots and a miss compares every third slot, a small
 * integer. One plain array: typed ones cost more to allocate and grow, thousands at a
 * time, than the lookups saved, and three arrays each grown by `push` to 17 slots made
 * an actor that remembered one id 550 bytes heavier than with the `Map` (B5).
 *
 * The host adds an id once: it looks the id up before applying a command, and a stream
 * (replayed, or carried by a migration) holds each id once.
 *
 * A migration carries hashes and versions, not ids (`hashLists`, `fromHashes`): reading
 * each id, scattered across the source's heap, was most of the cost of encoding a
 * migration. The new owner learns an id only when a command's hash matches one it does
 * not know: it reads the events at those versions from the store (`resolve`), whose
 * command ids are the ids remembered (one event per applied command).
 */
export class RecentCommands {
  /**
   * Per id three slots: its hash, the id, its version. Oldest at `added % size` once full.
   * An id a migration did not carry (`fromHashes`) is `undefined` until `resolve` reads it
   * from the store; a slot the store could not confirm has hash -1 and matches nothing.
   */
  private readonly entries: (number | string | undefined)[];
  /** Ids added so far. */
  private added: number;
  /** Slots whose id is not known yet. */
  private unknown: number;

  /** A ring of `entries` (oldest first, none empty), `unknown` of them known by hash only. */
  private constructor(entries: (number | string | undefined)[], unknown: number) {
    this.entries = entries;
    this.added = entries.length / 3;
    this.unknown = unknown;
  }

  /** A ring with `commandId` remembered (an empty ring is never made). */
  static of(commandId: string, version: number): RecentCommands {
    return new RecentCommands([hashOf(commandId), commandId, version], 0);
  }

  /**
   * A ring of ids known only by hash, as a migration carries them (`hashes[i]` for the
   * command that produced `versions[i]`, oldest first); the newest `window` of them.
   */
  static fromHashes(hashes: readonly number[], versions: readonly number[], window: number): RecentCommands | undefined {
    const from = Math.max(0, hashes.length - window);
    if (from >= hashes.length) return undefined;
    const entries: (number | undefined)[] = [];
    for (let i = from; i < hashes.length; i++) entries.push(hashes[i], undefined, versions[i]);
    return new RecentCommands(entries, hashes.length - from);
  }

  /** Remembers `commandId`; past `window` ids, the oldest is forgotten. */
  add(commandId: string, version: number, window: number): void {
    const entries = this.entries;
    let size = entries.length / 3;
    if (size > window) size = this.shrink(window);
    if (size < window && this.added === size) {
      entries.push(hashOf(commandId), commandId, version);
    } else {
      const slot = 3 * (this.added % size);
      if (this.unknown > 0 && this.unknownAt(slot)) this.unknown--;
      entries[slot] = hashOf(commandId);
      entries[slot + 1] = commandId;
      entries[slot + 2] = version;
    }
    this.added++;
  }

  /** The version `commandId` produced, if it is still remembered by id. */
  versionOf(commandId: string): number | undefined {
    const hash = hashOf(commandId);
    const entries = this.entries;
    for (let i = 0; i < entries.length; i += 3) {
      if (entries[i] === hash && entries[i + 1] === commandId) return entries[i + 2] as number;
    }
    return undefined;
  }

  /**
   * True when `commandId` may be a remembered command known only by hash: its hash
   * matches such a slot. Only `resolve` can tell (a hash match alone is never taken for
   * the id).
   */
  mayBeUnresolved(commandId: string): boolean {
    if (this.unknown === 0) return false;
    const hash = hashOf(commandId);
    const entries = this.entries;
    for (let i = 0; i < entries.length; i += 3) if (entries[i] === hash && entries[i + 1] === undefined) return true;
    return false;
  }

  /** The versions to read from the store to know every id (`undefined` when all are known). */
  unresolvedVersions(): { from: number; to: number } | undefined {
    if (this.unknown === 0) return undefined;
    let from = Infinity;
    let to = 0;
    const entries = this.entries;
    for (let i = 0; i < entries.length; i += 3) {
      if (!this.unknownAt(i)) continue;
      const version = entries[i + 2] as number;
      if (version < from) from = version;
      if (version > to) to = version;
    }
    return { from, to };
  }

  /**
   * Learns the ids known only by hash from `stored`: the command id of the event at each
   * version, as the store has it. A slot the store has no event for, or whose event's id
   * has another hash, is dropped (it matches nothing).
   */
  resolve(stored: ReadonlyMap<number, string>): void {
    const entries = this.entries;
    for (let i = 0; i < entries.length; i += 3) {
      if (!this.unknownAt(i)) continue;
      const id = stored.get(entries[i + 2] as number);
      if (id !== undefined && hashOf(id) === entries[i]) entries[i + 1] = id;
      else entries[i] = -1;
    }
    this.unknown = 0;
  }

  /** Remembered ids and their versions, oldest first, in two lists; only known ids (see `resolved`). */
  lists(): { ids: string[]; versions: number[] } {
    const slots = this.ordered();
    const ids: string[] = [];
    const versions: number[] = [];
    for (let i = 0; i < slots.ids.length; i++) {
      const id = slots.ids[i];
      if (id === undefined) continue;
      ids.push(id);
      versions.push(slots.versions[i]);
    }
    return { ids, versions };
  }

  /** True when every remembered id is known (none waits for `resolve`). */
  get resolved(): boolean {
    return this.unknown === 0;
  }

  /**
   * What a migration carries: the hash of every remembered id with its version, oldest
   * first, in two lists of small integers (reading no id: ARCHITECTURE.md, "Migrations
   * carry hashes").
   */
  hashLists(): { hashes: number[]; versions: number[] } {
    const size = this.entries.length / 3;
    const hashes: number[] = [];
    const versions: number[] = [];
    for (let i = 0, slot = this.added % size; i < size; i++, slot = slot + 1 === size ? 0 : slot + 1) {
      const hash = this.entries[3 * slot] as number;
      if (hash === -1) continue;
      hashes.push(hash);
      versions.push(this.entries[3 * slot + 2] as number);
    }
    return { hashes, versions };
  }

  /** Whether the slot at `i` holds an id known by hash only, not resolved or dropped yet. */
  private unknownAt(i: number): boolean {
    return this.entries[i + 1] === undefined && this.entries[i] !== -1;
  }

  /** Slots oldest first, ids `undefined` where not known. */
  private ordered(): { ids: (string | undefined)[]; versions: number[]; hashes: number[] } {
    const size = this.entries.length / 3;
    const ids = new Array<string | undefined>(size);
    const versions = new Array<number>(size);
    const hashes = new Array<number>(size);
    for (let i = 0, slot = this.added % size; i < size; i++, slot = slot + 1 === size ? 0 : slot + 1) {
      hashes[i] = this.entries[3 * slot] as number;
      ids[i] = this.entries[3 * slot + 1] as string | undefined;
      versions[i] = this.entries[3 * slot + 2] as number;
    }
    return { ids, versions, hashes };
  }

  /** A smaller window than before: keep the newest `window` slots, oldest first. */
  private shrink(window: number): number {
    const { ids, versions, hashes } = this.ordered();
    this.entries.length = 0;
    this.unknown = 0;
    for (let i = ids.length - window; i < ids.length; i++) {
      this.entries.push(hashes[i], ids[i], versions[i]);
      if (ids[i] === undefined && hashes[i] !== -1) this.unknown++;
    }
    this.added = window;
    return window;
  }
}

/** FNV-1a over the id's UTF-16 code units, cut to 30 bits so that it stays a small integer. */
export function hashOf(id: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) hash = Math.imul(hash ^ id.charCodeAt(i), 0x01000193);
  return hash & 0x3fffffff;
}
