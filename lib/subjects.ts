/**
 * The one module that turns namespaces, actor types and actor ids into NATS subjects,
 * stream names, KV bucket names and KV keys. Nothing else in natstate builds a subject.
 *
 * Every user-supplied name is encoded into a single token made only of
 * `[A-Za-z0-9-_]`: letters, digits and `-` stay as they are; every other UTF-8 byte
 * (including `_`) becomes `_` followed by two upper-case hex digits. The encoding is
 * injective, so no id can reach another id's subject, and the output is valid in a
 * subject token, a stream name, a bucket name and a KV key alike.
 */
import { InvalidActorIdError, InvalidNameError } from './errors.js';

/** Longest accepted actor id, in UTF-8 bytes (encoded it stays under NATS' 4 KB control line). */
export const MAX_ACTOR_ID_BYTES = 1024;
/** Longest accepted namespace, in UTF-8 bytes (stream and bucket names become file names). */
export const MAX_NAMESPACE_BYTES = 64;
/** Longest accepted actor type name, in UTF-8 bytes. */
export const MAX_ACTOR_TYPE_BYTES = 128;
export const DEFAULT_PREFIX = 'natstate';

const encoder = new TextEncoder();
const HEX = '0123456789ABCDEF';

function isPlain(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45;
}

/** Encodes any non-empty string into one subject token (see the module comment). */
export function encodeToken(value: string): string {
  let plain = true;
  for (let i = 0; i < value.length; i++) {
    if (!isPlain(value.charCodeAt(i))) {
      plain = false;
      break;
    }
  }
  if (plain) return value;
  let out = '';
  for (const byte of encoder.encode(value)) {
    out += isPlain(byte) ? String.fromCharCode(byte) : '_' + HEX[byte >> 4] + HEX[byte & 15];
  }
  return out;
}

