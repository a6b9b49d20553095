/**
 * Fuzzes every wire decoder with random bytes, random JSON and mutations of valid
 * payloads. Each input must either decode to a value its validator accepts, with no
 * prototype keys anywhere in it, or fail with `DecodeError`: never another error, never
 * a crash, never a polluted `Object.prototype`.
 *
 * Every decoder runs from its own fixed seed, so a failure replays; set
 * NATSTATE_FUZZ_SEED to explore other seeds (the failure message names the seed and case).
 */
import { expect } from 'chai';
import sinon from 'sinon';
import superjson from 'superjson';
import { decode, encode, isRecord, type Validator } from '../../lib/codec/codec.js';
import { isCommitRecord, isEventStored, isSnapshotRecord } from '../../lib/codec/messages.js';
import { isMigrationBatch, isMigrationBatchReply, isMigrationReply, isMigrationRequest, isNodeRequest, isRouteReply, isRouteRequest, isShardDone } from '../../lib/codec/routing.js';
import { isLeaseRecord, isMemberRecord, isShardMapRecord } from '../../lib/codec/cluster-records.js';
import { DecodeError, EncodeError } from '../../lib/errors.js';
import { mulberry32 } from '../support/random.js';

const CASES_PER_DECODER = 3000;
const BASE_SEED = Number(process.env.NATSTATE_FUZZ_SEED ?? 20260601);

interface Decoder {
  readonly what: string;
  readonly validate: Validator<unknown>;
  /** Valid values the mutations start from. */
  readonly samples: readonly unknown[];
}

const event = { type: 'DEPOSIT', amount: 5, note: 'ü 🎉' };
const routeRequest = { type: 'account', id: 'acc.1', event, commandId: 'c-1', epoch: 3, wantState: true };
const migrationRequest = {
  kind: 'migrate',
  type: 'account',
  id: 'acc-1',
  version: 4,
  sequence: 17,
  fingerprint: 'f00d',
  state: { status: 'active', value: 'open', context: { id: 'acc-1', balance: 9, at: new Date(0) }, children: {}, historyValue: {} },
  recentCommands: { ids: ['c-1', 'c-2'], versions: [3, 4] },
  from: 'node-a',
  epoch: 2,
};
const migrationBatch = { kind: 'migrate-batch', actors: [migrationRequest, { ...migrationRequest, id: 'acc-2', recentCommands: { ids: [], versions: [] } }] };
const shardDone = { kind: 'shard-done', shard: 7, epoch: 2, from: 'node-a', ok: true };
const eventStored = { namespace: 'bank', type: 'account', id: 'acc-1', version: 2, sequence: 9, events: [event, { type: 'WITHDRAW', amount: 1 }], commandIds: ['c-1', 'c-2'], origin: 'node-a' };
const commit = { commitId: 'k-1', version: 2, time: 1_700_000_000_000, events: [event, { type: 'WITHDRAW', amount: 1 }], commandIds: ['c-1', 'c-2'] };
const snapshot = { version: 4, sequence: 17, fingerprint: 'f00d', state: migrationRequest.state, recentCommands: [['c-1', 3]], time: 1_700_000_000_000 };

