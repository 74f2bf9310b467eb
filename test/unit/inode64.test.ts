/** 64-bit inode numbers in the metadata, and schema 1 (32-bit keys) migrated. */
import { openMeta } from '../helpers/meta';
import { open } from 'lmdb';
import { MAX_INO, META_SCHEMA, nowNs, ROOT_INO } from '../../src/meta/meta';
import { isKind } from '../../src/errors';
import { tmpDir } from '../helpers/tmp';

const file = (ino: number) => ({
  ino,
  mode: 0o100644,
  uid: 0,
  gid: 0,
  nlink: 1,
  size: 3,
  rdev: 0,
  atimeNs: 1n,
  mtimeNs: 2n,
  ctimeNs: nowNs(),
});

describe('64-bit inode numbers', () => {
  let t: ReturnType<typeof tmpDir>;
  beforeEach(() => (t = tmpDir()));
  afterEach(() => t.cleanup());

  test('numbers past 2^32 are allocated, kept apart from their 32-bit residue, and orphaned', async () => {
    const m = await openMeta(t.dir);
    m.initialise(0, 0);
    m.setNextIno(2 ** 32 - 1);
    const inos = m.txn(() => [m.allocIno(), m.allocIno(), m.allocIno()]);
    expect(inos).toEqual([2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1]);
    m.txn(() => {
      for (const ino of inos) m.putInode({ ...file(ino), size: ino });
      m.putInode({ ...file(2), size: 2 }); // (2^32 + 2) mod 2^32 would collide with it
      m.link(ROOT_INO, 'big', 2 ** 32 + 1);
      m.addOrphan(2 ** 32 + 1);
    });
    await m.close();
    const again = await openMeta(t.dir, true);
    for (const ino of [...inos, 2]) expect(again.getInode(ino)?.size).toBe(ino);
    expect(again.lookup(ROOT_INO, 'big')).toBe(2 ** 32 + 1);
    expect(again.orphanList()).toEqual([2 ** 32 + 1]);
    expect([...again.allInodes()].map((i) => i.ino)).toEqual([ROOT_INO, 2, ...inos]);
    await again.close();
  });

  test('past the largest exact number, allocation fails as out of space', async () => {
    const m = await openMeta(t.dir);
    m.initialise(0, 0);
    m.setNextIno(MAX_INO);
    expect(m.txn(() => m.allocIno())).toBe(MAX_INO);
    let err: unknown;
    try {
      m.txn(() => m.allocIno());
    } catch (e) {
      err = e;
    }
    expect(isKind(err, 'no-space')).toBe(true);
    await m.close();
  });

  test('a schema 1 database (32-bit keys) is refused read-only, and migrated when opened for writing', async () => {
    const db = open({ path: t.dir, maxDbs: 16 });
    const inodes = db.openDB<object, number>({ name: 'inodes', keyEncoding: 'uint32' });
    const orphans = db.openDB<boolean, number>({ name: 'orphans', keyEncoding: 'uint32' });
    const kv = db.openDB<unknown, string>({ name: 'kv' });
    const row = (s: number, l?: string) => ({ m: 0o100644, u: 0, g: 0, n: 1, s, r: 0, a: '1', t: '2', c: '3', ...(l ? { l } : {}) });
    db.transactionSync(() => {
      inodes.putSync(ROOT_INO, { ...row(0), m: 0o040755, n: 2 });
      inodes.putSync(7, row(70));
      inodes.putSync(9, row(0, 'target'));
      orphans.putSync(7, true);
      kv.putSync('nextIno', 10);
      kv.putSync('schema', 1);
    });
    await db.close();

    await expect(openMeta(t.dir, true)).rejects.toThrow(/schema 1, older .* mount it read-write once/);

    const m = await openMeta(t.dir);
    m.initialise(0, 0); // would refuse any schema but the current one
    expect(m.getInode(7)?.size).toBe(70);
    expect(m.getInode(9)?.target).toBe('target');
    expect(m.getInode(ROOT_INO)?.mode).toBe(0o040755);
    expect(m.orphanList()).toEqual([7]);
    expect(m.txn(() => m.allocIno())).toBe(10);
    await m.close();

    const after = open({ path: t.dir, maxDbs: 16, readOnly: true });
    expect(after.openDB({ name: 'kv' }).get('schema')).toBe(META_SCHEMA);
    await after.close();
  });
});