/** Inverse of `encodeToken`. */
export function decodeToken(token: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < token.length; i++) {
    if (token[i] === '_') {
      bytes.push(parseInt(token.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(token.charCodeAt(i));
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

function byteLength(value: string): number {
  // Fast path: ASCII strings are their own byte length.
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) > 127) return encoder.encode(value).length;
  return value.length;
}

export function validateActorId(id: unknown): asserts id is string {
  if (typeof id !== 'string') throw new InvalidActorIdError(id, `expected a string, got ${typeof id}`);
  if (id.length === 0) throw new InvalidActorIdError(id, 'the empty string is not an actor id');
  const n = byteLength(id);
  if (n > MAX_ACTOR_ID_BYTES) throw new InvalidActorIdError(id, `${n} bytes is over the limit of ${MAX_ACTOR_ID_BYTES} bytes`);
}

function validateName(kind: 'namespace' | 'actor type', value: unknown, max: number): asserts value is string {
  if (typeof value !== 'string') throw new InvalidNameError(kind, value, `expected a string, got ${typeof value}`);
  if (value.length === 0) throw new InvalidNameError(kind, value, 'must not be empty');
  const n = byteLength(value);
  if (n > max) throw new InvalidNameError(kind, value, `${n} bytes is over the limit of ${max} bytes`);
}

export function validateNamespace(ns: unknown): asserts ns is string {
  validateName('namespace', ns, MAX_NAMESPACE_BYTES);
}

export function validateActorType(type: unknown): asserts type is string {
  validateName('actor type', type, MAX_ACTOR_TYPE_BYTES);
}

/** Identifies one actor's event stream. */
export interface StreamId {
  readonly type: string;
  readonly id: string;
}

/** A shard as a subject token: its number, or `_` for none. */
function shardToken(shard: number | undefined): string {
  if (shard === undefined) return '_';
  if (!Number.isSafeInteger(shard) || shard < 0) throw new InvalidNameError('shard', shard, 'must be an integer >= 0');
  return String(shard);
}

/** A printable, unambiguous name for a stream, used in error messages and map keys. */
export function streamKey(stream: StreamId): string {
  return encodeToken(stream.type) + '.' + encodeToken(stream.id);
}

/**
 * All names of one namespace. Built once per store / bus / node; the per-actor
 * methods only encode the actor's own type and id.
 */
export class Subjects {
  readonly namespace: string;
  readonly prefix: string;
  /** Encoded namespace token. */
  readonly ns: string;
  private readonly base: string;

  constructor(namespace: string, prefix: string = DEFAULT_PREFIX) {
    validateNamespace(namespace);
    if (typeof prefix !== 'string' || !/^[A-Za-z0-9-]{1,16}$/.test(prefix)) {
      throw new InvalidNameError('prefix', prefix, 'must be 1..16 characters of [A-Za-z0-9-]');
    }
    this.namespace = namespace;
    this.prefix = prefix;
    this.ns = encodeToken(namespace);
    this.base = `${prefix}.${this.ns}`;
  }

  /** JetStream stream holding every actor's events in this namespace. */
  get eventStream(): string {
    return `${this.prefix}_${this.ns}_events`;
  }

  /** JetStream API subject that gets one message of the event stream (nats.js's default API prefix, as the stores use). */
  get eventStreamMessageGet(): string {
    return `$JS.API.STREAM.MSG.GET.${this.eventStream}`;
  }

  /** Subjects bound to the event stream. */
  get eventStreamSubjects(): string {
    return `${this.base}.ev.>`;
  }

  /** Subject of one actor's events. */
  events(stream: StreamId): string {
    return `${this.base}.ev.${streamKey(stream)}`;
  }

  /** Subjects of the events of every actor of one type (`last_by_subj` finds whether the type has any). */
  typeEvents(type: string): string {
    return `${this.base}.ev.${encodeToken(type)}.>`;
  }

  /** KV bucket of actor snapshots. */
  get snapshotBucket(): string {
    return `${this.prefix}_${this.ns}_snapshots`;
  }

  /** KV key of one actor's snapshot. */
  snapshotKey(stream: StreamId): string {
    return streamKey(stream);
  }

  /**
   * Subject on which one actor's `EventStored` notifications are published:
   * `<base>.es.<shard>.<type>.<id>`, the shard being the actor's shard in the writer's
   * map (`_` when the writer has none), so that a node can listen to its own shards only.
   */
  eventStored(stream: StreamId, shard?: number): string {
    return `${this.base}.es.${shardToken(shard)}.${streamKey(stream)}`;
  }

  /** Subscription subject for `EventStored`, optionally narrowed to a shard, a type and/or an id. */
  eventStoredFilter(filter?: { type?: string; id?: string; shard?: number }): string {
    const shard = filter?.shard === undefined ? '*' : shardToken(filter.shard);
    const type = filter?.type === undefined ? '*' : encodeToken(filter.type);
    const id = filter?.id === undefined ? '*' : encodeToken(filter.id);
    return `${this.base}.es.${shard}.${type}.${id}`;
  }

  /** KV bucket of cluster coordination: member records, the leader lease, the shard map. */
  get clusterBucket(): string {
    return `${this.prefix}_${this.ns}_cluster`;
  }

  /** Key prefix of member records in the cluster bucket. */
  /** The JetStream stream NATS keeps the cluster bucket in. */
  get clusterStream(): string {
    return `KV_${this.clusterBucket}`;
  }

  /** The subject a cluster bucket key is stored on in `clusterStream` (a key ending in `>`: every key under a prefix). */
  clusterKeySubject(key: string): string {
    return `$KV.${this.clusterBucket}.${key}`;
  }

  get memberPrefix(): string {
    return 'members.';
  }

  memberKey(nodeId: string): string {
    return `members.${encodeToken(nodeId)}`;
  }

  /** Node id back from a member key (inverse of `memberKey`). */
  nodeIdOfMemberKey(key: string): string {
    return decodeToken(key.slice('members.'.length));
  }

  get leaderKey(): string {
    return 'leader';
  }

  get shardMapKey(): string {
    return 'shardmap';
  }

  /** Subject a node serves routed requests on. */
  node(nodeId: string): string {
    return `${this.base}.node.${encodeToken(nodeId)}`;
  }
}
