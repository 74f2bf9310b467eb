/**
 * Publishing the namespace (src/snapshot/publish.ts) and rebuilding it from the published objects
 * alone (restoreTree), at the session level (no FUSE).
 */
import * as path from 'node:path';
import { constants as C } from 'node:fs';
import { ObjectKind } from '../../src/block/codec';
import { findHeads } from '../../src/head/head';
import { Meta, ROOT_INO } from '../../src/meta/meta';
import { Session } from '../../src/repo/session';
import { formatStatus, repoStatus } from '../../src/repo/status';
import { checkRepository } from '../../src/repair/check';
import {
  encodeChunks,
  encodeDirectory,
  encodeLeaf,
  entryOfInode,
  EntryType,
  restoreTree,
  TreeEntry,
  treeSplitKey,
} from '../../src/snapshot/tree';
import { blockId } from '../../src/block/codec';
import { readIndex } from '../../src/snapshot/index-objects';
import { openMeta } from '../helpers/meta';
import { buildWideTree, smallRepo } from '../helpers/session';
import { prng, tmpDir } from '../helpers/tmp';

const me = { uid: 0, gid: 0 };

/** An object's plaintext read from its pack on the backends (the local tier dropped first), kind checked. */
function packFetch(s: Session) {
  let reads = 0;
  const fetch = async (id: Buffer, kind: ObjectKind): Promise<Buffer> => {
    reads++;
    const loc = s.meta.getLoc(id);
    const pack = loc && s.meta.getPack(loc.pack);
    if (!loc || !pack) throw new Error(`object ${id.toString('hex').slice(0, 16)} is in no pack`);
    const fetched = await s.reader.readBlock(loc, pack);
    return s.pool.decode(id, fetched.encoded, { kind, shared: true });
  };
  return { fetch, reads: () => reads };
}

async function writeFile(s: Session, p: string, data: Buffer): Promise<void> {
  const fh = await s.fs.create(p, 0o644, C.O_RDWR, me);
  if (data.length) await s.fs.write(fh, 0, data);
  await s.fs.release(fh);
}

/** Everything a tree says of each path, from a database: attributes, names, chunk maps, xattrs. */
function snapshotOf(meta: Meta): Map<string, unknown> {
  const out = new Map<string, unknown>();
  const walk = (ino: number, at: string) => {
    const i = meta.getInode(ino)!;
    const xattrs = meta.xattrsOf(ino).sort((a, b) => (a.name < b.name ? -1 : 1));
    out.set(at, {
      ...i,
      atimeNs: String(i.atimeNs),
      mtimeNs: String(i.mtimeNs),
      ctimeNs: String(i.ctimeNs),
      xattrs: xattrs.map((x) => `${x.name}=${x.value.toString('hex')}`),
      extents: meta.extentsOf(ino).map((e) => `${e.offset}+${e.length}:${e.id.toString('hex')}:${e.forced}`),
    });
    if ((i.mode & C.S_IFMT) !== C.S_IFDIR) return;
    for (const e of meta.entries(ino)) walk(e.ino, `${at}/${e.name}`);
  };
  walk(ROOT_INO, '');
  return out;
}

/** References to each data block held by the chunk maps. */
function dataRefs(meta: Meta): Map<string, number> {
  const refs = new Map<string, number>();
  for (const { extent } of meta.allExtents()) refs.set(extent.id.toString('hex'), (refs.get(extent.id.toString('hex')) ?? 0) + 1);
  return refs;
}

async function restoreInto(dir: string, s: Session, root: Buffer): Promise<Meta> {
  const meta = await openMeta(dir);
  meta.initialise(0, 0);
  await s.cacheDrop(); // the objects come from the packs
  await restoreTree(meta, root, packFetch(s).fetch);
  return meta;
}

/**
 * The tree of a database encoded in this thread, directory by directory, with tree.ts alone (the
 * reference the publisher's worker batches must agree with): the top object's id.
 */
function referenceTop(s: Session): Buffer {
  const codec = { idOf: (p: Buffer) => blockId(s.repo.keys.block, p), splitKey: treeSplitKey(s.repo.keys.block.idKey) };
  const m = s.meta;
  const dirId = (ino: number): Buffer => {
    const named = [...m.entries(ino)].map((e) => ({ name: Buffer.from(e.name), ino: e.ino }));
    named.sort((a, b) => Buffer.compare(a.name, b.name));
    const entries: TreeEntry[] = named.map(({ name, ino: child }) => {
      const e = entryOfInode(name, m.getInode(child)!, m.xattrsOf(child));
      if (e.type === EntryType.dir) e.dir = dirId(child);
      if (e.type === EntryType.file) e.chunks = encodeChunks(m.extentsOf(child), codec, []);
      return e;
    });
    return encodeDirectory(entries, codec).root;
  };
  const top = { ...entryOfInode(Buffer.alloc(0), m.getInode(ROOT_INO)!, m.xattrsOf(ROOT_INO)), dir: dirId(ROOT_INO) };
  return codec.idOf(encodeLeaf([top]));
}

