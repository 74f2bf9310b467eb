/**
 * CodecPool.decodeFile and decode: a block read and decoded straight from its file(s), or decoded
 * from memory, by the addon on the libuv pool or by a worker. Both give codec.ts's plaintext for
 * every kind of block and split, and the same kinds of errors: a file's fs error, or a
 * BlockCorruptError (kind 'corrupt') for damage, whichever side of a boundary it was found on.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { BlockCorruptError, blockId, encodeBlock } from '../../src/block/codec';
import { compressionFor, CompressionSpec } from '../../src/block/compression';
import { CodecPool } from '../../src/block/pool';
import { DEFAULT_CHUNKER } from '../../src/chunk';
import { isKind } from '../../src/errors';
import { binding, rsEncode } from '../../src/native';
import { deriveRepoKeys } from '../../src/repo/repository';
import { prng, tmpDir } from '../helpers/tmp';

const keys = deriveRepoKeys(Buffer.alloc(32, 7));
const setup = (compression: CompressionSpec) => ({
  idKey: keys.block.idKey,
  encKey: keys.block.encKey,
  gear: keys.gear,
  chunker: DEFAULT_CHUNKER,
  compression,
});

const text = Buffer.from('a compressible line of text\n'.repeat(40_000));
const noise = prng(3).bytes(1024 * 1024 + 77);
const blocks: [string, Buffer][] = [
  ['compressible', text],
  ['incompressible', noise],
  ['one byte', Buffer.from('x')],
  ['empty', Buffer.alloc(0)],
];

let tmp: { dir: string; cleanup: () => void };
let dir: string;
beforeAll(() => {
  tmp = tmpDir('decodefile-');
  dir = tmp.dir;
});
afterAll(() => tmp.cleanup());

test('the addon decodes files, so that the two are compared', () => {
  expect(binding).not.toBeNull();
  const pool = new CodecPool(setup({ name: 'zstd' }), { workers: 1 });
  try {
    expect(pool.nativeDecode).toBe(true);
  } finally {
    void pool.close();
  }
});

describe.each([
  ['addon', true],
  ['worker', false],
])('%s', (_name, nativeDecode) => {
  describe.each<[string, CompressionSpec]>([
    ['zstd', { name: 'zstd', level: 3 }],
    ['none', { name: 'none' }],
  ])('compression %s', (_c, spec) => {
    let pool: CodecPool;
    const compression = compressionFor(spec);
    beforeAll(() => {
      pool = new CodecPool(setup(spec), { workers: 1, nativeDecode });
    });
    afterAll(() => pool.close());

    const write = (name: string, bytes: Buffer) => {
      const file = path.join(dir, `${nativeDecode}-${spec.name}-${name}`);
      fs.writeFileSync(file, bytes);
      return file;
    };

    test.each(blocks)('%s block: a whole file, a range of a larger one, and split over two files', async (name, plain) => {
      expect(pool.nativeDecode).toBe(nativeDecode);
      const id = blockId(keys.block, plain);
      const enc = encodeBlock(keys.block, compression, id, plain);
      const whole = write(`${name}-whole`, enc);
      expect((await pool.decodeFile(id, [{ file: whole }])).equals(plain)).toBe(true);
      const padded = write(`${name}-padded`, Buffer.concat([Buffer.alloc(1000, 9), enc, Buffer.alloc(500, 9)]));
      expect((await pool.decodeFile(id, [{ file: padded, offset: 1000, length: enc.length }])).equals(plain)).toBe(true);
      for (const cut of [1, 15, enc.length >> 1, enc.length - 1]) {
        const a = write(`${name}-a`, Buffer.concat([Buffer.alloc(3), enc.subarray(0, cut)]));
        const b = write(`${name}-b`, enc.subarray(cut));
        const got = await pool.decodeFile(id, [
          { file: a, offset: 3, length: cut },
          { file: b, offset: 0, length: enc.length - cut },
        ]);
        expect(got.equals(plain)).toBe(true);
      }
    });

    test.each(blocks)('%s block from memory, a view into memory that others read', async (_name, plain) => {
      const id = blockId(keys.block, plain);
      const enc = encodeBlock(keys.block, compression, id, plain);
      const around = Buffer.concat([Buffer.alloc(64, 1), enc, Buffer.alloc(64, 2)]);
      const before = Buffer.from(around);
      // shared: others read it too, so it must stay as it is (a worker would take it over).
      expect((await pool.decode(id, around.subarray(64, 64 + enc.length), { shared: true })).equals(plain)).toBe(true);
      expect(around.equals(before)).toBe(true);
      const bad = Buffer.from(enc);
      bad[bad.length >> 1] ^= 1;
      await expect(pool.decode(id, bad)).rejects.toMatchObject({ kind: 'corrupt' });
    });

    test('a block whose pieces lie on lost shards is rebuilt from k others (by the addon only)', async () => {
      const id = blockId(keys.block, noise);
      const enc = encodeBlock(keys.block, compression, id, noise);
      // A 4 + 2 code over the block with 100 bytes in front of it, as shard headers are.
      const k = 4,
        m = 2,
        at = 100,
        shardLen = Math.ceil((at + enc.length) / k);
      const data = Buffer.alloc(shardLen * k);
      enc.copy(data, at);
      const dataShards = Array.from({ length: k }, (_, i) => data.subarray(i * shardLen, (i + 1) * shardLen));
      const shards = [...dataShards, ...(await rsEncode(k, m, dataShards))];
      const files = shards.map((b, i) => write(`shard${i}`, Buffer.concat([Buffer.alloc(7), b])));
      // the block's pieces: [at, shardLen) of shard 0, all of 1 and 2, the start of 3
      const pieces: { shard: number; from: number; to: number }[] = [];
      for (let pos = at; pos < at + enc.length;) {
        const shard = Math.floor(pos / shardLen),
          from = pos - shard * shardLen,
          to = Math.min(shardLen, at + enc.length - shard * shardLen);
        pieces.push({ shard, from, to });
        pos += to - from;
      }
      expect(pieces.length).toBe(4);
      for (const lost of [[0], [1, 2], [3, 5], [0, 4]]) {
        const parts = pieces.map(({ shard, from, to }) => {
          if (!lost.includes(shard)) return { file: files[shard], offset: 7 + from, length: to - from };
          const sources = [0, 1, 2, 3, 4, 5]
            .filter((i) => !lost.includes(i))
            .slice(0, k)
            .map((i) => ({ shard: i, file: files[i], offset: 7 + from }));
          return { rebuild: { k, m, shard, sources }, length: to - from };
        });
        if (!nativeDecode) {
          // ShardReader.localParts gives rebuilt parts only to the addon
          await expect(pool.decodeFile(id, parts)).rejects.toThrow(/needs the native addon/);
          return;
        }
        expect((await pool.decodeFile(id, parts)).equals(noise)).toBe(true);
      }
      // a damaged source gives a block that does not decode
      const bad = Buffer.from(shards[4]);
      bad[pieces[1].from + 10] ^= 1;
      const badFile = write('shard4-bad', Buffer.concat([Buffer.alloc(7), bad]));
      const sources = [0, 2, 3]
        .map((i) => ({ shard: i, file: files[i], offset: 7 + pieces[1].from }))
        .concat([{ shard: 4, file: badFile, offset: 7 + pieces[1].from }]);
      const parts = pieces.map(({ shard, from, to }) =>
        shard === 1
          ? { rebuild: { k, m, shard, sources }, length: to - from }
          : { file: files[shard], offset: 7 + from, length: to - from },
      );
      await expect(pool.decodeFile(id, parts)).rejects.toBeInstanceOf(BlockCorruptError);
    });

    test('damage, a short range, another id and a wrong key are BlockCorruptErrors', async () => {
      const id = blockId(keys.block, text);
      const enc = encodeBlock(keys.block, compression, id, text);
      for (const pos of [0, 1, 2, 5, 20, enc.length >> 1, enc.length - 1]) {
        const bad = Buffer.from(enc);
        bad[pos] ^= 0x10;
        await expect(pool.decodeFile(id, [{ file: write('bad', bad) }])).rejects.toBeInstanceOf(BlockCorruptError);
        await expect(pool.decodeFile(id, [{ file: write('bad', bad) }])).rejects.toMatchObject({ kind: 'corrupt' });
      }
      const file = write('good', enc);
      await expect(pool.decodeFile(id, [{ file, offset: 0, length: enc.length + 10 }])).rejects.toMatchObject({ kind: 'corrupt' });
      await expect(pool.decodeFile(id, [{ file, offset: 0, length: 10 }])).rejects.toMatchObject({ kind: 'corrupt' });
      await expect(pool.decodeFile(blockId(keys.block, noise), [{ file }])).rejects.toThrow(/authentication failed/);
      const foreign = encodeBlock(deriveRepoKeys(Buffer.alloc(32, 8)).block, compression, id, text);
      await expect(pool.decodeFile(id, [{ file: write('foreign', foreign) }])).rejects.toThrow(/authentication failed/);
    });

    test("a corrupt block's error keeps its class, kind and block id across the boundary", async () => {
      const id = blockId(keys.block, text);
      const bad = encodeBlock(keys.block, compression, id, text);
      bad[bad.length >> 1] ^= 1;
      for (const run of [() => pool.decodeFile(id, [{ file: write('bad', bad) }]), () => pool.decode(id, Buffer.from(bad))]) {
        const e = await run().then(
          () => null,
          (x: unknown) => x,
        );
        expect(e).toBeInstanceOf(BlockCorruptError);
        expect(e).toMatchObject({ kind: 'corrupt', name: 'BlockCorruptError', blockId: id.toString('hex') });
        expect((e as Error).message).toMatch(/authentication failed/);
        expect(isKind(e, 'corrupt')).toBe(true);
        expect((e as { code?: unknown }).code).toBeUndefined(); // no errno below the FUSE edge
      }
    });

    test('a missing file or a directory is the fs error', async () => {
      const id = blockId(keys.block, text);
      await expect(pool.decodeFile(id, [{ file: path.join(dir, 'absent') }])).rejects.toMatchObject({ code: 'ENOENT' });
      await expect(pool.decodeFile(id, [{ file: path.join(dir, 'absent'), offset: 0, length: 100 }])).rejects.toMatchObject({
        code: 'ENOENT',
      });
      await expect(pool.decodeFile(id, [{ file: dir, offset: 0, length: 100 }])).rejects.toMatchObject({ code: 'EISDIR' });
    });
  });
});

test('under ISGFS_NO_NATIVE (a child process: the worker and its portable decoder) damage is a BlockCorruptError too', async () => {
  const root = path.resolve(__dirname, '../..');
  const run = async (noNative: boolean) => {
    const env = { ...process.env };
    if (noNative) env.ISGFS_NO_NATIVE = '1';
    else delete env.ISGFS_NO_NATIVE;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['-r', path.join(root, 'test/fuse/ts-register.js'), path.join(root, 'test/helpers/corrupt-decode.ts')],
      { env, cwd: root },
    );
    return stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  };
  const [fallback, native] = await Promise.all([run(true), run(false)]);
  expect(fallback.map((r) => r.nativeDecode)).toEqual([false, false]);
  expect(native.map((r) => r.nativeDecode)).toEqual([true, true]);
  for (const r of [...fallback, ...native]) {
    expect(r).toMatchObject({ isBlockCorruptError: true, kind: 'corrupt', name: 'BlockCorruptError' });
    expect(r.blockId).toMatch(/^[0-9a-f]{64}$/);
  }
});
