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
 */
export class RecentCommands {
  /** Per id three slots: its hash, the id, its version. Oldest at `added % size` once full. */
  private readonly entries: (number | string)[];
  /** Ids added so far. */
  private added = 1;

  /** Starts with `commandId` remembered (an empty ring is never made). */
  constructor(commandId: string, version: number) {
    this.entries = [hashOf(commandId), commandId, version];
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
      entries[slot] = hashOf(commandId);
      entries[slot + 1] = commandId;
      entries[slot + 2] = version;
    }
    this.added++;
  }

  /** The version `commandId` produced, if it is still remembered. */
  versionOf(commandId: string): number | undefined {
    const hash = hashOf(commandId);
    const entries = this.entries;
    for (let i = 0; i < entries.length; i += 3) {
      if (entries[i] === hash && entries[i + 1] === commandId) return entries[i + 2] as number;
    }
    return undefined;
  }

  /** Remembered ids and their versions, oldest first, in two lists. */
  lists(): { ids: string[]; versions: number[] } {
    const size = this.entries.length / 3;
    const ids = new Array<string>(size);
    const versions = new Array<number>(size);
    for (let i = 0, slot = this.added % size; i < size; i++, slot = slot + 1 === size ? 0 : slot + 1) {
      ids[i] = this.entries[3 * slot + 1] as string;
      versions[i] = this.entries[3 * slot + 2] as number;
    }
    return { ids, versions };
  }

  /** A smaller window than before: keep the newest `window` ids, oldest first. */
  private shrink(window: number): number {
    const { ids, versions } = this.lists();
    this.entries.length = 0;
    for (let i = ids.length - window; i < ids.length; i++) this.entries.push(hashOf(ids[i]), ids[i], versions[i]);
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
