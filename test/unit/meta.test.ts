import { Meta, nowNs } from '../../src/meta/meta';
import { openMeta } from '../helpers/meta';
import { tmpDir } from '../helpers/tmp';

describe('metadata layer (LMDB)', () => {
  let t: ReturnType<typeof tmpDir>;
  let m: Meta;
  beforeEach(async () => {
    t = tmpDir();
    m = await openMeta(t.dir);
    m.initialise(0, 0);
  });
  afterEach(async () => {
    await m.close();
    t.cleanup();
  });

  test('inodes keep nanosecond times and survive reopen', async () => {
    const ns = 1_600_000_000_123_456_789n;
    m.txn(() =>
      m.putInode({
        ino: 5,
        mode: 0o100644,
        uid: 1,
        gid: 2,
        nlink: 1,
        size: 10 * 1024 ** 3,
        rdev: 0,
        atimeNs: ns,
        mtimeNs: ns + 1n,
        ctimeNs: nowNs(),
      }),
    );
    await m.sync();
    await m.close();
    m = await openMeta(t.dir);
    const i = m.getInode(5)!;
    expect(i.atimeNs).toBe(ns);
    expect(i.mtimeNs).toBe(ns + 1n);
    expect(i.size).toBe(10 * 1024 ** 3);
  });

  test('directory entries list per parent (in tag order, not name order)', () => {
    m.txn(() => {
      m.link(1, 'b', 3);
      m.link(1, 'a', 2);
      m.link(2, 'c', 4);
    });
    expect([...m.entries(1)].sort((x, y) => x.name.localeCompare(y.name))).toEqual([
      { name: 'a', ino: 2 },
      { name: 'b', ino: 3 },
    ]);
    expect(m.hasEntries(2)).toBe(true);
    expect(m.hasEntries(3)).toBe(false);
  });

  test('extentsOf finds the extent containing the start of a range', () => {
    const id = Buffer.alloc(32, 7);
    m.txn(() => {
      m.addBlock(id, 100, 50);
      for (const off of [0, 100, 200, 5_000_000_000]) m.putExtent(9, { offset: off, length: 100, id, forced: off === 200 });
    });
    expect(m.extentsOf(9, 150, 250).map((e) => e.offset)).toEqual([100, 200]);
    expect(m.extentsOf(9, 100, 101).map((e) => e.offset)).toEqual([100]);
    expect(m.extentsOf(9, 300, 4_000_000_000)).toEqual([]);
    expect(m.extentsOf(9).map((e) => e.forced)).toEqual([false, false, true, false]);
    expect(m.extentsOf(10)).toEqual([]);
  });

  test('a transaction that throws changes nothing', () => {
    const id = Buffer.alloc(32, 1);
    m.txn(() => m.addBlock(id, 1, 1));
    expect(() =>
      m.txn(() => {
        m.ref(id);
        throw new Error('abort');
      }),
    ).toThrow('abort');
    expect(m.getBlock(id)!.refs).toBe(1);
  });

  test('refcounts: unref to zero lists the block for the sweeper, ref takes it back', () => {
    const id = Buffer.alloc(32, 3);
    m.txn(() => m.addBlock(id, 10, 5));
    m.txn(() => m.unref(id));
    expect(m.gcCandidates().map((b) => b.toString('hex'))).toEqual([id.toString('hex')]);
    m.txn(() => expect(m.ref(id)).toBe(true));
    expect(m.gcCandidates()).toEqual([]);
    expect(m.ref(Buffer.alloc(32, 4))).toBe(false);
  });
});
