import { deriveGearTable, StreamChunker, ChunkerParams } from '../../src/chunk';
import { cutPoints } from '../../src/native/fastcdc';
import { prng } from '../helpers/tmp';

const P: ChunkerParams = { minSize: 2048, avgSize: 8192, maxSize: 32768 };
const gear = deriveGearTable(Buffer.alloc(32, 9));

function chunks(data: Buffer): string[] {
  const cuts = cutPoints(data, P, gear);
  let prev = 0;
  return cuts.map((c) => {
    const s = data.subarray(prev, c).toString('base64').slice(0, 40) + ':' + (c - prev);
    prev = c;
    return s;
  });
}

describe('FastCDC reference', () => {
  const data = prng(3).bytes(2 * 1024 * 1024);

  test('respects min/avg/max', () => {
    const cuts = cutPoints(data, P, gear);
    let prev = 0;
    const lens = cuts.map((c) => {
      const l = c - prev;
      prev = c;
      return l;
    });
    expect(cuts[cuts.length - 1]).toBe(data.length);
    for (const l of lens.slice(0, -1)) {
      expect(l).toBeGreaterThanOrEqual(P.minSize);
      expect(l).toBeLessThanOrEqual(P.maxSize);
    }
    const avg = data.length / lens.length;
    expect(avg).toBeGreaterThan(P.avgSize * 0.5);
    expect(avg).toBeLessThan(P.avgSize * 2);
  });

  test('boundaries are stable under an insertion: only the neighbourhood changes', () => {
    const before = chunks(data);
    const edited = Buffer.concat([data.subarray(0, 1_000_000), Buffer.from('inserted bytes!'), data.subarray(1_000_000)]);
    const after = chunks(edited);
    const setBefore = new Set(before);
    const changed = after.filter((c) => !setBefore.has(c)).length;
    expect(changed).toBeGreaterThan(0);
    expect(changed).toBeLessThanOrEqual(3);
  });

  test('the gear table depends on the key', () => {
    const other = deriveGearTable(Buffer.alloc(32, 10));
    expect(cutPoints(data, P, other)).not.toEqual(cutPoints(data, P, gear));
  });

  test('streaming in random pieces (the facade: native when loaded) gives the same cuts', () => {
    const r = prng(11);
    const s = new StreamChunker(P, gear);
    const got: number[] = [];
    for (let off = 0; off < data.length;) {
      const n = Math.min(data.length - off, 1 + r.int(50_000));
      got.push(...s.push(data.subarray(off, off + n)));
      off += n;
    }
    got.push(...s.finish());
    expect(got).toEqual(cutPoints(data, P, gear));
  });
});