describe('publish and restore', () => {
  let tmp: { dir: string; cleanup: () => void };
  beforeEach(() => {
    tmp = tmpDir('publish-');
  });
  afterEach(() => tmp.cleanup());

  test('a published tree restores into a fresh database: attributes, hard links, xattrs, chunk maps, refcounts', async () => {
    const s = await smallRepo(path.join(tmp.dir, 'repo'));
    let restored: Meta | undefined;
    try {
      const r = prng(5);
      s.fs.mkdir('/a', 0o755, me);
      s.fs.mkdir('/a/b', 0o700, me);
      await writeFile(s, '/a/b/data', r.bytes(200_000));
      await writeFile(s, '/a/copy', r.bytes(50_000));
      await writeFile(s, '/empty', Buffer.alloc(0));
      s.fs.link('/a/copy', '/a/b/hardlink');
      s.fs.link('/a/copy', '/third-name');
      s.fs.symlink('../elsewhere', '/a/link', me);
      s.fs.mknod('/fifo', C.S_IFIFO | 0o600, 0, me);
      s.fs.setxattr('/a/b/data', 'user.note', Buffer.from('hello'), 0);
      s.fs.setxattr('/', 'user.root', Buffer.from([1, 2, 3]), 0);
      for (let i = 0; i < 300; i++) await writeFile(s, `/a/many-${i}`, Buffer.from(`file ${i}`)); // a split directory
      // A file with more extents than fit inline: a chunk-list object.
      await writeFile(s, '/big', r.bytes(2 * 1024 * 1024));
      expect(s.meta.extentsOf(s.meta.lookup(ROOT_INO, 'big')!).length).toBeGreaterThan(64);
      await s.fs.truncate('/big', 5 * 1024 * 1024); // a hole at the end

      await s.flush();
      const first = s.publisher!.last!;
      expect(first.seq).toBe(1);
      expect((await repoStatus(s.repo.paths.root, s.meta)).unpublishedChanges).toBe(0);
      const found = await findHeads(s.backends, { repoId: s.repo.config.id, publicKey: s.repo.keys.head.publicKey });
      expect(found.head?.seq).toBe(1);
      expect(found.head?.root.equals(first.root)).toBe(true);
      // The head's index objects list every block that is in a pack, tree objects included.
      const index = await readIndex(s.backends, found.head!.index, s.repo.keys.block);
      for (const { id } of s.meta.allBlocks()) {
        const loc = s.meta.getLoc(id);
        if (loc) expect(index.get(id.toString('hex'))).toEqual(loc);
      }
      expect(index.get(first.root.toString('hex'))).toBeDefined();

      restored = await restoreInto(path.join(tmp.dir, 'restored'), s, found.head!.root);
      expect(snapshotOf(restored)).toEqual(snapshotOf(s.meta));
      const nlink = restored.getInode(restored.lookup(ROOT_INO, 'third-name')!)!.nlink;
      expect(nlink).toBe(3);
      // One inode behind the three names.
      const a = restored.lookup(ROOT_INO, 'a')!;
      expect(restored.lookup(restored.lookup(a, 'b')!, 'hardlink')).toBe(restored.lookup(a, 'copy'));
      // Every data block: a row not local, with the chunk maps' references.
      for (const [hex, refs] of dataRefs(s.meta)) {
        const row = restored.getBlock(Buffer.from(hex, 'hex'))!;
        expect(row).toMatchObject({ refs, local: false });
      }
      // The tree objects are held too, as the writer holds them.
      const objectIds = [...restored.allBlocks()].filter(({ id }) => !dataRefs(s.meta).has(id.toString('hex')));
      expect(objectIds.length).toBeGreaterThan(3);
      for (const { id, row } of objectIds) expect(row.refs).toBe(s.meta.getBlock(id)!.refs);
      expect(restored.dirtyCount()).toBe(0);
      await restored.close();
      restored = undefined;

      // A change, then a second head that chains to the first; the restore shows the change.
      await writeFile(s, '/a/b/new', Buffer.from('new file'));
      s.fs.unlink('/a/many-7');
      expect((await repoStatus(s.repo.paths.root, s.meta)).unpublishedChanges).toBeGreaterThan(0);
      await s.flush();
      const second = s.publisher!.last!;
      expect(second.seq).toBe(2);
      expect(second.released).toBeGreaterThan(0); // the replaced objects
      const status = await repoStatus(s.repo.paths.root, s.meta);
      expect(status).toMatchObject({ publishedHead: 2, unpublishedChanges: 0 });
      expect(Date.parse(status.publishedAt!)).toBeGreaterThan(Date.now() - 60_000);
      restored = await restoreInto(path.join(tmp.dir, 'restored2'), s, second.root);
      expect(snapshotOf(restored)).toEqual(snapshotOf(s.meta));
      // Nothing changed: no head. Refcounts agree with the chunk maps and the publish state.
      expect(await s.publish()).toBeNull();
      expect((await checkRepository(s.meta, s.store)).problems).toEqual([]);
    } finally {
      await restored?.close();
      await s.close();
    }
  });

  test('the codec workers encode the same objects as tree.ts in this thread: splits, chunk lists, links, a deep path', async () => {
    const s = await smallRepo(path.join(tmp.dir, 'repo'));
    try {
      const r = prng(9);
      let at = '';
      for (let d = 0; d < 12; d++) s.fs.mkdir((at += `/deep${d}`), 0o750, me); // twelve levels
      await writeFile(s, `${at}/long`, r.bytes(600_000)); // more than 64 extents: a chunk-list object
      for (let i = 0; i < 3000; i++) s.fs.mknod(`/big-${i}`, C.S_IFIFO | 0o600, 0, me); // a split directory
      s.fs.link(`${at}/long`, '/big-link');
      s.fs.symlink('deep0', '/sym', me);
      s.fs.setxattr('/deep0', 'user.x', Buffer.from('y'), 0);
      const text = async () => formatStatus(await repoStatus(s.repo.paths.root, s.meta), s.repo.paths.root);
      expect(await text()).toMatch(/^published {4}no head on the backends yet \(\d+ unpublished changes\)$/m);
      await s.flush();
      const first = s.publisher!.last!;
      const head = s.publisher!.publishedHead()!;
      expect(await text()).toContain(`\npublished    head ${first.seq} at ${new Date(head.time).toISOString()}, 0 unpublished changes\n`);
      let ino = ROOT_INO;
      for (const name of `${at}/long`.split('/').slice(1)) ino = [...s.meta.entries(ino)].find((e) => e.name === name)!.ino;
      expect(s.meta.extentsOf(ino).length).toBeGreaterThan(64);
      expect(s.meta.publishedObjects(ino)?.length).toBe(1); // its chunk-list object
      expect(first.root.equals(referenceTop(s))).toBe(true);
      expect(first.encoded).toBeGreaterThan(12 + 3000 / 1024);

      // A second publish (a few directories changed) agrees as well.
      await writeFile(s, `${at}/deep-new`, Buffer.from('x'));
      s.fs.unlink('/big-17');
      await s.flush();
      expect(s.publisher!.last!.seq).toBe(first.seq + 1);
      expect(s.publisher!.last!.root.equals(referenceTop(s))).toBe(true);
    } finally {
      await s.close();
    }
  });

  test('a publish after changing one file of 100,000 encodes and writes only the objects of its path', async () => {
    const s = await smallRepo(path.join(tmp.dir, 'repo'));
    try {
      await buildWideTree(s);
      await s.flush();
      const all = s.publisher!.last!;
      expect(all.dirs).toBe(111);
      expect(all.read).toBe(0);

      await writeFile(s, '/d3/e4/f567', Buffer.from('changed'));
      await s.flush();
      const one = s.publisher!.last!;
      expect(one.seq).toBe(all.seq + 1);
      expect(one.dirs).toBe(3); // /d3/e4, /d3, /
      expect(one.read).toBe(0);
      // /d3/e4 splits into a few leaves under one interior object: its changed leaf and that
      // object, one object each for /d3 and /, and the top object. At most one more per level
      // when the change moves a cut.
      expect(one.written).toBeLessThanOrEqual(7);
      expect(one.written).toBeGreaterThanOrEqual(4);
      expect(one.encoded).toBeLessThan(30); // not the 100,000 entries' hundreds of objects
      expect(all.encoded).toBeGreaterThan(100);
      console.log(`first publish: ${all.encoded} objects, after one change: ${one.written} written of ${one.encoded} encoded`);
    } finally {
      await s.close();
    }
  });
});
