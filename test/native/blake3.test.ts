import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as api from '../../src/native';
import { forced, hashImpls, napiBlake, prngBytes, rng } from './impls';

const vectors = JSON.parse(readFileSync(path.join(__dirname, 'blake3-vectors.json'), 'utf8')) as {
  key: string;
  cases: { input_len: number; hash: string; keyed_hash: string }[];
};

function input(len: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = i % 251;
  return b;
}

test('@napi-rs/blake-hash loads (it ships a prebuilt binary for this platform)', () => {
  expect(napiBlake.impl).not.toBeNull();
  expect(api.nativeBlake3).toBe(!forced);
});

describe.each(hashImpls)('BLAKE3 (%s)', (_name, h) => {
  test.each(vectors.cases.map((c) => [c.input_len, c] as const))('official vector, %i bytes, hash and keyed_hash', (_len, c) => {
    const data = input(c.input_len);
    expect(h.blake3(data).toString('hex')).toBe(c.hash);
    expect(h.blake3Keyed(Buffer.from(vectors.key, 'ascii'), data).toString('hex')).toBe(c.keyed_hash);
  });

  test('Uint8Array views at an offset, and a 32-byte key is required', () => {
    const big = prngBytes(5, 5000);
    const view = new Uint8Array(big.buffer, big.byteOffset + 3, 4000);
    const key = new Uint8Array(prngBytes(6, 40).buffer, 1, 32);
    expect(h.blake3(view).equals(h.blake3(Buffer.from(view)))).toBe(true);
    expect(h.blake3Keyed(key, view).equals(h.blake3Keyed(Buffer.from(key), Buffer.from(view)))).toBe(true);
    expect(() => h.blake3Keyed(Buffer.alloc(31), view)).toThrow(RangeError);
  });
});

test('keyed hashing with many keys in turn (hashers are cached per key) matches the fallback', () => {
  const [[, ref], ...rest] = hashImpls;
  const keys = Array.from({ length: 12 }, (_, i) => prngBytes(100 + i, 32));
  const data = prngBytes(5, 3000);
  for (const [, h] of rest) {
    for (let round = 0; round < 3; round++) {
      keys.forEach((key, i) => {
        const d = data.subarray(i, 1000 + i * 100);
        expect(h.blake3Keyed(key, d).equals(ref.blake3Keyed(key, d))).toBe(true);
      });
    }
    const key = Buffer.from(keys[0]);
    const before = h.blake3Keyed(key, data);
    key[0] ^= 1; // the caller's buffer changes: the next call uses the new key
    expect(h.blake3Keyed(key, data).equals(before)).toBe(false);
    expect(h.blake3Keyed(key, data).equals(ref.blake3Keyed(key, data))).toBe(true);
  }
  expect(rest.length).toBe(1);
});

test('native and fallback agree on random inputs and keys', () => {
  expect(hashImpls.length).toBe(2);
  const [[, a], [, b]] = hashImpls;
  const r = rng(77);
  const lens = [0, 1, 63, 64, 65, 1023, 1024, 1025, 4096, 65536, 1 << 20];
  for (let i = 0; i < 40; i++) lens.push(r(300_000));
  for (const len of lens) {
    const data = prngBytes(len + 1, len);
    const key = prngBytes(len + 2, 32);
    expect(a.blake3(data).equals(b.blake3(data))).toBe(true);
    expect(a.blake3Keyed(key, data).equals(b.blake3Keyed(key, data))).toBe(true);
  }
});

test('the src/native facade hashes with the official vectors', () => {
  const c = vectors.cases[vectors.cases.length - 1];
  expect(api.blake3(input(c.input_len)).toString('hex')).toBe(c.hash);
  expect(api.blake3Keyed(Buffer.from(vectors.key), input(c.input_len)).toString('hex')).toBe(c.keyed_hash);
});
