import { blockId, decodeBlock, encodeBlock, BlockCorruptError } from '../../src/block/codec';
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
