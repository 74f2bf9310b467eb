import { generatorMatrix } from '../../src/native/gf256';
import * as api from '../../src/native';
import { addonExpected, binding, erasureImpls, forced, prngBytes, rng, subsets } from './impls';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

const kat = JSON.parse(readFileSync(path.join(__dirname, 'rs-4-2-vector.json'), 'utf8')) as {
  text: string;
  data: string[];
  parity: string[];
  wide: { shardSize: number; parity: string[] };
};

const CODES: [number, number][] = [
  [4, 2],
  [10, 4],
  [1, 1],
  [3, 5],
];

function dataShards(k: number, len: number, seed: number): Buffer[] {
  return Array.from({ length: k }, (_, i) => prngBytes(seed * 1000 + i + 1, len));
}

test('the addon is built wherever ISA-L is installed (npm run setup)', () => {
  if (addonExpected) expect(binding).not.toBeNull();
  expect(api.nativeLoaded).toBe(binding !== null && !forced);
});

describe.each(erasureImpls)('Reed-Solomon (%s)', (_name, rs) => {
  test('known answer, 4+2 (16-byte and 96-byte shards)', async () => {
    const data = kat.data.map((h) => Buffer.from(h, 'hex'));
    expect(Buffer.concat(data).toString()).toBe(kat.text);
    expect((await rs.rsEncode(4, 2, data)).map((p) => p.toString('hex'))).toEqual(kat.parity);
    const all = Buffer.from(Array.from({ length: 4 * kat.wide.shardSize }, (_, i) => i % 251));
    const wide = [0, 1, 2, 3].map((i) => all.subarray(i * kat.wide.shardSize, (i + 1) * kat.wide.shardSize));
    expect((await rs.rsEncode(4, 2, wide)).map((p) => p.toString('hex'))).toEqual(kat.wide.parity);
  });

  test.each(CODES)('%i+%i: every pattern of up to m missing shards is rebuilt exactly', async (k, m) => {
    const data = dataShards(k, 333, k * 100 + m);
    const parity = await rs.rsEncode(k, m, data);
    expect(parity).toHaveLength(m);
    const all = [...data, ...parity];
    const patterns = subsets(k + m, m);
    for (const missing of patterns) {
      const input = all.map((s, i) => (missing.includes(i) ? null : s));
      const out = await rs.rsReconstruct(k, m, input);
      expect(out).toHaveLength(k + m);
      for (let i = 0; i < k + m; i++) if (!out[i].equals(all[i])) throw new Error(`${k}+${m} missing ${missing}: shard ${i} differs`);
    }
  });

  test('large shards (split across cores by the addon), odd length, data and parity missing', async () => {
    const k = 10;
    const m = 4;
    const len = (1 << 20) + 4097;
    const data = dataShards(k, len, 7);
    const parity = await rs.rsEncode(k, m, data);
    const all = [...data, ...parity];
    for (const missing of [
      [0, 1, 2, 3],
      [0, 5, 10, 13],
      [9, 11],
    ]) {
      const out = await rs.rsReconstruct(
        k,
        m,
        all.map((s, i) => (missing.includes(i) ? null : s)),
      );
      missing.forEach((i) => expect(out[i].equals(all[i])).toBe(true));
    }
  });

  test('a range of a reconstruction is that range of the whole reconstruction', async () => {
    const k = 4;
    const m = 2;
    const len = 300_001;
    const data = dataShards(k, len, 9);
    const all = [...data, ...(await rs.rsEncode(k, m, data))];
    const r = rng(5);
    const input = all.map((s, i) => (i === 1 || i === 4 ? null : s));
    const whole = await rs.rsReconstruct(k, m, input);
    const ranges = [
      { offset: 0, length: 0 },
      { offset: 0, length: len },
      { offset: len - 1, length: 1 },
      { offset: 65536, length: 65536 },
    ];
    for (let i = 0; i < 20; i++) {
      const offset = r(len);
      ranges.push({ offset, length: r(len - offset + 1) });
    }
    for (const range of ranges) {
      const part = await rs.rsReconstruct(k, m, input, range);
      expect(part).toHaveLength(k + m);
      part.forEach((p, i) => {
        if (!p.equals(whole[i].subarray(range.offset, range.offset + range.length)))
          throw new Error(`range ${JSON.stringify(range)} shard ${i} differs`);
      });
    }
  });

  test("opts.into: results are written into the caller's buffers", async () => {
    const data = dataShards(4, 777, 29);
    const want = await rs.rsEncode(4, 2, data);
    const into = [Buffer.alloc(1000, 0xaa), Buffer.alloc(800, 0x55)];
    const got = await rs.rsEncode(4, 2, data, { into });
    got.forEach((p, i) => {
      expect(p.equals(want[i])).toBe(true);
      expect(p.buffer).toBe(into[i].buffer);
      expect(into[i].subarray(0, 777).equals(want[i])).toBe(true);
    });
    expect(into[0][777]).toBe(0xaa); // nothing past the shard length is touched
    const rebuilt = Buffer.alloc(100);
    const out = await rs.rsReconstruct(4, 2, [data[0], null, data[2], data[3], ...want], { offset: 600, length: 100 }, { into: [rebuilt] });
    expect(out[1]).toHaveLength(100);
    expect(rebuilt.equals(data[1].subarray(600, 700))).toBe(true);
    await expect(rs.rsEncode(4, 2, data, { into: [Buffer.alloc(777)] })).rejects.toThrow(/opts.into needs 2/);
    await expect(rs.rsEncode(4, 2, data, { into: [Buffer.alloc(777), Buffer.alloc(776)] })).rejects.toThrow(/at least 777/);
  });

  test('k+0 (no redundancy): no parity, nothing to rebuild, any loss is an error', async () => {
    const data = dataShards(3, 500, 19);
    expect(await rs.rsEncode(3, 0, data)).toEqual([]);
    (await rs.rsReconstruct(3, 0, data)).forEach((s, i) => expect(s.equals(data[i])).toBe(true));
    await expect(rs.rsReconstruct(3, 0, [data[0], null, data[2]])).rejects.toThrow(/at most 0/);
  });

  test('k + m = 255 works', async () => {
    const k = 200;
    const m = 55;
    const data = dataShards(k, 128, 11);
    const all = [...data, ...(await rs.rsEncode(k, m, data))];
    const missing = new Set(Array.from({ length: m }, (_, i) => i * 3)); // data and parity
    const out = await rs.rsReconstruct(
      k,
      m,
      all.map((s, i) => (missing.has(i) ? null : s)),
    );
    out.forEach((s, i) => expect(s.equals(all[i])).toBe(true));
  });

  test('inputs are left untouched; nothing missing returns the shards', async () => {
    const data = dataShards(4, 1000, 13);
    const copy = data.map((d) => Buffer.from(d));
    const parity = await rs.rsEncode(4, 2, data);
    data.forEach((d, i) => expect(d.equals(copy[i])).toBe(true));
    const out = await rs.rsReconstruct(4, 2, [...data, ...parity]);
    out.forEach((s, i) => expect(s.equals([...data, ...parity][i])).toBe(true));
    expect(
      await rs.rsEncode(
        4,
        2,
        [0, 1, 2, 3].map(() => Buffer.alloc(0)),
      ),
    ).toEqual([Buffer.alloc(0), Buffer.alloc(0)]);
  });

  test('errors: more than m missing, mismatched lengths, bad k/m, bad range', async () => {
    const data = dataShards(4, 100, 17);
    const all = [...data, ...(await rs.rsEncode(4, 2, data))];
    await expect(rs.rsReconstruct(4, 2, [null, null, null, ...all.slice(3)])).rejects.toThrow(RangeError);
    await expect(rs.rsReconstruct(4, 2, [null, null, null, ...all.slice(3)])).rejects.toThrow(/3 of 6 shards missing/);
    await expect(rs.rsReconstruct(4, 2, [null, all[1], all[2], all[3].subarray(1), all[4], all[5]])).rejects.toThrow(/differ in length/);
    await expect(rs.rsReconstruct(4, 2, all.slice(0, 5))).rejects.toThrow(RangeError);
    await expect(rs.rsReconstruct(4, 2, all, { offset: 50, length: 51 })).rejects.toThrow(/range/);
    await expect(rs.rsEncode(4, 2, [data[0], data[1], data[2], data[3].subarray(0, 99)])).rejects.toThrow(/differ in length/);
    await expect(rs.rsEncode(4, 2, data.slice(0, 3))).rejects.toThrow(RangeError);
    await expect(rs.rsEncode(200, 56, dataShards(200, 10, 1))).rejects.toThrow(/k \+ m <= 255/);
    await expect(rs.rsEncode(0, 2, [])).rejects.toThrow(RangeError);
    await expect(rs.rsEncode(4, -1, data)).rejects.toThrow(RangeError);
    await expect(rs.rsEncode(2.5, 2, data)).rejects.toThrow(RangeError);
  });

  test('shardChecksum is CRC-64/XZ and catches a flipped byte', () => {
    expect(rs.shardChecksum(Buffer.from('123456789')).toString('hex')).toBe('fa3919dfbbc95d99'); // 0x995dc9bbdf1939fa, little-endian
    expect(rs.shardChecksum(Buffer.alloc(0)).toString('hex')).toBe('0000000000000000');
    const shard = prngBytes(23, 65536);
    const sum = rs.shardChecksum(shard);
    expect(sum).toHaveLength(8);
    const r = rng(3);
    for (let i = 0; i < 50; i++) {
      const bad = Buffer.from(shard);
      const at = r(bad.length);
      bad[at] ^= 1 << r(8);
      expect(rs.shardChecksum(bad).equals(sum)).toBe(false);
    }
    expect(
      rs.shardChecksum(new Uint8Array(shard.buffer, shard.byteOffset + 7, 1000)).equals(rs.shardChecksum(shard.subarray(7, 1007))),
    ).toBe(true);
  });

  test('segmentChecksums is shardChecksum of each segment, small inputs and large (off-thread) alike', async () => {
    const seg = 65536;
    for (const len of [0, 1, 1000, seg, seg + 1, 3 * seg - 5, 40 * seg + 12345]) {
      const data = prngBytes(len + 1, len);
      const want = Buffer.alloc(8 * Math.ceil(len / seg));
      for (let at = 0; at < len; at += seg) rs.shardChecksum(data.subarray(at, at + seg)).copy(want, (at / seg) * 8);
      const got = await rs.segmentChecksums(data, seg);
      expect(got.toString('hex')).toBe(want.toString('hex'));
      if (len > seg) {
        data[len - 1] ^= 4; // the last, short segment is covered too
        expect((await rs.segmentChecksums(data, seg)).subarray(-8).equals(want.subarray(-8))).toBe(false);
      }
    }
  });
});

