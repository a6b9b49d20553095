/**
 * The command ids an actor applied last, with the version each produced: a ring of at
 * most `window` entries, for idempotent retries. A lookup compares small-integer hashes
 * kept in one array and reads an id only when its hash matches.
 *
 * Why not a `Map`: with one per actor, tens of thousands of maps in the old generation
 * each took every new id as a key. Under B9's load `Map.set` and `get` grew from 7% to 12%
 * of the loop within seconds as the maps grew (hashing and flattening each new id, growing
 * tables, cache misses across the heap). Here an add writes three array slots and a miss
 * scans contiguous small integers. Plain arrays, not typed ones: allocating and growing
 * thousands of small typed arrays cost more than the lookups saved.
 *
 * The host adds an id once: it looks the id up before applying a command, and a stream
 * (replayed, or carried by a migration) holds each id once.
 */
export class RecentCommands {
  private readonly hashes: number[] = [];
  private readonly ids: string[] = [];
  private readonly versions: number[] = [];
  /** Ids added so far; once the ring is full the oldest sits at `added % ids.length`. */
  private added = 0;

  /** Remembers `commandId`; past `window` ids, the oldest is forgotten. */
  add(commandId: string, version: number, window: number): void {
    if (!(window >= 1)) return;
    const hash = hashOf(commandId);
    const size = this.ids.length;
    if (size < window && this.added === size) {
      this.hashes.push(hash);
      this.ids.push(commandId);
      this.versions.push(version);
    } else {
      if (size > window) this.shrink(window);
      const slot = this.added % this.ids.length;
      this.hashes[slot] = hash;
      this.ids[slot] = commandId;
      this.versions[slot] = version;
    }
    this.added++;
  }

  /** The version `commandId` produced, if it is still remembered. */
  versionOf(commandId: string): number | undefined {
    const hash = hashOf(commandId);
    const hashes = this.hashes;
    for (let i = 0; i < hashes.length; i++) {
      if (hashes[i] === hash && this.ids[i] === commandId) return this.versions[i];
    }
    return undefined;
  }

  /** Remembered ids and their versions, oldest first, in two lists. */
  lists(): { ids: string[]; versions: number[] } {
    const size = this.ids.length;
    const ids = new Array<string>(size);
    const versions = new Array<number>(size);
    for (let i = 0, slot = size === 0 ? 0 : this.added % size; i < size; i++, slot = slot + 1 === size ? 0 : slot + 1) {
      ids[i] = this.ids[slot];
      versions[i] = this.versions[slot];
    }
    return { ids, versions };
  }

  /** A smaller window than before: keep the newest `window` ids, oldest first. */
  private shrink(window: number): void {
    const { ids, versions } = this.lists();
    this.hashes.length = this.ids.length = this.versions.length = 0;
    this.added = 0;
    for (let i = ids.length - window; i < ids.length; i++) this.add(ids[i], versions[i], window);
  }
}

/** FNV-1a over the id's UTF-16 code units, cut to 30 bits so that it stays a small integer. */
export function hashOf(id: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) hash = Math.imul(hash ^ id.charCodeAt(i), 0x01000193);
  return hash & 0x3fffffff;
}
