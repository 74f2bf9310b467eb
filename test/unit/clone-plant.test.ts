/**
 * plantSubtree's rows on a real LMDB: the fresh-row path (Meta.putFreshInode, linkFresh,
 * putFreshExtent) must leave what the ordinary path would: link counts, parents rows for hard
 * links in one directory and across directories, dirty marks, one reference per extent.
 */
import { Meta, ROOT_INO } from '../../src/meta/meta';
import { plantSubtree, PlannedNode, SubtreePlan } from '../../src/snapshot/clone';
import { EntryType, TreeEntry, TreeExtent } from '../../src/snapshot/tree';
import { IsgError } from '../../src/errors';
import { openMeta } from '../helpers/meta';
import { tmpDir } from '../helpers/tmp';

function entry(name: string, type: EntryType, link: number, extra: Partial<TreeEntry> = {}): TreeEntry {
  return {
    name: Buffer.from(name),
    type,
    mode: type === EntryType.dir ? 0o040755 : 0o100644,
    uid: 0,
    gid: 0,
    rdev: 0,
    nlink: 1,
    size: 0,
    atimeNs: 1n,
    mtimeNs: 2n,
    ctimeNs: 3n,
    link,
    xattrs: [],
    ...extra,
  };
}

describe('plantSubtree', () => {
  let t: ReturnType<typeof tmpDir>;
  let m: Meta;
  const block = Buffer.alloc(32, 9);
  beforeEach(async () => {
    t = tmpDir();
    m = await openMeta(t.dir);
    m.initialise(0, 0);
    m.txn(() => m.addBlock(block, 100, 120));
  });
  afterEach(async () => {
    await m.close();
    t.cleanup();
  });

  /** top/{a, a2, d1/b} one inode (link 5) with an xattr; top/c two extents of one block. */
  function plan(): SubtreePlan {
    const ext: TreeExtent[] = [
      { offset: 0, length: 50, id: block, forced: false },
      { offset: 50, length: 50, id: block, forced: true },
    ];
    const xattrs = [{ name: Buffer.from('user.k'), value: Buffer.from('v') }];
    const nodes: PlannedNode[] = [
      { entry: entry('top', EntryType.dir, 1), parent: -1, path: '/top' },
      { entry: entry('a', EntryType.file, 5, { nlink: 3, xattrs }), parent: 0, path: '/top/a' },
      { entry: entry('a2', EntryType.file, 5, { nlink: 3, xattrs }), parent: 0, path: '/top/a2' },
      { entry: entry('c', EntryType.file, 6, { size: 100 }), parent: 0, path: '/top/c' },
      { entry: entry('d1', EntryType.dir, 2), parent: 0, path: '/top/d1' },
      { entry: entry('b', EntryType.file, 5, { nlink: 3, xattrs }), parent: 4, path: '/top/d1/b' },
    ];
    return { nodes, extents: new Map([[6, ext]]), objects: 0 };
  }

  const graft = (p: SubtreePlan) =>
    m.txn(() => {
      const top = plantSubtree(m, p);
      m.putInode(top);
      m.link(ROOT_INO, 'top', top.ino);
      return top.ino;
    });

  test('hard links, parents rows, dirty marks and references as the ordinary path leaves them', () => {
    const top = graft(plan());
    const a = m.lookup(top, 'a')!;
    const d1 = m.lookup(top, 'd1')!;
    const c = m.lookup(top, 'c')!;
    expect(m.lookup(top, 'a2')).toBe(a);
    expect(m.lookup(d1, 'b')).toBe(a);
    expect(m.getInode(a)!.nlink).toBe(3);
    expect(m.xattrsOf(a)).toEqual([{ name: 'user.k', value: Buffer.from('v') }]);
    expect(m.extentsOf(c).map((e) => [e.offset, e.length, e.forced])).toEqual([
      [0, 50, false],
      [50, 50, true],
    ]);
    expect(m.getBlock(block)!.refs).toBe(3);
    expect(m.parentsOf(a).sort()).toEqual([top, d1].sort());
    const dirty = new Set(m.dirtyInodes().map((d) => d.ino));
    for (const ino of [ROOT_INO, top, a, c, d1]) expect(dirty.has(ino)).toBe(true);
    // The parents rows count names: one of two names in `top` gone, `top` still names it.
    m.txn(() => m.unlinkEntry(top, 'a'));
    expect(m.parentsOf(a).sort()).toEqual([top, d1].sort());
    m.txn(() => m.unlinkEntry(top, 'a2'));
    expect(m.parentsOf(a)).toEqual([d1]);
    m.txn(() => m.unlinkEntry(d1, 'b'));
    expect(m.parentsOf(a)).toEqual([]);
    // Numbers were allocated in one batch, past every planted inode.
    expect(m.allocIno()).toBeGreaterThan(Math.max(top, a, c, d1));
  });

  test('a block with no row and no pack location refuses the clone, naming the file; nothing is left', () => {
    const p = plan();
    const gone = Buffer.alloc(32, 1);
    p.extents.set(6, [{ offset: 0, length: 10, id: gone, forced: true }]);
    expect(() => graft(p)).toThrow(IsgError);
    expect(() => graft(p)).toThrow(/of \/top\/c is no longer stored/);
    expect(m.lookup(ROOT_INO, 'top')).toBeUndefined();
    expect(m.getBlock(block)!.refs).toBe(1);
  });
});