const decoders: readonly Decoder[] = [
  { what: 'node request', validate: isNodeRequest, samples: [routeRequest, { ...routeRequest, kind: 'command', event: undefined }, migrationRequest, migrationBatch, shardDone] },
  { what: 'RouteRequest', validate: isRouteRequest, samples: [routeRequest, { ...routeRequest, event: undefined, wantState: false }] },
  {
    what: 'RouteReply',
    validate: isRouteReply,
    samples: [
      { kind: 'ok', accepted: true, version: 3, commandId: 'c-1', duplicate: false, state: { value: { open: 'idle' }, context: { n: 1n, tags: new Set(['a']) }, status: 'active' } },
      { kind: 'not-owner', epoch: 4, owner: null },
      { kind: 'error', code: 'CONCURRENCY', name: 'ConcurrencyError', message: 'm', details: { expectedVersion: 1, actualVersion: 2 } },
    ],
  },
  { what: 'MigrationRequest', validate: isMigrationRequest, samples: [migrationRequest] },
  { what: 'MigrationBatch', validate: isMigrationBatch, samples: [migrationBatch] },
  { what: 'ShardDone', validate: isShardDone, samples: [shardDone] },
  { what: 'MigrationReply', validate: isMigrationReply, samples: [{ kind: 'ack', installed: true }, { kind: 'nack', reason: 'busy', retryable: true }] },
  { what: 'MigrationBatchReply', validate: isMigrationBatchReply(2), samples: [{ kind: 'migrated', replies: [{ kind: 'ack', installed: true }, { kind: 'nack', reason: 'busy', retryable: true }] }] },
  { what: 'EventStored', validate: isEventStored, samples: [eventStored] },
  { what: 'CommitRecord', validate: isCommitRecord, samples: [commit, { ...commit, events: [{ type: 'AT', at: new Date(5), big: 10n ** 30n }], commandIds: ['c'] }] },
  { what: 'SnapshotRecord', validate: isSnapshotRecord, samples: [snapshot] },
  { what: 'MemberRecord', validate: isMemberRecord, samples: [{ nodeId: 'n-1', startedAt: 1, heartbeatAt: 2, actors: 3, shards: 4, migrations: { running: 0, completed: 1, failed: 0 } }] },
  { what: 'LeaseRecord', validate: isLeaseRecord, samples: [{ holder: 'n-1', term: 3, renewedAt: 5 }] },
  { what: 'ShardMapRecord', validate: isShardMapRecord, samples: [{ epoch: 2, shardCount: 4, owners: ['a', null, 'b', 'a'], leader: 'a', time: 9 }] },
];

type Random = () => number;
const int = (random: Random, n: number) => Math.floor(random() * n);
const pick = <T>(random: Random, items: readonly T[]): T => items[int(random, items.length)];

const KEYS = ['type', 'id', 'kind', 'json', 'meta', 'values', 'version', 'events', '__proto__', 'constructor', 'prototype', 'polluted', '', 'a.b', '\u0000'];
const STRINGS = ['', 'x', '__proto__', 'constructor', 'prototype', 'migrate', 'migrate-batch', 'migrated', 'shard-done', 'ok', 'error', 'ack', 'nack', 'not-owner', 'command', 'Date', 'map', 'set', 'bigint', 'undefined', 'regexp', 'class', 'symbol', 'custom', 'number', '\u0000', '\ud800', '🎉', 'a'.repeat(300)];
const NUMBERS = [0, -0, 1, -1, 0.5, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 1e308, -1e308, Number.MAX_VALUE, Number.MIN_VALUE];

/** A random JSON value, `depth` levels deep at most. */
function randomJson(random: Random, depth: number): unknown {
  switch (depth <= 0 ? int(random, 4) : int(random, 6)) {
    case 0:
      return pick(random, [null, true, false]);
    case 1:
      return random() < 0.5 ? pick(random, NUMBERS) : (random() - 0.5) * 10 ** int(random, 20);
    case 2:
      return pick(random, STRINGS);
    case 3:
      return String.fromCharCode(...Array.from({ length: int(random, 8) }, () => int(random, 0x10000)));
    case 4:
      return Array.from({ length: int(random, 4) }, () => randomJson(random, depth - 1));
    default: {
      const value: Record<string, unknown> = {};
      for (let i = int(random, 4); i > 0; i--) value[pick(random, KEYS)] = randomJson(random, depth - 1);
      return value;
    }
  }
}

