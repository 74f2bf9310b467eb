import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import * as chunk from '../../src/chunk';
import { ChunkerParams, DEFAULT_CHUNKER, deriveGearTable } from '../../src/chunk';
import { cutPoints as referenceCuts, TsCdcStream } from '../../src/native/fastcdc';
import type { ChunkImpl } from '../../src/native/types';
import { binding, chunkImpls, prngBytes, rng } from './impls';

const SMALL: ChunkerParams = { minSize: 1024, avgSize: 4096, maxSize: 16384 };
const ODD: ChunkerParams = { minSize: 64, avgSize: 3000, maxSize: 3001 };
const TINY: ChunkerParams = { minSize: 64, avgSize: 65, maxSize: 200 };
const gear = deriveGearTable(Buffer.from('isgfs test chunker key'));

/** Real files: the TypeScript compiler and its lib files, at most `max` bytes. */
function realData(max: number): Buffer {
  const dir = path.join(__dirname, '../../node_modules/typescript/lib');
  const parts: Buffer[] = [];
  let total = 0;
  for (const f of readdirSync(dir).sort()) {
    const p = path.join(dir, f);
    if (!statSync(p).isFile()) continue;
    const b = readFileSync(p);
    parts.push(b);
    total += b.length;
    if (total >= max) break;
  }
  return Buffer.concat(parts).subarray(0, max);
}

function streamed(s: { push(p: Uint8Array): number[]; finish(): number[] }, data: Uint8Array, seed: number, maxPiece: number): number[] {
  const r = rng(seed);
  const cuts: number[] = [];
  for (let off = 0; off < data.length;) {
    const n = Math.min(data.length - off, r(5) === 0 ? 0 : 1 + r(maxPiece));
    cuts.push(...s.push(data.subarray(off, off + n)));
    off += n;
  }
  cuts.push(...s.finish());
  return cuts;
}

const inputs: [string, () => Buffer][] = [
  ['random', () => prngBytes(1, 12 << 20)],
  ['real files', () => realData(12 << 20)],
  ['zeros', () => Buffer.alloc(3 << 20)],
  ['a repeated 1000-byte pattern', () => Buffer.concat(Array.from({ length: 3000 }, () => prngBytes(2, 1000)))],
];

describe.each(chunkImpls)('FastCDC scanner (%s) gives the reference cut points', (_name, impl: ChunkImpl) => {
  describe.each(inputs)('%s', (_what, make) => {
    const all = make();
    test.each([
      ['1K/4K/16K', SMALL],
      ['defaults', DEFAULT_CHUNKER],
      ['64/3000/3001', ODD],
      ['64/65/200', TINY],
    ] as const)('%s: whole and streamed', (_p, p) => {
      const data = p === TINY ? all.subarray(0, 1 << 20) : all; // a cut every ~100 bytes: keep it short
      const want = referenceCuts(data, p, gear);
      expect(impl.cdcCutPoints(data, p, gear)).toEqual(want);
      expect(streamed(impl.newCdcStream(p, gear), data, 3, 100_000)).toEqual(want);
      expect(streamed(impl.newCdcStream(p, gear), data.subarray(0, 1 << 20), 4, 3000)).toEqual(
        referenceCuts(data.subarray(0, 1 << 20), p, gear),
      );
    });
  });

  test('short inputs: empty, below min, exactly min/avg/max, one past', () => {
    const data = prngBytes(8, 40_000);
    for (const len of [0, 1, 63, 64, 65, 1023, 1024, 1025, 4095, 4096, 4097, 16383, 16384, 16385, 32768, 32769]) {
      const d = data.subarray(0, len);
      const want = referenceCuts(d, SMALL, gear);
      expect(impl.cdcCutPoints(d, SMALL, gear)).toEqual(want);
      const s = impl.newCdcStream(SMALL, gear);
      expect([...s.push(d), ...s.finish()]).toEqual(want);
      expect(s.finish()).toEqual([]);
    }
  });

  test('many random params and gear tables, byte-by-byte pieces included', () => {
    const r = rng(21);
    const data = prngBytes(9, 600_000);
    for (let i = 0; i < 25; i++) {
      const minSize = 64 + r(3000);
      const avgSize = minSize + 1 + r(20_000);
      const p = { minSize, avgSize, maxSize: avgSize + 1 + r(50_000) };
      const g = deriveGearTable(Buffer.from([i]));
      const want = referenceCuts(data, p, g);
      expect(impl.cdcCutPoints(data, p, g)).toEqual(want);
      expect(streamed(impl.newCdcStream(p, g), data, i, 70_000)).toEqual(want);
      if (i % 5 === 0)
        expect(streamed(impl.newCdcStream(p, g), data.subarray(0, 30_000), i, 1)).toEqual(referenceCuts(data.subarray(0, 30_000), p, g));
    }
  });

  test('the stream can be fed after it was finished: a new stream starts at the same absolute offset', () => {
    const data = prngBytes(10, 100_000);
    const s = impl.newCdcStream(SMALL, gear);
    const first = [...s.push(data), ...s.finish()];
    const second = [...s.push(data), ...s.finish()];
    expect(second).toEqual(first.map((c) => c + data.length));
  });

  test('bad parameters and gear tables are refused', () => {
    expect(() => impl.cdcCutPoints(Buffer.alloc(10), { minSize: 100, avgSize: 50, maxSize: 200 }, gear)).toThrow(RangeError);
    expect(() => impl.newCdcStream(SMALL, new Uint32Array(255))).toThrow(TypeError);
  });
});

test('the TypeScript streaming fallback matches the reference, whatever the pieces', () => {
  const data = realData(4 << 20);
  const ref = referenceCuts(data, SMALL, gear);
  expect(streamed(new TsCdcStream(SMALL, gear), data, 6, 50_000)).toEqual(ref);
  expect(streamed(new TsCdcStream(SMALL, gear), data, 5, 50_000)).toEqual(ref);
});

test('the src/chunk facade (native when loaded) matches the reference', () => {
  const data = prngBytes(11, 5 << 20);
  const want = referenceCuts(data, SMALL, gear);
  expect(chunk.cutPoints(data, SMALL, gear)).toEqual(want);
  expect(streamed(new chunk.StreamChunker(SMALL, gear), data, 7, 200_000)).toEqual(want);
  expect(chunk.DEFAULT_CHUNKER).toBe(DEFAULT_CHUNKER);
  expect(chunkImpls.map(([n]) => n)).toEqual(binding ? ['fallback', 'native'] : ['fallback']);
});
