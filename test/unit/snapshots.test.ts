/**
 * Snapshots (src/snapshot/snapshots.ts, the holds in src/meta/meta.ts, src/repo/snapshot-ops.ts):
 * the epoch hold rules on a real LMDB, then snapshots of a real session (no FUSE): blocks kept
 * through overwrites and sweeps, freed by rm, diff of a 100,000-file tree, connect after the data
 * directory is lost.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { constants as C } from 'node:fs';
import { Meta, SnapshotRecord } from '../../src/meta/meta';
import { Session } from '../../src/repo/session';
import { connectRepository } from '../../src/repo/connect';
import { createSnapshot, diffSnapshots, listSnapshots, removeSnapshot } from '../../src/repo/snapshot-ops';
import { resolveTreeRef, UnknownTreeError } from '../../src/snapshot/refs';
import { decodeSnapshotListPlain, encodeSnapshotListPlain } from '../../src/snapshot/snapshots';
import { decodeTreeObject, extentsOfEntry, readDirectory, TreeEntry } from '../../src/snapshot/tree';
import type { BackendSpec } from '../../src/backend/spec';
import { openMeta } from '../helpers/meta';
import { buildWideTree, smallRepo } from '../helpers/session';
import { prng, tmpDir } from '../helpers/tmp';

jest.setTimeout(300_000);

const me = { uid: 0, gid: 0 };

function id(n: number): Buffer {
  return Buffer.alloc(32, n);
}

function record(meta: Meta, name: string): SnapshotRecord {
  const r: SnapshotRecord = {
    id: name.padEnd(16, '0'),
    time: 1,
    root: id(200),
    files: 0,
    bytes: 0,
    headSeq: 1,
    epoch: meta.takeSnapEpoch(),
  };
  meta.putSnapshot(r);
  return r;
}

const gc = (meta: Meta) => meta.gcCandidates().map((b) => b[0]);

describe('snapshot holds (Meta)', () => {
  let tmp: { dir: string; cleanup: () => void };
  let meta: Meta;
  beforeEach(async () => {
    tmp = tmpDir('snapholds-');
    meta = await openMeta(tmp.dir);
    meta.initialise(0, 0);
  });
  afterEach(async () => {
    await meta.close();
    tmp.cleanup();
  });

  test('without snapshots a block at 0 references is a gc candidate at once', () => {
    meta.txn(() => {
      meta.addBlock(id(1), 10, 10);
      meta.unref(id(1));
    });
    expect(gc(meta)).toEqual([1]);
    expect(meta.heldBlocks()).toBe(0);
  });

  test('write, snapshot, overwrite: held; rm: freed', () => {
    meta.txn(() => {
      meta.addBlock(id(1), 10, 10);
      record(meta, 'aaaa');
      meta.addBlock(id(2), 10, 10); // born after the snapshot
      meta.unref(id(1));
      meta.unref(id(2));
    });
    expect(gc(meta)).toEqual([2]);
    expect(meta.heldBlocks()).toBe(1);
    expect(meta.getBlock(id(1))).toMatchObject({ refs: 0, birth: 0, death: 1 });
    const freed = meta.txn(() => meta.removeSnapshot('aaaa000000000000'));
    expect(freed).toBe(1);
    expect(gc(meta).sort()).toEqual([1, 2]);
    expect(meta.heldBlocks()).toBe(0);
    expect(meta.getBlock(id(1))!.death).toBeUndefined();
  });

  test('two snapshots, the newer removed first: what the older names stays held', () => {
    meta.txn(() => {
      meta.addBlock(id(1), 10, 10); // in S1 and S2
      record(meta, 'aaaa');
      meta.addBlock(id(2), 10, 10); // in S2 only
      record(meta, 'bbbb');
      meta.unref(id(1));
      meta.unref(id(2));
    });
    expect(gc(meta)).toEqual([]);
    expect(meta.txn(() => meta.removeSnapshot('bbbb000000000000'))).toBe(1);
    expect(gc(meta)).toEqual([2]);
    expect(meta.txn(() => meta.removeSnapshot('aaaa000000000000'))).toBe(1);
    expect(gc(meta).sort()).toEqual([1, 2]);
  });

  test('two snapshots, the older removed first: the newer keeps both', () => {
    meta.txn(() => {
      meta.addBlock(id(1), 10, 10);
      record(meta, 'aaaa');
      meta.unref(id(1)); // died between S1 and S2: only S1 names it
      meta.addBlock(id(2), 10, 10);
      meta.addBlock(id(3), 10, 10);
      record(meta, 'bbbb');
      meta.unref(id(2)); // in S2 only
    });
    expect(meta.getBlock(id(1))).toMatchObject({ death: 1 });
    expect(meta.txn(() => meta.removeSnapshot('aaaa000000000000'))).toBe(1);
    expect(gc(meta)).toEqual([1]);
    meta.txn(() => meta.unref(id(3)));
    expect(gc(meta)).toEqual([1]); // S2 holds 2 and 3
    expect(meta.txn(() => meta.removeSnapshot('bbbb000000000000'))).toBe(2);
    expect(gc(meta).sort()).toEqual([1, 2, 3]);
  });

  test('a held block referenced again (dedup) is live: rm of the snapshot does not free it', () => {
    meta.txn(() => {
      meta.addBlock(id(1), 10, 10);
      record(meta, 'aaaa');
      meta.unref(id(1));
    });
    expect(meta.heldBlocks()).toBe(1);
    meta.txn(() => expect(meta.ref(id(1))).toBe(true));
    expect(meta.heldBlocks()).toBe(0);
    expect(meta.getBlock(id(1))).toMatchObject({ refs: 1 });
    expect(meta.getBlock(id(1))!.death).toBeUndefined();
    expect(meta.txn(() => meta.removeSnapshot('aaaa000000000000'))).toBe(0);
    expect(gc(meta)).toEqual([]);
    meta.txn(() => meta.unref(id(1)));
    expect(gc(meta)).toEqual([1]);
  });

  test('records are sealed and survive a reopen; the hold epoch too', async () => {
    meta.txn(() => {
      meta.addBlock(id(1), 10, 10);
      meta.putSnapshot({ ...record(meta, 'cccc'), tag: 'before the upgrade' });
    });
    await meta.close();
    const raw = fs.readFileSync(path.join(tmp.dir, 'data.mdb'));
    expect(raw.includes(Buffer.from('before the upgrade'))).toBe(false);
    meta = await openMeta(tmp.dir);
    expect(meta.allSnapshots().map((s) => s.tag)).toEqual(['before the upgrade']);
    meta.txn(() => meta.unref(id(1)));
    expect(meta.heldBlocks()).toBe(1);
  });

  test('snapshot ids resolve exactly or by a unique prefix; ambiguous and unknown ones are refused', () => {
    meta.txn(() => {
      record(meta, 'abcd1');
      record(meta, 'abcd2');
      record(meta, 'ffff');
    });
    expect(resolveTreeRef(meta, 'ffff').label).toBe('ffff000000000000');
    expect(resolveTreeRef(meta, 'abcd1').label).toBe('abcd100000000000');
    expect(() => resolveTreeRef(meta, 'abcd')).toThrow(/ambiguous/);
    expect(() => resolveTreeRef(meta, '1234')).toThrow(UnknownTreeError);
    expect(() => resolveTreeRef(meta, 'abc')).toThrow(/4 to 16 hex/);
    expect(() => resolveTreeRef(meta, 'not-an-id')).toThrow(UnknownTreeError);
  });

  test('the snapshot list plaintext round-trips and refuses damage', () => {
    const list: SnapshotRecord[] = [
      { id: '0123456789abcdef', time: 5, tag: 'x', root: id(9), files: 3, bytes: 7, headSeq: 2, epoch: 0 },
      { id: 'fedcba9876543210', time: 6, root: id(8), files: 0, bytes: 0, headSeq: 3, epoch: 1 },
    ];
    expect(decodeSnapshotListPlain(encodeSnapshotListPlain(list), 'test')).toEqual(list);
    const bad = encodeSnapshotListPlain(list);
    bad[4] = 9;
    expect(() => decodeSnapshotListPlain(bad, 'test')).toThrow(/format 9/);
    expect(() => decodeSnapshotListPlain(Buffer.from('ISGS\x01[{"id":"zz"}]'), 'test')).toThrow(/malformed/);
  });
});

async function writeFile(s: Session, p: string, data: Buffer): Promise<void> {
  const fh = await s.fs.create(p, 0o644, C.O_RDWR, me);
  if (data.length) await s.fs.write(fh, 0, data);
  await s.fs.release(fh);
}

/** A file's bytes as the tree `root` names them, read through the block store. */
async function readThroughTree(s: Session, root: Buffer, p: string): Promise<Buffer> {
  const fetch = (oid: Buffer) => s.store.readPlain(oid);
  const top = decodeTreeObject(await fetch(root));
  let entry: TreeEntry = (top as { entries: TreeEntry[] }).entries[0];
  for (const name of p.split('/').filter(Boolean)) {
    const list = await readDirectory(entry.dir!, fetch);
    entry = list.find((e) => e.name.toString() === name)!;
    if (!entry) throw new Error(`${p}: no ${name}`);
  }
  const out = Buffer.alloc(entry.size);
  for (const x of await extentsOfEntry(entry, fetch)) (await s.store.readPlain(x.id)).copy(out, x.offset);
  return out;
}