describe('addon and fallback agree byte for byte', () => {
  const [[, fb], native] = [erasureImpls[0], erasureImpls[1]];
  const impl = () => {
    if (!native) throw new Error(`addon not loaded: ${binding ? '' : 'not built'}`);
    return native[1];
  };
  // Without the addon (no ISA-L here) there is nothing to compare; where ISA-L is installed the
  // first test of this file fails instead.
  const maybe = (name: string, fn: () => unknown) => {
    if (binding) test(name, fn as () => Promise<void>);
  };

  maybe('parity and reconstructions, every length 0..200 and some large ones', async () => {
    const lens = [...Array(201).keys(), 1023, 4096, 65537, 262_143, 1 << 20];
    for (const len of lens) {
      for (const [k, m] of [
        [4, 2],
        [10, 4],
        [3, 5],
      ]) {
        const data = dataShards(k, len, len + k);
        const a = await fb.rsEncode(k, m, data);
        const b = await impl().rsEncode(k, m, data);
        a.forEach((p, i) => {
          if (!p.equals(b[i])) throw new Error(`${k}+${m} len ${len}: parity ${i} differs`);
        });
        const input = [...data, ...a].map((s, i) => (i < m ? null : s));
        const ra = await fb.rsReconstruct(k, m, input);
        const rb = await impl().rsReconstruct(k, m, input);
        ra.forEach((s, i) => expect(s.equals(rb[i])).toBe(true));
      }
    }
  });

  maybe('checksums on every length 0..300 and a large buffer', () => {
    const big = prngBytes(99, 3 << 20);
    for (let len = 0; len <= 300; len++)
      expect(
        impl()
          .shardChecksum(big.subarray(len, 2 * len))
          .equals(fb.shardChecksum(big.subarray(len, 2 * len))),
      ).toBe(true);
    expect(impl().shardChecksum(big).equals(fb.shardChecksum(big))).toBe(true);
  });

  maybe('the addon splits large jobs without changing a byte', async () => {
    const data = dataShards(4, (2 << 20) + 3, 31);
    const one = await impl().rsEncode(4, 2, data, { threads: 1 });
    for (const threads of [2, 3, 4, 16])
      (await impl().rsEncode(4, 2, data, { threads })).forEach((p, i) => expect(p.equals(one[i])).toBe(true));
  });

  maybe('generator matrix: native, TypeScript and ISA-L gf_gen_cauchy1_matrix are the same', () => {
    const b = binding as NonNullable<typeof binding>;
    for (const [k, m] of [
      [1, 1],
      [4, 2],
      [10, 4],
      [3, 5],
      [17, 3],
      [200, 55],
    ]) {
      const ts = Buffer.from(generatorMatrix(k, m));
      expect(b.testing.rsMatrix(k, m).equals(ts)).toBe(true);
      expect(b.testing.isalCauchy1(k, m).equals(ts)).toBe(true);
    }
  });
});

test('the src/native facade encodes and rebuilds (whichever path runs)', async () => {
  const data = dataShards(4, 5000, 41);
  const parity = await api.rsEncode(4, 2, data);
  const out = await api.rsReconstruct(4, 2, [null, data[1], null, data[3], ...parity]);
  expect(out[0].equals(data[0]) && out[2].equals(data[2])).toBe(true);
  expect(api.shardChecksum(data[0])).toHaveLength(8);
});
