import { blockId, decodeBlock, encodeBlock, BlockCorruptError, ObjectKind, kindOfEncoded } from '../../src/block/codec';
import { CodecPool } from '../../src/block/pool';
import { DEFAULT_CHUNKER } from '../../src/chunk';
import { compressionFor } from '../../src/block/compression';
import { deriveRepoKeys } from '../../src/repo/repository';
import { prng } from '../helpers/tmp';

const zstd = compressionFor({ name: 'zstd', level: 3 });
const keys = deriveRepoKeys(Buffer.alloc(32, 1)).block;
const otherKeys = deriveRepoKeys(Buffer.alloc(32, 2)).block;

describe('block codec', () => {
  const text = Buffer.from('compressible '.repeat(5000));
  const noise = prng(1).bytes(100_000);

  test('round trip; compressible data shrinks, noise is stored raw', () => {
    for (const plain of [text, noise, Buffer.alloc(0), Buffer.from('x')]) {
      const id = blockId(keys, plain);
      const enc = encodeBlock(keys, zstd, id, plain);
      expect(decodeBlock(keys, zstd, id, enc).equals(plain)).toBe(true);
    }
    expect(encodeBlock(keys, zstd, blockId(keys, text), text).length).toBeLessThan(text.length / 10);
    const encNoise = encodeBlock(keys, zstd, blockId(keys, noise), noise);
    expect(encNoise[1] & 1).toBe(0);
    expect(encNoise.length).toBe(noise.length + 31);
  });

  test('ids are keyed: same data, other repository key, other id; nothing readable in the encoding', () => {
    expect(blockId(keys, text).equals(blockId(otherKeys, text))).toBe(false);
    const enc = encodeBlock(keys, compressionFor({ name: 'none' }), blockId(keys, text), text);
    expect(enc.includes(Buffer.from('compressible compressible'))).toBe(false);
  });

  test('tampering, a swapped id and a wrong key are rejected', () => {
    const id = blockId(keys, text);
    const enc = encodeBlock(keys, zstd, id, text);
    for (const pos of [1, 5, 20, enc.length - 1]) {
      const bad = Buffer.from(enc);
      bad[pos] ^= 0x40;
      expect(() => decodeBlock(keys, zstd, id, bad)).toThrow(BlockCorruptError);
    }
    const otherId = blockId(keys, noise);
    expect(() => decodeBlock(keys, zstd, otherId, enc)).toThrow(/authentication failed/);
    expect(() => decodeBlock(otherKeys, zstd, id, enc)).toThrow(BlockCorruptError);
    expect(() => decodeBlock(keys, zstd, id, enc.subarray(0, 10))).toThrow(/truncated/);
    const v2 = Buffer.from(enc);
    v2[0] = 2;
    expect(() => decodeBlock(keys, zstd, id, v2)).toThrow(/version 2/);
  });
});

describe('object kinds', () => {
  const plain = Buffer.from('a tree object, or data with the same bytes '.repeat(100));
  const id = blockId(keys, plain);

  test('the kind is in the header; a decoder told a kind refuses another; blocks without one are data', () => {
    const asData = encodeBlock(keys, zstd, id, plain); // as every block written before kinds
    expect(kindOfEncoded(asData)).toBe(ObjectKind.data);
    expect(decodeBlock(keys, zstd, id, asData, ObjectKind.data).equals(plain)).toBe(true);
    expect(decodeBlock(keys, zstd, id, asData).equals(plain)).toBe(true);
    for (const kind of [ObjectKind.tree, ObjectKind.chunkList, ObjectKind.index]) {
      const enc = encodeBlock(keys, zstd, id, plain, kind);
      expect(kindOfEncoded(enc)).toBe(kind);
      expect(enc[1] & 1).toBe(1); // still compressed
      expect(decodeBlock(keys, zstd, id, enc, kind).equals(plain)).toBe(true);
      expect(() => decodeBlock(keys, zstd, id, enc, ObjectKind.data)).toThrow(/not data/);
      expect(() => decodeBlock(keys, zstd, id, asData, kind)).toThrow(BlockCorruptError);
    }
  });

  test('the kind is authenticated: a header rewritten to another kind does not decode', () => {
    const tree = encodeBlock(keys, zstd, id, plain, ObjectKind.tree);
    const forged = Buffer.from(tree);
    forged[1] = (forged[1] & 1) | (ObjectKind.data << 1);
    expect(() => decodeBlock(keys, zstd, id, forged, ObjectKind.data)).toThrow(/authentication failed/);
    const unknownFlag = Buffer.from(tree);
    unknownFlag[1] |= 0x80;
    expect(() => decodeBlock(keys, zstd, id, unknownFlag)).toThrow(/unknown flags/);
  });

  test.each([true, false])('the codec pool encodes and checks kinds (native decode %s)', async (nativeDecode) => {
    const pool = new CodecPool(
      { idKey: keys.idKey, encKey: keys.encKey, gear: new Uint32Array(256), chunker: DEFAULT_CHUNKER, compression: { name: 'zstd' } },
      { workers: 1, nativeDecode },
    );
    try {
      const sab = new SharedArrayBuffer(plain.length);
      Buffer.from(sab).set(plain);
      const tree = await pool.encode(sab, 0, plain.length, undefined, ObjectKind.tree);
      expect(tree.id.equals(id)).toBe(true);
      expect(kindOfEncoded(tree.encoded!)).toBe(ObjectKind.tree);
      expect((await pool.decode(id, tree.encoded!, { kind: ObjectKind.tree, shared: true })).equals(plain)).toBe(true);
      await expect(pool.decode(id, tree.encoded!, { kind: ObjectKind.data, shared: true })).rejects.toThrow(BlockCorruptError);
      const data = await pool.encode(sab, 0, plain.length);
      expect(kindOfEncoded(data.encoded!)).toBe(ObjectKind.data);
      await expect(pool.decode(id, data.encoded!, { kind: ObjectKind.chunkList })).rejects.toThrow(/not chunk list/);
    } finally {
      await pool.close();
    }
  });
});
