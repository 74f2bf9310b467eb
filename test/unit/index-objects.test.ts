/**
 * Index objects and the index rebuilt from pack trailers (src/snapshot/index-objects.ts), on
 * local backends and on s3rver.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { constants as C } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Backend } from '../../src/backend/backend';
import { BackendSpec, createBackend } from '../../src/backend/registry';
import { BlockLoc, Meta, PackRow } from '../../src/meta/meta';
import { deriveRepoKeys } from '../../src/repo/repository';
import { Session } from '../../src/repo/session';
import {
  decodeIndexPlain,
  encodeIndexPlain,
  FAN_IN,
  INDEX_PREFIX,
  IndexEntry,
  indexKey,
  publishIndex,
  readIndex,
  rebuildIndexFromTrailers,
} from '../../src/snapshot/index-objects';
import { S3rverProcess, S3RVER_KEY } from '../backend/s3rver';
import { smallRepo } from '../helpers/session';
import { prng, tmpDir } from '../helpers/tmp';

const me = { uid: 0, gid: 0 };
const keys = deriveRepoKeys(Buffer.alloc(32, 7));

function entries(n: number, seed: number): IndexEntry[] {
  const r = prng(seed);
  return Array.from({ length: n }, (_, i) => ({
    id: r.bytes(32),
    pack: r.bytes(16).toString('hex'),
    offset: i * 1000 + 2 ** 40,
    length: 1 + r.int(5_000_000),
  }));
}

function asMap(list: IndexEntry[]): Map<string, BlockLoc> {
  return new Map(list.map((e) => [e.id.toString('hex'), { pack: e.pack, offset: e.offset, length: e.length }]));
}

async function localBackends(dir: string, n: number): Promise<Backend[]> {
  const out: Backend[] = [];
  for (let i = 0; i < n; i++) {
    fs.mkdirSync(path.join(dir, `b${i}`), { recursive: true });
    out.push(await createBackend({ name: `b${i}`, type: 'local', tier: 'hot', path: path.join(dir, `b${i}`) }));
  }
  return out;
}

describe('index objects on local backends', () => {
  const t = tmpDir('isgfs-index-');
  let backends: Backend[];
  beforeAll(async () => {
    backends = await localBackends(t.dir, 3);
  });
  afterAll(async () => {
    await Promise.all(backends.map((b) => b.close()));
    t.cleanup();
  });

  test('the plaintext format round-trips and refuses damage', () => {
    const list = entries(5, 1);
    const plain = encodeIndexPlain(list);
    expect(plain.length).toBe(9 + 5 * 60);
    expect(plain.subarray(0, 5)).toEqual(Buffer.from('ISGI\x01'));
    expect(decodeIndexPlain(plain, 'x')).toEqual(list);
    expect(() => decodeIndexPlain(plain.subarray(0, plain.length - 1), 'x')).toThrow(/cannot hold 5 entries/);
  });

  test('published whole on every backend; read from any copy that verifies', async () => {
    const list = entries(1000, 2);
    const ids = await publishIndex(backends, list, keys.block);
    expect(ids).toHaveLength(1);
    for (const b of backends) expect(await b.stat(indexKey(ids[0]))).not.toBeNull();
    expect(await readIndex(backends, ids, keys.block)).toEqual(asMap(list));

    // A damaged copy on the first backend, none on the second: the third serves.
    const file = path.join(t.dir, 'b0', indexKey(ids[0]));
    const bytes = fs.readFileSync(file);
    bytes[40] ^= 1;
    fs.writeFileSync(file, bytes);
    await backends[1].delete(indexKey(ids[0]));
    expect(await readIndex(backends, ids, keys.block)).toEqual(asMap(list));

    // No good copy anywhere: refused, naming why per backend.
    await backends[2].delete(indexKey(ids[0]));
    await expect(readIndex(backends, ids, keys.block)).rejects.toThrow(/cannot be read: b0: .*authentication failed.*b1: absent/);
    // Another repository's keys do not open it either.
    await backends[1].put(indexKey(ids[0]), bytes);
    await expect(readIndex(backends, ids, deriveRepoKeys(Buffer.alloc(32, 8)).block)).rejects.toThrow(/cannot be read/);
  });

  test('the head list is merged when FAN_IN objects of one tier pile up; later entries win', async () => {
    let ids: Buffer[] = [];
    const all: IndexEntry[] = [];
    for (let i = 0; i < FAN_IN; i++) {
      const batch = entries(50, 100 + i);
      if (i === FAN_IN - 1) batch.push({ ...all[0], offset: 12345 }); // the first block moved
      all.push(...batch);
      ids = await publishIndex(backends, batch, keys.block, ids);
      expect(ids).toHaveLength(i === FAN_IN - 1 ? 1 : i + 1);
    }
    const expected = asMap(all);
    expect(expected.get(all[0].id.toString('hex'))!.offset).toBe(12345);
    expect(await readIndex(backends, ids, keys.block)).toEqual(expected);
    // Nothing new: the list stays.
    expect(await publishIndex(backends, [], keys.block, ids)).toEqual(ids);
  });
});

describe('the index rebuilt from pack trailers', () => {
  const t = tmpDir('isgfs-trailers-');
  let s: Session;
  let backends: Backend[] = [];
  const packsOf = (meta: Meta) => new Map([...meta.allPacks()].map(({ id, row }) => [id, row]));

  beforeAll(async () => {
    const specs: BackendSpec[] = Array.from({ length: 6 }, (_, i) => ({
      name: `d${i}`,
      type: 'local',
      tier: 'hot',
      path: path.join(t.dir, `d${i}`),
    }));
    s = await smallRepo(path.join(t.dir, 'repo'), { configure: (c) => (c.storage.backends = specs) });
    const r = prng(9);
    for (let i = 0; i < 6; i++) {
      const fh = await s.fs.create(`/f${i}`, 0o644, C.O_WRONLY, me);
      await s.fs.write(fh, 0, r.bytes(60_000 + i * 7000));
      await s.fs.release(fh);
    }
    await s.flush();
    backends = await Promise.all(specs.map((spec) => createBackend(spec)));
  });
  afterAll(async () => {
    await Promise.all(backends.map((b) => b.close()));
    await s.close();
    t.cleanup();
  });

  function metaLocs(): Map<string, BlockLoc> {
    const out = new Map<string, BlockLoc>();
    for (const { id } of s.meta.allBlocks()) {
      const loc = s.meta.getLoc(id);
      if (loc) out.set(id.toString('hex'), loc);
    }
    return out;
  }

  test('every location and pack row, as the writer recorded them', async () => {
    const rebuilt = await rebuildIndexFromTrailers(backends, s.repo.keys);
    const want = metaLocs();
    expect(want.size).toBeGreaterThan(20);
    expect(rebuilt.problems).toEqual([]);
    for (const [hex, loc] of want) expect(rebuilt.locs.get(hex)).toEqual(loc);
    const packs = packsOf(s.meta);
    expect(packs.size).toBeGreaterThan(1);
    const strip = (r: PackRow) => ({ ...r, created: 0 });
    expect(new Map([...rebuilt.packs].map(([id, r]) => [id, strip(r)]))).toEqual(new Map([...packs].map(([id, r]) => [id, strip(r)])));
  });

  test('with two backends gone: the same locations, the lost shards listed as not stored', async () => {
    const alive = backends.slice(2);
    const rebuilt = await rebuildIndexFromTrailers(alive, s.repo.keys);
    expect(rebuilt.problems).toEqual([]);
    expect(rebuilt.locs).toEqual(new Map([...rebuilt.locs].filter(([hex]) => metaLocs().has(hex))));
    for (const [hex, loc] of metaLocs()) expect(rebuilt.locs.get(hex)).toEqual(loc);
    for (const [id, row] of rebuilt.packs) {
      const was = s.meta.getPack(id)!;
      expect(row.stored).toEqual(was.stored.filter((i) => !['d0', 'd1'].includes(was.placement[i])));
      expect(row.placement.filter((_p, i) => row.stored.includes(i))).toEqual(was.placement.filter((_p, i) => row.stored.includes(i)));
    }
    // A third lost backend takes some packs below k = 4 shards: named, not guessed.
    const fewer = await rebuildIndexFromTrailers(backends.slice(3), s.repo.keys);
    expect(fewer.problems.some((p) => /3 readable shard\(s\) found, 4 needed/.test(p))).toBe(true);
  });
});

describe('index objects and trailers on s3rver', () => {
  let s3: S3rverProcess;
  const t = tmpDir('isgfs-index-s3-');
  beforeAll(async () => {
    s3 = await S3rverProcess.start('isgindex');
  });
  afterAll(async () => {
    await s3.close();
    t.cleanup();
  });

  test('publish, read, and rebuild from the trailers of packs stored on S3', async () => {
    const specs: BackendSpec[] = [0, 1, 2].map((i) => ({
      name: `s3${i}`,
      type: 's3',
      tier: 'warm',
      endpoint: s3.endpoint,
      bucket: 'isgindex',
      prefix: `b${i}/`,
      region: 'us-east-1',
      accessKeyId: S3RVER_KEY,
      secretAccessKey: S3RVER_KEY,
    }));
    const s = await smallRepo(path.join(t.dir, 'repo'), {
      configure: (c) => {
        c.storage.backends = specs;
        c.storage.ec = { name: 'rs-gf8', k: 2, m: 1 };
      },
    });
    const backends = await Promise.all(specs.map((spec) => createBackend(spec)));
    try {
      const fh = await s.fs.create('/f', 0o644, C.O_WRONLY, me);
      await s.fs.write(fh, 0, randomBytes(200_000));
      await s.fs.release(fh);
      await s.flush();
      const locs: IndexEntry[] = [];
      for (const { id } of s.meta.allBlocks()) {
        const loc = s.meta.getLoc(id);
        if (loc) locs.push({ id, ...loc });
      }
      const ids = await publishIndex(backends, locs, s.repo.keys.block);
      const keysListed: string[] = [];
      for await (const o of backends[1].list(INDEX_PREFIX)) keysListed.push(o.key);
      expect(keysListed).toEqual(expect.arrayContaining(ids.map(indexKey))); // and the session's own, from its flush
      const fromObjects = await readIndex(backends, ids, s.repo.keys.block);
      const fromTrailers = await rebuildIndexFromTrailers(backends, s.repo.keys);
      expect(fromObjects.size).toBe(locs.length);
      expect(fromTrailers.locs).toEqual(fromObjects);
    } finally {
      await Promise.all(backends.map((b) => b.close()));
      await s.close();
    }
  });
});
