/** Metadata rows sealed at rest: no name, size, target or xattr in the file; rows bound to their keys. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { open } from 'lmdb';
import { Meta, META_SCHEMA, nowNs, ROOT_INO } from '../../src/meta/meta';
import { MetaSeal } from '../../src/meta/seal';
import { isKind } from '../../src/errors';
import { openMeta } from '../helpers/meta';
import { tmpDir } from '../helpers/tmp';

const NAME = 'zq-secret-name-4711.txt';
const TARGET = '/zq/secret/target-0815';
const XATTR = 'user.zq-secret-attr';
const XVALUE = 'zq-secret-value-1234';

const file = (ino: number, size: number, target?: string) => ({
  ino,
  mode: target ? 0o120777 : 0o100644,
  uid: 1000,
  gid: 1000,
  nlink: 1,
  size,
  rdev: 0,
  atimeNs: 1_700_000_000_000_000_001n,
  mtimeNs: 1_700_000_000_000_000_002n,
  ctimeNs: nowNs(),
  ...(target ? { target } : {}),
});

function fileHolds(dir: string, s: string): boolean {
  return fs.readFileSync(path.join(dir, 'data.mdb')).includes(Buffer.from(s));
}

describe('sealed metadata', () => {
  let t: ReturnType<typeof tmpDir>;
  beforeEach(() => (t = tmpDir()));
  afterEach(() => t.cleanup());

  async function populate(m: Meta): Promise<void> {
    m.initialise(0, 0);
    m.txn(() => {
      m.putInode(file(2, 123_456_789));
      m.putInode(file(3, TARGET.length, TARGET));
      m.link(ROOT_INO, NAME, 2);
      m.link(ROOT_INO, 'link', 3);
      m.setXattr(2, XATTR, Buffer.from(XVALUE));
      m.putExtent(2, { offset: 0, length: 123_456_789, id: Buffer.alloc(32, 9), forced: true });
    });
    await m.sync();
  }

  test('names, targets, xattrs and sizes read back, and none of them is in the file', async () => {
    const m = await openMeta(t.dir);
    await populate(m);
    await m.close();
    for (const s of [NAME, TARGET, XATTR, XVALUE]) expect(fileHolds(t.dir, s)).toBe(false);
    const size = Buffer.alloc(8);
    size.writeBigUInt64LE(123_456_789n);
    expect(fileHolds(t.dir, size.toString('latin1'))).toBe(false);

    const again = await openMeta(t.dir, true);
    expect(again.lookup(ROOT_INO, NAME)).toBe(2);
    expect([...again.entries(ROOT_INO)].map((e) => e.name).sort()).toEqual([NAME, 'link'].sort());
    expect(again.getInode(3)?.target).toBe(TARGET);
    expect(again.getInode(2)?.size).toBe(123_456_789);
    expect(again.getInode(2)?.mtimeNs).toBe(1_700_000_000_000_000_002n);
    expect(again.getXattr(2, XATTR)?.toString()).toBe(XVALUE);
    expect(again.xattrNames(2)).toEqual([XATTR]);
    expect(again.anyXattrNamed(XATTR)).toBe(true);
    expect(again.extentsOf(2)).toEqual([{ offset: 0, length: 123_456_789, id: Buffer.alloc(32, 9), forced: true }]);
    await again.close();
  });

  test('each seal has its own nonce, and tags depend on the owner and the key', () => {
    const seal = new MetaSeal(Buffer.alloc(32, 1));
    const key = Buffer.from('k');
    const a = seal.seal('inode', key, Buffer.from('same'));
    const b = seal.seal('inode', key, Buffer.from('same'));
    expect(a.subarray(0, 12).equals(b.subarray(0, 12))).toBe(false);
    expect(a.equals(b)).toBe(false);
    expect(seal.open('inode', key, b).toString()).toBe('same');
    expect(() => seal.open('dirent', key, b)).toThrow(/does not open/); // another table
    expect(seal.nameTag(1, NAME).equals(seal.nameTag(2, NAME))).toBe(false);
    expect(seal.nameTag(1, NAME).equals(new MetaSeal(Buffer.alloc(32, 2)).nameTag(1, NAME))).toBe(false);
    expect(seal.nameTag(1, NAME).equals(seal.nameTag(1, NAME))).toBe(true);
  });

  test('a row copied to another inode, or read with another key, is corrupt, not served', async () => {
    const m = await openMeta(t.dir);
    await populate(m);
    await m.close();
    const raw = open({ path: t.dir, maxDbs: 24 });
    const inodes = raw.openDB<Buffer, Buffer>({ name: 'inodes3', keyEncoding: 'binary', encoding: 'binary' });
    const key = (ino: number) => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64BE(BigInt(ino));
      return b;
    };
    await inodes.put(key(4), inodes.get(key(2))!);
    await raw.close();

    const ro = await openMeta(t.dir, true);
    expect(ro.getInode(2)?.size).toBe(123_456_789);
    let err: unknown;
    try {
      ro.getInode(4);
    } catch (e) {
      err = e;
    }
    expect(isKind(err, 'corrupt')).toBe(true);
    await ro.close();

    const other = await Meta.open(t.dir, new MetaSeal(Buffer.alloc(32, 8)), true);
    expect(() => other.getInode(2)).toThrow(/does not open/);
    expect(other.lookup(ROOT_INO, NAME)).toBeUndefined(); // another key, another tag
    await other.close();
  });

  test('a schema 2 database (plain rows) is refused read-only, migrated read-write, and compacted', async () => {
    const db = open({ path: t.dir, maxDbs: 16 });
    const inodes = db.openDB<object, number>({ name: 'inodes64', keyEncoding: 'ordered-binary' });
    const dirents = db.openDB<number, [number, string]>({ name: 'dirents', keyEncoding: 'ordered-binary' });
    const extents = db.openDB<[number, Buffer, number], [number, number]>({ name: 'extents', keyEncoding: 'ordered-binary' });
    const xattrs = db.openDB<Buffer, [number, string]>({ name: 'xattrs', keyEncoding: 'ordered-binary', encoding: 'binary' });
    const kv = db.openDB<unknown, string>({ name: 'kv' });
    const row = (s: number, l?: string) => ({ m: 0o100644, u: 0, g: 0, n: 1, s, r: 0, a: '1', t: '2', c: '3', ...(l ? { l } : {}) });
    db.transactionSync(() => {
      inodes.putSync(ROOT_INO, { ...row(0), m: 0o040755, n: 2 });
      inodes.putSync(2, row(70));
      inodes.putSync(3, { ...row(TARGET.length, TARGET), m: 0o120777 });
      dirents.putSync([ROOT_INO, NAME], 2);
      dirents.putSync([ROOT_INO, 'link'], 3);
      extents.putSync([2, 0], [70, Buffer.alloc(32, 5), 1]);
      xattrs.putSync([2, XATTR], Buffer.from(XVALUE));
      kv.putSync('nextIno', 4);
      kv.putSync('schema', 2);
    });
    await db.close();
    expect(fileHolds(t.dir, NAME)).toBe(true);

    await expect(openMeta(t.dir, true)).rejects.toThrow(/schema 2, older/);
    const m = await openMeta(t.dir);
    m.initialise(0, 0); // would refuse any schema but the current one
    expect(m.lookup(ROOT_INO, NAME)).toBe(2);
    expect(m.getInode(3)?.target).toBe(TARGET);
    expect(m.extentsOf(2)).toEqual([{ offset: 0, length: 70, id: Buffer.alloc(32, 5), forced: true }]);
    expect(m.getXattr(2, XATTR)?.toString()).toBe(XVALUE);
    expect(m.txn(() => m.allocIno())).toBe(4);
    await m.close();
    for (const s of [NAME, TARGET, XATTR, XVALUE]) expect(fileHolds(t.dir, s)).toBe(false);
    expect(fs.readdirSync(t.dir).sort()).toEqual(['data.mdb', 'lock.mdb']);
    const after = open({ path: t.dir, maxDbs: 24, readOnly: true });
    expect(after.openDB({ name: 'kv' }).get('schema')).toBe(META_SCHEMA);
    await after.close();
  });
});
