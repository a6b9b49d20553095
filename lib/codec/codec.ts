/**
 * Wire encoding: superjson (so Dates, Maps, Sets, BigInts and undefined survive) over
 * UTF-8 JSON. Decoding never trusts its input: keys that could reach an object's
 * prototype are dropped, and a validator checks the shape before anything uses it.
 */
import superjson from 'superjson';
import { DecodeError, PayloadTooLargeError } from '../errors.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Default NATS max_payload; adapters use the limit the server announces. */
export const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

export function encode(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(superjson.serialize(value)));
}

/** Encodes and rejects the result before anything is sent if it is over `limit` bytes. */
export function encodeWithin(value: unknown, limit: number, what: string): Uint8Array {
  const bytes = encode(value);
  if (bytes.length > limit) throw new PayloadTooLargeError(what, bytes.length, limit);
  return bytes;
}

function dropPrototypeKeys(key: string, value: unknown): unknown {
  return key === '__proto__' ? undefined : value;
}

/** Validates a decoded value and narrows it; returns a reason when it does not fit. */
export type Validator<T> = (value: unknown) => value is T;

/**
 * Decodes bytes produced by `encode` and checks them with `validate`. Every failure,
 * whatever its cause, is a `DecodeError` naming `what` was being decoded.
 */
export function decode<T>(bytes: Uint8Array, validate: Validator<T>, what: string): T {
  let value: unknown;
  try {
    const parsed = JSON.parse(decoder.decode(bytes), dropPrototypeKeys) as unknown;
    if (parsed === null || typeof parsed !== 'object' || !('json' in parsed)) {
      throw new Error('not a superjson envelope');
    }
    value = superjson.deserialize(parsed as Parameters<typeof superjson.deserialize>[0]);
  } catch (cause) {
    throw new DecodeError(what, (cause as Error).message ?? String(cause), { cause });
  }
  if (!validate(value)) throw new DecodeError(what, 'unexpected shape');
  return value;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** An XState event: an object with a string `type`. */
export function isEventObject(value: unknown): value is { type: string } {
  return isRecord(value) && typeof value.type === 'string' && value.type.length > 0;
}