/** JSON text with keys `JSON.stringify` would never write (`__proto__` as an own key, escaped spellings). */
function withForgedKey(random: Random, text: string): string {
  const key = pick(random, ['"__proto__"', '"\\u005f_proto__"', '"constructor"', '"prototype"']);
  const inner = pick(random, ['{"polluted":true}', '{"prototype":{"polluted":true}}', '{"__proto__":{"polluted":true}}']);
  const braces = [...text.matchAll(/\{/g)].map((m) => m.index);
  if (braces.length === 0) return text;
  const at = pick(random, braces) + 1;
  const rest = text.slice(at);
  return `${text.slice(0, at)}${key}:${inner}${rest.startsWith('}') ? '' : ','}${rest}`;
}

/** Replaces one value somewhere inside `value` by a random JSON value (usually of another type). */
function swapType(random: Random, value: unknown): unknown {
  if (value === null || typeof value !== 'object' || value instanceof Date || value instanceof Set || value instanceof Map) return randomJson(random, 2);
  const copy: Record<string, unknown> = Array.isArray(value) ? ([...value] as unknown as Record<string, unknown>) : { ...value };
  const keys = Object.keys(copy);
  if (keys.length === 0) return randomJson(random, 2);
  const key = pick(random, keys);
  copy[key] = random() < 0.5 ? swapType(random, copy[key]) : randomJson(random, 2);
  return copy;
}

function deeplyNested(random: Random, depth: number): string {
  const [open, close] = pick(random, [['[', ']'], ['{"a":', '}']]);
  return `{"json":${open.repeat(depth)}1${close.repeat(depth)}}`;
}

const bytesOf = (text: string) => new TextEncoder().encode(text);

/** The codec's envelope, or (for a value `encode` refuses with EncodeError) the same envelope written by hand. */
function envelope(value: unknown): Uint8Array {
  try {
    return encode(value);
  } catch (error) {
    if (!(error instanceof EncodeError)) throw error;
    return bytesOf(`{"json":${JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) ?? 'null'}}`);
  }
}

/** One fuzz input; which kind it is depends on the case number. */
function fuzzInput(random: Random, decoder: Decoder, n: number): Uint8Array {
  const sample = pick(random, decoder.samples);
  const valid = encode(sample);
  switch (n % 12) {
    case 0:
      return Uint8Array.from({ length: int(random, 64) }, () => int(random, 256));
    case 1:
      return envelope(randomJson(random, 4));
    case 2:
      return bytesOf(JSON.stringify(randomJson(random, 4)) ?? 'null');
    case 3: {
      // Bit flips.
      const bytes = valid.slice();
      for (let i = 1 + int(random, 4); i > 0; i--) bytes[int(random, bytes.length)] ^= 1 << int(random, 8);
      return bytes;
    }
    case 4:
      return valid.slice(0, int(random, valid.length));
    case 5: {
      // Insert or overwrite with random bytes (often invalid UTF-8: lone continuation bytes, 0xFF, overlongs).
      const at = int(random, valid.length);
      const junk = Uint8Array.from({ length: 1 + int(random, 6) }, () => pick(random, [0x80, 0xbf, 0xc0, 0xc3, 0xed, 0xf8, 0xff, 0x00, 0x22, 0x5c, 0x7b, 0x7d, int(random, 256)]));
      const out = new Uint8Array(valid.length + junk.length);
      out.set(valid.slice(0, at));
      out.set(junk, at);
      out.set(valid.slice(at), at + junk.length);
      return random() < 0.5 ? out : out.slice(0, valid.length);
    }
    case 6:
      return envelope(swapType(random, sample));
    case 7:
      return bytesOf(withForgedKey(random, new TextDecoder().decode(valid)));
    case 8:
      return bytesOf(deeplyNested(random, pick(random, [10, 100, 1_000])));
    case 9: {
      // Huge, tiny and non-finite numbers in place of the sample's numbers.
      const text = new TextDecoder().decode(valid).replace(/\d+/g, () => pick(random, ['1e400', '-1e400', '9007199254740993', '-0', '0.1', '1e-400', '123456789012345678901234567890']));
      return bytesOf(text);
    }
    case 10: {
      // A superjson meta that was never written by natstate.
      const meta = random() < 0.5 ? randomJson(random, 3) : { values: { [pick(random, ['', 'type', 'id', 'events.0', 'state.context', '__proto__', 'constructor.prototype', 'a.b.c'])]: pick(random, [['Date'], ['map'], ['set'], ['bigint'], ['undefined'], ['class', 'X'], ['symbol', 's'], ['custom', 'c'], ['regexp'], 'number', ['typed-array', 'Int8Array'], [['map', { 0: ['Date'] }]]]) } };
      const text = new TextDecoder().decode(valid);
      return bytesOf(`${text.slice(0, -1)},"meta":${JSON.stringify(meta)}}`);
    }
    default:
      return valid;
  }
}

function hasPrototypeKeyOrForeignPrototype(value: unknown, seen = new Set<unknown>()): string | undefined {
  if (value === null || typeof value !== 'object' || seen.has(value)) return undefined;
  seen.add(value);
  if (Object.prototype.hasOwnProperty.call(value, '__proto__')) return 'an own __proto__ key';
  const proto = Object.getPrototypeOf(value);
  if (![Object.prototype, Array.prototype, Date.prototype, Map.prototype, Set.prototype, RegExp.prototype, null].includes(proto)) return 'an object with a foreign prototype';
  const children = value instanceof Map ? [...value.keys(), ...value.values()] : value instanceof Set ? [...value] : Object.values(value);
  for (const child of children) {
    const found = hasPrototypeKeyOrForeignPrototype(child, seen);
    if (found) return found;
  }
  return undefined;
}

describe('wire decoders under fuzzing', () => {
  const prototypeKeys = Object.getOwnPropertyNames(Object.prototype).sort();

  afterEach(() => {
    expect(({} as Record<string, unknown>).polluted).to.equal(undefined);
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).to.deep.equal(prototypeKeys);
  });

  it('nesting deep enough to exhaust a recursive parser fails with DecodeError', () => {
    for (const [open, close] of [['[', ']'], ['{"a":', '}'], ['{"json":', '}']]) {
      const text = `{"json":${open.repeat(200_000)}1${close.repeat(200_000)}}`;
      for (const decoder of [decoders[0], decoders[3]]) {
        expect(() => decode(bytesOf(text), decoder.validate, decoder.what)).to.throw(DecodeError);
      }
    }
  });

  for (const [index, decoder] of decoders.entries()) {
    it(`${decoder.what}: ${CASES_PER_DECODER} random and mutated payloads decode to a valid value or fail with DecodeError`, () => {
      const seed = BASE_SEED + index;
      const random = mulberry32(seed);
      const outcomes = { decoded: 0, rejected: 0 };
      for (let n = 0; n < CASES_PER_DECODER; n++) {
        const input = fuzzInput(random, decoder, n);
        const where = () => `${decoder.what}, seed ${seed}, case ${n}: ${new TextDecoder().decode(input.slice(0, 300))}`;
        let value: unknown;
        try {
          value = decode(input, decoder.validate, decoder.what);
        } catch (error) {
          if (!(error instanceof DecodeError)) expect.fail(`${where()}\nthrew ${String(error)} instead of DecodeError`);
          expect(error.what, where()).to.equal(decoder.what);
          outcomes.rejected++;
          continue;
        }
        expect(decoder.validate(value), where()).to.equal(true);
        expect(hasPrototypeKeyOrForeignPrototype(value), where()).to.equal(undefined);
        outcomes.decoded++;
      }
      // Both branches were exercised: the mutations are not all fatal, nor all harmless.
      expect(outcomes.decoded, `seed ${seed}`).to.be.greaterThan(CASES_PER_DECODER / 20);
      expect(outcomes.rejected, `seed ${seed}`).to.be.greaterThan(CASES_PER_DECODER / 4);
    });
  }
});

