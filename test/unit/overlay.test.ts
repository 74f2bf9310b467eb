import { Overlay } from '../../src/fs/overlay';
import { prng } from '../helpers/tmp';

function materialize(o: Overlay, size: number): Buffer {
  const out = Buffer.alloc(size);
  for (const s of o.slices(0, size)) s.data.copy(out, s.offset);
  return out;
}

describe('Overlay (write buffer)', () => {
  test('sequential appends fill pieces of doubling size, in shared memory, and read back', () => {
    const o = new Overlay();
    const r = prng(1);
    const all = r.bytes(3 * 1024 * 1024);
    for (let off = 0; off < all.length; off += 131072) o.write(off, all.subarray(off, off + 131072));
    expect(o.bytes).toBe(all.length);
    expect(o.ranges()).toEqual([{ start: 0, end: all.length }]);
    // 256 KiB + 512 KiB + 1 MiB + 2 MiB pieces hold 3 MiB: few pieces, and no byte copied twice.
    const slices = o.slices(0, all.length);
    expect(slices.length).toBeLessThanOrEqual(4);
    for (const s of slices) expect(s.data.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(materialize(o, all.length).equals(all)).toBe(true);
  });

  test('random overwrites, cuts and writeUnder match a flat model', () => {
    const r = prng(7);
    const size = 50_000;
    const model = Buffer.alloc(size);
    const mask = Buffer.alloc(size); // 1 where buffered
    const o = new Overlay();
    for (let step = 0; step < 3000; step++) {
      const op = r.int(10);
      const a = r.int(size);
      const len = Math.min(size - a, 1 + r.int(3000));
      if (op < 6) {
        const d = r.bytes(len);
        o.write(a, d);
        d.copy(model, a);
        mask.fill(1, a, a + len);
      } else if (op < 8) {
        o.cut(a, a + len);
        mask.fill(0, a, a + len);
      } else {
        const d = r.bytes(len);
        o.writeUnder(a, d);
        for (let i = 0; i < len; i++)
          if (!mask[a + i]) {
            model[a + i] = d[i];
            mask[a + i] = 1;
          }
      }
      const buffered = mask.reduce((s, v) => s + v, 0);
      expect(o.bytes).toBe(buffered);
    }
    const got = materialize(o, size);
    for (let i = 0; i < size; i++) if (mask[i]) expect(got[i]).toBe(model[i]);
    // ranges() describes exactly the buffered bytes
    const m2 = Buffer.alloc(size);
    for (const rg of o.ranges()) m2.fill(1, rg.start, rg.end);
    expect(m2.equals(mask)).toBe(true);
  });

  test('truncate drops everything past the size', () => {
    const o = new Overlay();
    o.write(0, Buffer.alloc(100, 1));
    o.write(200, Buffer.alloc(100, 2));
    o.truncate(250);
    expect(o.ranges()).toEqual([
      { start: 0, end: 100 },
      { start: 200, end: 250 },
    ]);
    expect(o.bytes).toBe(150);
  });
});