describe('snapshots of a session', () => {
  let tmp: { dir: string; cleanup: () => void };
  beforeEach(() => {
    tmp = tmpDir('snapshots-');
  });
  afterEach(() => tmp.cleanup());

  test('an overwritten file reads its old contents through the snapshot after sweeps; rm frees it', async () => {
    const s = await smallRepo(path.join(tmp.dir, 'repo'));
    try {
      const old = prng(1).bytes(100_000);
      await writeFile(s, '/f', old);
      s.fs.mkdir('/d', 0o755, me);
      await writeFile(s, '/d/g', Buffer.from('hello'));
      const snap = await createSnapshot(s, 'first');
      expect(snap).toMatchObject({ files: 2, bytes: 100_005, tag: 'first' });
      expect(snap.id).toMatch(/^[0-9a-f]{16}$/);
      expect(snap.headSeq).toBe(s.publisher!.publishedHead()!.seq);
      const blocksBefore = [...s.meta.allBlocks()].length;

      await writeFile(s, '/f', prng(2).bytes(100_000)); // every old chunk loses its reference
      await s.flush();
      await s.store.sweep();
      await s.cacheDrop(); // and the old blocks are read back from the packs
      expect(s.meta.heldBlocks()).toBeGreaterThan(0);
      const root = Buffer.from(snap.root, 'hex');
      expect((await readThroughTree(s, root, '/f')).equals(old)).toBe(true);

      const d = await diffSnapshots(s, snap.id, 'live');
      expect(d.added).toEqual([]);
      expect(d.removed).toEqual([]);
      expect(d.modified.map((m) => m.path)).toEqual(['/f']);
      expect(d.modified[0].what).toContain('content');

      const r = await removeSnapshot(s, snap.id.slice(0, 6));
      expect(r.freed).toBeGreaterThan(0);
      expect(s.meta.heldBlocks()).toBe(0);
      await s.store.sweep();
      expect([...s.meta.allBlocks()].length).toBeLessThan(blocksBefore + 10);
      expect(listSnapshots(s)).toEqual([]);
      await expect(removeSnapshot(s, snap.id)).rejects.toThrow(/no snapshot/);
    } finally {
      await s.close();
    }
  });

  test('diff of a 100,000-file tree with 10 changes reads only the objects on the changed paths', async () => {
    const s = await smallRepo(path.join(tmp.dir, 'repo'));
    try {
      await buildWideTree(s);
      const a = await createSnapshot(s);
      expect(a.files).toBe(100_000);
      const objectsA = new Set([...s.meta.publishReferences()].map((b) => b.toString('hex')));
      const changed = Array.from({ length: 10 }, (_, n) => `/d${n}/e${(n * 3) % 10}/f${(n * 97) % 1000}`);
      for (const p of changed) await writeFile(s, p, Buffer.from(`changed ${p}`));
      const b = await createSnapshot(s, 'after');
      expect(b.files).toBe(100_000);
      expect(b.bytes).toBe(changed.reduce((n, p) => n + `changed ${p}`.length, 0));
      const objectsB = new Set([...s.meta.publishReferences()].map((x) => x.toString('hex')));
      // The objects on the changed paths: those one tree has and the other has not.
      const onChangedPaths = [...objectsA].filter((x) => !objectsB.has(x)).length + [...objectsB].filter((x) => !objectsA.has(x)).length;

      const d = await diffSnapshots(s, a.id, b.id);
      expect(d.modified.map((m) => m.path).sort()).toEqual([...changed].sort());
      for (const m of d.modified) expect(m.what).toEqual(['content', 'times']);
      expect(d.added).toEqual([]);
      expect(d.removed).toEqual([]);
      expect(d.objectsRead).toBeLessThanOrEqual(onChangedPaths);
      expect(d.objectsRead).toBeGreaterThanOrEqual(2 + 10);
      console.log(
        `diff of 100,000 files, 10 changed: ${d.objectsRead} objects read (${onChangedPaths} differ, ${objectsB.size} in the tree)`,
      );

      // Reversed: the same paths; an unknown id is refused.
      const back = await diffSnapshots(s, b.id, a.id);
      expect(back.modified.map((m) => m.path).sort()).toEqual([...changed].sort());
      await expect(diffSnapshots(s, a.id, 'beefbeef')).rejects.toThrow(UnknownTreeError);
    } finally {
      await s.close();
    }
  });

  test('added, removed and attribute changes are named', async () => {
    const s = await smallRepo(path.join(tmp.dir, 'repo'));
    try {
      s.fs.mkdir('/keep', 0o755, me);
      s.fs.mkdir('/gone', 0o755, me);
      await writeFile(s, '/gone/x', Buffer.from('x'));
      await writeFile(s, '/keep/m', Buffer.from('m'));
      await writeFile(s, '/keep/x', Buffer.from('x'));
      const a = await createSnapshot(s);
      s.fs.unlink('/gone/x');
      s.fs.rmdir('/gone');
      await writeFile(s, '/keep/new', Buffer.from('new'));
      s.fs.chmod('/keep/m', 0o600);
      s.fs.setxattr('/keep/x', 'user.k', Buffer.from('v'), 0);
      const d = await diffSnapshots(s, a.id, 'live');
      expect(d.added).toEqual(['/keep/new']);
      expect(d.removed).toEqual(['/gone/']);
      const byPath = new Map(d.modified.map((m) => [m.path, m.what]));
      expect(byPath.get('/keep/m')).toEqual(['mode', 'times']);
      expect(byPath.get('/keep/x')).toEqual(['times', 'xattrs']);
      expect(byPath.get('/keep/')).toEqual(['times']);
    } finally {
      await s.close();
    }
  });

  test('after the data directory is lost, connect lists the same snapshots and their trees read back', async () => {
    const specs: BackendSpec[] = Array.from({ length: 6 }, (_, i) => ({
      name: `d${i}`,
      type: 'local',
      tier: 'hot',
      path: path.join(tmp.dir, `b${i}`),
    }));
    const dataDir = path.join(tmp.dir, 'repo');
    const s = await smallRepo(dataDir, { password: 'pw', configure: (c) => (c.storage.backends = specs) });
    const old = prng(5).bytes(50_000);
    let before;
    try {
      await writeFile(s, '/f', old);
      await createSnapshot(s, 'one');
      await writeFile(s, '/f', prng(6).bytes(50_000));
      await createSnapshot(s, 'two');
      await writeFile(s, '/g', Buffer.from('after both'));
      await s.flush();
      before = listSnapshots(s);
    } finally {
      await s.close();
    }
    fs.rmSync(dataDir, { recursive: true });
    const again = path.join(tmp.dir, 'again');
    const r = await connectRepository({ dataDir: again, specs, password: 'pw' });
    expect(r.snapshots).toBe(2);
    const t = await Session.open(again, { password: 'pw' });
    try {
      expect(listSnapshots(t)).toEqual(before);
      const first = before.find((x) => x.tag === 'one')!;
      expect((await readThroughTree(t, Buffer.from(first.root, 'hex'), '/f')).equals(old)).toBe(true);
      const d = await diffSnapshots(t, first.id, 'latest');
      expect(d.added).toEqual(['/g']);
      expect(d.modified.map((m) => m.path)).toEqual(['/', '/f']); // / gained an entry: its times
      // The next snapshot continues the epochs and the list.
      const third = await createSnapshot(t, 'three');
      expect(listSnapshots(t).map((x) => x.tag)).toEqual(['one', 'two', 'three']);
      expect(third.headSeq).toBe(t.publisher!.publishedHead()!.seq);
    } finally {
      await t.close();
    }
  });
});
