import { expect } from 'chai';
import { decode, encode, isRecord, utf8 } from '../../lib/codec/codec.js';
import { DecodeError } from '../../lib/errors.js';

const anything = (value: unknown): value is unknown => true;

describe('codec', () => {
  describe('utf8', () => {
    it('writes the same bytes as TextEncoder, lone surrogates included', () => {
      const encoder = new TextEncoder();
      for (const text of ['', 'acc-1', 'Grüße, 日本', '🎉 emoji', 'lone \ud800 high', 'lone \udc00 low', 'x'.repeat(10_000)]) {
        expect([...utf8(text)], text.slice(0, 20)).to.deep.equal([...encoder.encode(text)]);
      }
    });

    it('returns bytes that stay intact after many more are written', () => {
      const first = utf8('{"json":"first"}');
      const copy = [...first];
      for (let i = 0; i < 10_000; i++) utf8(`{"json":"filler ${i}"}`);
      expect([...first]).to.deep.equal(copy);
    });

    it('returns a plain Uint8Array, whose slice is a copy', () => {
      const bytes = utf8('{"json":"abc"}');
      expect(Object.getPrototypeOf(bytes)).to.equal(Uint8Array.prototype);
      const copy = bytes.slice(0, 4);
      copy[0] ^= 1;
      expect(bytes[0]).to.equal('{'.charCodeAt(0));
    });
  });

  describe('encode and decode', () => {
    it('round-trip plain JSON and the values superjson carries', () => {
      const plain = { type: 'account', id: 'acc-1', event: { type: 'DEPOSIT', amount: 1 }, list: [1, 'two', null, true] };
      expect(decode(encode(plain), anything, 'plain')).to.deep.equal(plain);
      const rich = { at: new Date(5), tags: new Set(['a']), byKey: new Map([['k', 1n]]), missing: undefined };
      const back = decode(encode(rich), isRecord, 'rich');
      expect(back.at).to.be.instanceOf(Date);
      expect((back.at as Date).getTime()).to.equal(5);
      expect([...(back.tags as Set<string>)]).to.deep.equal(['a']);
      expect((back.byKey as Map<string, bigint>).get('k')).to.equal(1n);
      expect(back).to.have.property('missing', undefined);
    });

    it('decodes bytes that start at an offset in a larger buffer', () => {
      const bytes = encode({ hello: 'wörld' });
      const larger = new Uint8Array(bytes.length + 7);
      larger.set(bytes, 5);
      expect(decode(larger.subarray(5, 5 + bytes.length), anything, 'view')).to.deep.equal({ hello: 'wörld' });
    });

    it('refuses bytes that are not UTF-8 with DecodeError', () => {
      const bytes = new Uint8Array([...encode({ a: 'x' })]);
      bytes[bytes.length - 3] = 0xff;
      expect(() => decode(bytes, anything, 'broken')).to.throw(DecodeError, /broken/);
    });
  });
});