describe('superjson envelopes from outside', () => {
  afterEach(() => sinon.restore());

  it('refuses a meta of a shape superjson never writes before superjson walks it', () => {
    const deserialize = sinon.spy(superjson, 'deserialize');
    for (const meta of ['{"values":{"a":"number"}}', '{"values":"Date"}', '{"values":{"a":[1]}}', '[]', '{"referentialEqualities":{"a":"b"}}', '{"v":"1"}']) {
      expect(() => decode(bytesOf(`{"json":{"a":"1"},"meta":${meta}}`), isRecord, 'record'), meta).to.throw(DecodeError, 'malformed superjson meta');
    }
    expect(deserialize.callCount).to.equal(0);
    // What natstate writes still reaches superjson and round-trips.
    const value = { at: new Date(1), tags: new Set(['a']), big: 2n ** 70n, shared: [{ x: 1 }] };
    expect(decode(encode(value), isRecord, 'record')).to.deep.equal(value);
    expect(deserialize.callCount).to.equal(1);
  });

  it('refuses meta paths through __proto__, constructor or prototype with DecodeError', () => {
    for (const path of ['__proto__.polluted', 'constructor.prototype.polluted', 'a.constructor.prototype', 'prototype']) {
      const text = `{"json":{"a":{}},"meta":{"values":{${JSON.stringify(path)}:["Date"]}}}`;
      expect(() => decode(bytesOf(text), isRecord, 'record'), path).to.throw(DecodeError);
    }
    expect(({} as Record<string, unknown>).polluted).to.equal(undefined);
  });

  it('encode refuses with EncodeError what superjson will not walk (prototype keys beside a Date)', () => {
    for (const key of ['constructor', 'prototype']) {
      expect(() => encode({ type: 'X', at: new Date(0), [key]: { polluted: true } }, 'event')).to.throw(EncodeError, 'cannot encode event');
    }
    // The same keys in plain JSON are data like any other.
    expect(decode(encode({ constructor: { prototype: 1 } }), isRecord, 'record')).to.deep.equal({ constructor: { prototype: 1 } });
  });
});
