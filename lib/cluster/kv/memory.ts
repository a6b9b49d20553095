import { ClosedError } from '../../errors.js';
import { RevisionConflictError, type ClusterKV, type KvChange, type KvEntry } from './kv.js';

/**
 * One in-process bucket shared by every node of an embedded network. Values are copied
 * in and out, so nobody can change a stored value by mutating a buffer. (With
 * `new Uint8Array(value)`: the `slice` of a Node Buffer is a view, not a copy.)
 */
export class MemoryKVBucket {
  private readonly entries = new Map<string, KvEntry>();
  private readonly watchers = new Set<{ prefix: string; handler: (change: KvChange) => void }>();
  private revision = 0;

  get(key: string): KvEntry | undefined {
    const entry = this.entries.get(key);
    return entry && { ...entry, value: new Uint8Array(entry.value) };
  }

  write(key: string, value: Uint8Array | undefined, expected: number | 'absent' | 'any'): number {
    const current = this.entries.get(key);
    if (expected === 'absent' && current) throw new RevisionConflictError(key, undefined);
    if (typeof expected === 'number' && current?.revision !== expected) throw new RevisionConflictError(key, expected);
    const revision = ++this.revision;
    if (value === undefined) this.entries.delete(key);
    else this.entries.set(key, { key, value: new Uint8Array(value), revision });
    for (const w of this.watchers) {
      if (!matches(w.prefix, key)) continue;
      const change = { key, value: value && new Uint8Array(value), revision };
      // Asynchronous like a network watch, and a throwing handler cannot break the writer.
      queueMicrotask(() => {
        if (this.watchers.has(w)) w.handler(change);
      });
    }
    return revision;
  }

  watch(prefix: string, handler: (change: KvChange) => void): () => void {
    const watcher = { prefix, handler };
    const current = [...this.entries.values()].filter((e) => matches(prefix, e.key)).sort((a, b) => (a.key < b.key ? -1 : 1));
    for (const e of current) handler({ key: e.key, value: new Uint8Array(e.value), revision: e.revision });
    this.watchers.add(watcher);
    return () => this.watchers.delete(watcher);
  }
}

/**
 * Whether a watch on `prefix` sees `key`. Matched by token like a NATS KV watch: a
 * prefix ending in `.` covers the keys below it, any other prefix is one exact key,
 * and `''` is the whole bucket (`leader` does not see `leaderboard`).
 */
function matches(prefix: string, key: string): boolean {
  return prefix === '' || (prefix.endsWith('.') ? key.startsWith(prefix) : key === prefix);
}

/** `ClusterKV` over a `MemoryKVBucket`: the embedded default. */
export class MemoryKV implements ClusterKV {
  private readonly stops = new Set<() => void>();
  private closed = false;

  constructor(private readonly bucket: MemoryKVBucket = new MemoryKVBucket()) {}

  async get(key: string): Promise<KvEntry | undefined> {
    this.assertOpen();
    return this.bucket.get(key);
  }

  async create(key: string, value: Uint8Array): Promise<number> {
    this.assertOpen();
    return this.bucket.write(key, value, 'absent');
  }

  async update(key: string, value: Uint8Array, revision: number): Promise<number> {
    this.assertOpen();
    return this.bucket.write(key, value, revision);
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    this.assertOpen();
    return this.bucket.write(key, value, 'any');
  }

  async delete(key: string): Promise<void> {
    this.assertOpen();
    this.bucket.write(key, undefined, 'any');
  }

  async watch(prefix: string, handler: (change: KvChange) => void): Promise<() => void> {
    this.assertOpen();
    const off = this.bucket.watch(prefix, (change) => {
      try {
        handler(change);
      } catch (error) {
        process.emitWarning(`natstate: KV watch handler threw: ${String(error)}`);
      }
    });
    const stop = () => {
      off();
      this.stops.delete(stop);
    };
    this.stops.add(stop);
    return stop;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const stop of [...this.stops]) stop();
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('MemoryKV');
  }
}
