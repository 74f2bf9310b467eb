/** Packs, shards and the loss of backends, at the session level (no FUSE). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { constants as C } from 'node:fs';
import { BlockCorruptError } from '../../src/block/codec';
import { CodecPool } from '../../src/block/pool';
import { Session } from '../../src/repo/session';
import {
  buildPack,
  decodeShardHeader,
  encodeShard,
  layoutFor,
  newPackId,
  piecesOf,
  readPackTrailer,
  SEGMENT,
  splitPack,
} from '../../src/pack/format';
import { repoStatus } from '../../src/repo/status';
import { checkRepository } from '../../src/repair/check';
import { prng, tmpDir } from '../helpers/tmp';
import { smallRepo } from '../helpers/session';

const me = { uid: 0, gid: 0 };

describe('pack and shard formats', () => {
  const key = Buffer.alloc(32, 5);
  test('a pack describes itself; a tampered trailer is rejected', () => {
    const r = prng(1);
    const blocks = [1000, 1, 70_000].map((n, i) => ({ id: Buffer.alloc(32, i + 1), encoded: r.bytes(n) }));
    const id = newPackId();
    const { bytes, entries } = buildPack(key, id, blocks);
    expect(readPackTrailer(key, id, bytes)).toEqual(entries);
    expect(entries.map((e) => e.offset)).toEqual([0, 1000, 1001]);
    const bad = Buffer.from(bytes);
    bad[bad.length - 20] ^= 1;
    expect(() => readPackTrailer(key, id, bad)).toThrow(/does not authenticate/);
    expect(() => readPackTrailer(key, newPackId(), bytes)).toThrow(/does not authenticate/);
  });

  test('shard headers carry segment checksums and reject damage', () => {
    const pack = prng(2).bytes(300_000);
    const layout = layoutFor(pack.length, 4, 2);
    const shards = splitPack(pack, layout);
    expect(Buffer.concat(shards).subarray(0, pack.length).equals(pack)).toBe(true);
    const obj = encodeShard('ab'.repeat(16), 1, layout, shards[1]);
    const h = decodeShardHeader(obj);
    expect(h).toMatchObject({ k: 4, m: 2, index: 1, shardSize: layout.shardSize, packLength: pack.length, packId: 'ab'.repeat(16) });
    expect(h.checksums.length).toBe(Math.ceil(layout.shardSize / SEGMENT));
    const bad = Buffer.from(obj);
    bad[70] ^= 1;
    expect(() => decodeShardHeader(bad)).toThrow(/checksum/);
  });

  test('piecesOf maps a pack range onto data shards', () => {
    expect(piecesOf(90, 30, 100)).toEqual([
      { shard: 0, from: 90, to: 100, at: 0 },
      { shard: 1, from: 0, to: 20, at: 10 },
    ]);
    expect(piecesOf(250, 10, 100)).toEqual([{ shard: 2, from: 50, to: 60, at: 0 }]);
  });
});

describe('erasure-coded packs over six local backends', () => {
  const t = tmpDir();
  const repo = path.join(t.dir, 'repo');
  let s: Session;
  const files = new Map<string, Buffer>();

  async function writeFile(name: string, data: Buffer) {
    const fh = await s.fs.create(name, 0o644, C.O_WRONLY, me);
    await s.fs.write(fh, 0, data);
    await s.fs.release(fh);
    files.set(name, data);
  }
  async function readAll() {
    for (const [name, data] of files) {
      const fh = await s.fs.open(name, C.O_RDONLY);
      const got = await s.fs.read(fh, 0, data.length + 1);
      await s.fs.release(fh);
      if (!got.equals(data)) throw new Error(`${name} differs`);
    }
  }
  const backendDir = (i: number) => path.join(repo, 'backends', `local${i}`);

  beforeAll(async () => {
    s = await smallRepo(repo);
    const r = prng(77);
    for (let i = 0; i < 12; i++) await writeFile(`/f${i}`, r.bytes(20_000 + r.int(200_000)));
    await writeFile('/text', Buffer.from('some compressible text '.repeat(20_000)));
  });
  afterAll(async () => {
    await s.close();
    t.cleanup();
  });

  test('flush stores everything as k + m shards; cache drop empties the local tier; reads come back from shards', async () => {
    expect(s.packer.pending().pendingBlocks).toBeGreaterThan(0);
    await s.flush();
    expect(s.packer.pending()).toEqual({ pendingBlocks: 0, pendingBytes: 0 });
    const st = await repoStatus(repo, s.meta);
    expect(st.packs).toBeGreaterThan(3);
    expect(st.pendingUploadBytes).toBe(0);
    expect(st.dataShards).toBe(4);
    expect(st.parityShards).toBe(2);
    expect(st.backends).toHaveLength(6);
    for (const b of st.backends) {
      expect(b).toMatchObject({ type: 'local', tier: 'hot', healthy: true, missingShards: 0 });
      expect(b.shards).toBe(st.packs);
      expect(b.path).toBe(backendDir(Number(b.name.slice(5))));
    }
    expect(await s.cacheDrop()).toBeGreaterThan(0);
    expect(s.store.localBytes).toBe(0);
    expect(fs.readdirSync(path.join(repo, 'cache/blocks')).flatMap((d) => fs.readdirSync(path.join(repo, 'cache/blocks', d)))).toEqual([]);
    // Every block is read and decoded in one step from the shard file(s) that hold it.
    const decodes = jest.spyOn(CodecPool.prototype, 'decodeFile');
    try {
      await readAll();
      const fromShards = decodes.mock.calls.filter(([, parts]) =>
        parts.every((p) => 'file' in p && p.file.startsWith(path.join(repo, 'backends'))),
      );
      const decoded = new Set(fromShards.map(([id]) => id.toString('hex')));
      for (const name of files.keys()) {
        for (const e of s.meta.extentsOf((await s.fs.getattr(name)).ino)) expect(decoded.has(e.id.toString('hex'))).toBe(true);
      }
      expect(fromShards.some(([, parts]) => parts.length === 2)).toBe(true); // a block across two data shards
    } finally {
      decodes.mockRestore();
    }
    // Blocks fetched from hot backends are not copied into the local tier (see the next test).
    expect(s.store.localBytes).toBe(0);
  });

  test('a block fetched from a warm backend is kept in the local tier; one from hot backends only is not', async () => {
    const dir = path.join(t.dir, 'tiers');
    const w = await smallRepo(dir, {
      configure: (c) => {
        c.storage.backends[1].tier = 'warm';
      },
    }); // local1
    try {
      const r = prng(78);
      const data = r.bytes(600_000);
      const fh = await w.fs.create('/f', 0o644, C.O_WRONLY, me);
      await w.fs.write(fh, 0, data);
      await w.fs.release(fh);
      await w.flush();
      await w.cacheDrop();
      const rfh = await w.fs.open('/f', C.O_RDONLY);
      expect((await w.fs.read(rfh, 0, data.length)).equals(data)).toBe(true);
      await w.fs.release(rfh);
      await w.store.keptAll();
      let warm = 0;
      let hot = 0;
      for (const e of w.meta.extentsOf((await w.fs.getattr('/f')).ino)) {
        const loc = w.meta.getLoc(e.id)!;
        const pack = w.meta.getPack(loc.pack)!;
        const onWarm = piecesOf(loc.offset, loc.length, pack.shardSize).some((p) => pack.placement[p.shard] === 'local1');
        if (onWarm) warm++;
        else hot++;
        expect(fs.existsSync(w.store.blockPath(e.id.toString('hex')))).toBe(onWarm);
      }
      expect(warm).toBeGreaterThan(0);
      expect(hot).toBeGreaterThan(0);
    } finally {
      await w.close();
    }
  });

  test('the local tier survives crashes and damage: half-written and damaged block files are replaced or bypassed', async () => {
    const dir = path.join(t.dir, 'crashes');
    let w = await smallRepo(dir, {
      configure: (c) => {
        for (const b of c.storage.backends) b.tier = 'warm';
      },
    });
    const data = prng(79).bytes(200_000);
    const fileIds = async () => w.meta.extentsOf((await w.fs.getattr('/f')).ino).map((e) => e.id);
    const readBack = async () => {
      const fh = await w.fs.open('/f', C.O_RDONLY);
      try {
        return await w.fs.read(fh, 0, data.length + 1);
      } finally {
        await w.fs.release(fh);
      }
    };
    try {
      const fh = await w.fs.create('/f', 0o644, C.O_WRONLY, me);
      await w.fs.write(fh, 0, data);
      await w.fs.release(fh);
      await w.flush();
      const ids = await fileIds();
      expect(ids.length).toBeGreaterThan(4);
      // A write killed half-way left its temporary file: a writable open removes it.
      const tmp = path.join(dir, 'cache/blocks/tmp');
      fs.mkdirSync(tmp, { recursive: true });
      fs.writeFileSync(path.join(tmp, 'half-written'), 'x');
      // Damaged local copies of blocks that are safe in packs: the backends serve them.
      for (const id of ids.slice(0, 2)) {
        const f = w.store.blockPath(id.toString('hex'));
        const b = fs.readFileSync(f);
        b[b.length >> 1] ^= 1;
        fs.writeFileSync(f, b);
      }
      await w.close();
      w = await Session.open(dir);
      expect(fs.existsSync(path.join(tmp, 'half-written'))).toBe(false);
      expect((await readBack()).equals(data)).toBe(true);
      // Evicted blocks, each with a truncated file where it would be kept (an older isgfs killed
      // while keeping it): fetching them must write them whole.
      await w.cacheDrop();
      for (const id of ids) {
        const f = w.store.blockPath(id.toString('hex'));
        fs.mkdirSync(path.dirname(f), { recursive: true });
        fs.writeFileSync(f, Buffer.alloc(10));
      }
      expect((await readBack()).equals(data)).toBe(true);
      await w.store.keptAll();
      for (const id of ids) expect(fs.statSync(w.store.blockPath(id.toString('hex'))).size).toBe(w.meta.getBlock(id)!.stored);
      await w.close();
      w = await Session.open(dir); // an empty memory LRU: the reads below come from the kept files
      expect(w.store.localBytes).toBeGreaterThan(0);
      expect((await readBack()).equals(data)).toBe(true);
      expect((await checkRepository(w.meta, w.store)).problems).toEqual([]);
    } finally {
      await w.close();
    }
  });

  test('any 2 of the 6 backends lost: every combination reads back bit for bit, status names the missing shards', async () => {
    // Once a lost backend counts as down, the pieces on it are rebuilt in the addon's decode.
    const decodes = jest.spyOn(CodecPool.prototype, 'decodeFile');
    for (let a = 0; a < 6; a++) {
      for (let b = a + 1; b < 6; b++) {
        fs.renameSync(backendDir(a), backendDir(a) + '.away');
        fs.renameSync(backendDir(b), backendDir(b) + '.away');
        try {
          await s.cacheDrop();
          await readAll();
          if (a === 0 && b === 5) {
            const st = await repoStatus(repo, s.meta);
            expect(st.missingShards).toBe(2 * st.packs);
            expect(st.backends.filter((x) => x.missingShards > 0).map((x) => x.name)).toEqual(['local0', 'local5']);
          }
        } finally {
          fs.renameSync(backendDir(a) + '.away', backendDir(a));
          fs.renameSync(backendDir(b) + '.away', backendDir(b));
        }
      }
    }
    const rebuilt = decodes.mock.calls
      .map(([, parts], i) => ({ parts, result: decodes.mock.results[i].value as Promise<Buffer> }))
      .filter(({ parts }) => parts.some((p) => 'rebuild' in p));
    decodes.mockRestore();
    if (!s.pool.nativeDecode) {
      expect(rebuilt).toEqual([]); // only the addon rebuilds pieces (ISGFS_NO_NATIVE)
      return;
    }
    expect(rebuilt.length).toBeGreaterThan(0);
    expect((await Promise.allSettled(rebuilt.map((r) => r.result))).filter((r) => r.status === 'fulfilled').length).toBeGreaterThan(0);
  });

  test('an encoding started before a sweep that frees its block is redone: the committed block is readable', async () => {
    const data = prng(123).bytes(800); // one chunk
    await writeFile('/race', data);
    files.delete('/race');
    await s.fs.flushAll();
    await s.flush();
    await s.cacheDrop(); // the block is on the backends only: its row stays, its file goes
    s.fs.unlink('/race'); // refcount 0: the next sweep frees it
    const sab = new SharedArrayBuffer(data.length);
    Buffer.from(sab).set(data);
    const chunk = { sab, start: 0, end: data.length };
    const early = s.store.encode(chunk);
    const { id, wrote } = await early.result;
    expect(wrote).toBe(true); // the file was gone, so the early encoding wrote it again
    expect(await s.store.sweep()).toBeGreaterThan(0); // and the sweep deleted it with the row
    await s.store.ingest([{ ...chunk, encoding: early }], (_ids, admit) => admit(0));
    expect(fs.existsSync(s.store.blockPath(id.toString('hex')))).toBe(true);
    expect((await s.store.readPlain(id)).equals(data)).toBe(true);
    s.meta.txn(() => s.meta.unref(id));
    await s.store.sweep();
  });

  test('three backends lost is one too many: a clear error, and everything is back once they return', async () => {
    for (const i of [1, 2, 3]) fs.renameSync(backendDir(i), backendDir(i) + '.away');
    try {
      await s.cacheDrop();
      await expect(readAll()).rejects.toThrow(/only \d of the 4 shards needed could be read/);
    } finally {
      for (const i of [1, 2, 3]) fs.renameSync(backendDir(i) + '.away', backendDir(i));
    }
    await readAll();
  });

  test('flipped bytes inside shards are detected and the data is served from the other shards', async () => {
    const r = prng(5);
    let flipped = 0;
    for (let i = 0; i < 6; i++) {
      const shardFiles = (function walk(d: string): string[] {
        return fs
          .readdirSync(d, { withFileTypes: true })
          .flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]));
      })(backendDir(i));
      // two backends at most, so every position keeps k good shards
      if (i > 1) continue;
      for (const f of shardFiles) {
        const b = fs.readFileSync(f);
        for (let n = 0; n < 20; n++) b[200 + r.int(b.length - 200)] ^= 0xff;
        fs.writeFileSync(f, b);
        flipped++;
      }
    }
    expect(flipped).toBeGreaterThan(0);
    await s.cacheDrop();
    const decodes = jest.spyOn(CodecPool.prototype, 'decodeFile');
    try {
      await readAll();
      // The damage was found by decoding straight from the shards, then read around.
      const results = await Promise.allSettled(decodes.mock.results.map((r) => r.value as Promise<Buffer>));
      expect(results.some((r) => r.status === 'rejected' && r.reason instanceof BlockCorruptError && r.reason.kind === 'corrupt')).toBe(
        true,
      );
    } finally {
      decodes.mockRestore();
    }
    expect((await checkRepository(s.meta, s.store)).problems).toEqual([]);
  });
});

describe('a backend down while packing', () => {
  const t = tmpDir();
  const repo = path.join(t.dir, 'repo');
  let s: Session;
  afterAll(async () => {
    await s.close();
    t.cleanup();
  });

  test('with k shards stored the pack commits; the missing ones are repaired; fewer than k: flush fails clearly, then succeeds', async () => {
    s = await smallRepo(repo);
    const dir = (i: number) => path.join(repo, 'backends', `local${i}`);
    const data = prng(9).bytes(400_000);
    const fh = await s.fs.create('/x', 0o644, C.O_WRONLY, me);
    await s.fs.write(fh, 0, data);
    await s.fs.release(fh);
    // A file where a directory should be: puts fail, reads fail.
    fs.renameSync(dir(4), dir(4) + '.away');
    fs.writeFileSync(dir(4), 'not a directory');
    await s.fs.flushAll();
    await s.packer.drain();
    const packs = [...s.meta.allPacks()];
    expect(packs.length).toBeGreaterThan(0);
    expect(packs.every(({ row }) => row.stored.length === 5)).toBe(true);
    fs.rmSync(dir(4));
    fs.renameSync(dir(4) + '.away', dir(4));
    expect(await s.repairMissingShards()).toBe(packs.length);
    expect([...s.meta.allPacks()].every(({ row }) => row.stored.length === 6)).toBe(true);
    expect((await repoStatus(repo, s.meta)).missingShards).toBe(0);

    const more = prng(10).bytes(300_000);
    const fh2 = await s.fs.create('/y', 0o644, C.O_WRONLY, me);
    await s.fs.write(fh2, 0, more);
    await s.fs.release(fh2);
    for (const i of [0, 1, 2]) {
      fs.renameSync(dir(i), dir(i) + '.away');
      fs.writeFileSync(dir(i), '');
    }
    await expect(s.flush(undefined, 2000)).rejects.toThrow(/shards stored \(need 4\)/);
    for (const i of [0, 1, 2]) {
      fs.rmSync(dir(i));
      fs.renameSync(dir(i) + '.away', dir(i));
    }
    await s.flush();
    await s.cacheDrop();
    const rd = await s.fs.open('/y', C.O_RDONLY);
    expect((await s.fs.read(rd, 0, more.length)).equals(more)).toBe(true);
    await s.fs.release(rd);
  });
});
