/**
 * The namespace as a Merkle tree of metadata objects (docs/formats.md "Tree"): one tree object per
 * directory (several for a large one), content-addressed, encoded and packed like data blocks
 * with their own object kinds. This module encodes and decodes the objects and rebuilds a
 * metadata database from a root (restoreTree); src/snapshot/publish.ts decides what to encode.
 *
 * Decisions (why):
 * - Entries are sorted by the bytes of their names, and a directory too large for one object is
 *   cut after an entry whose name's keyed hash has its low bits zero (with bounds): the cuts
 *   depend on the names around them only, so one changed entry changes one leaf object and the
 *   interior objects above it, not the list. Interior objects are cut the same way.
 * - The split hash is keyed (from the block-id subkey), so object sizes do not tell an outsider
 *   which names a directory holds. Readers never need the key: it decides where objects end, not
 *   what they mean.
 * - A file's chunk list is inline up to INLINE_EXTENTS extents; a longer one goes to chunk-list
 *   objects of CHUNK_LIST_EXTENTS extents each, so a directory of large files stays small.
 * - Hard links: every entry carries its inode's identity (the writer's inode number); entries
 *   that share it are one inode, whose attributes and chunk list every such entry repeats.
 * - The head names a top object: a leaf holding one entry, with an empty name, for the root
 *   directory, so that the root's own attributes are in the tree like every other directory's.
 */
import { constants as C } from 'node:fs';
import { blake3Keyed } from '../native';
import { ObjectKind } from '../block/codec';
import { IsgError } from '../errors';
import { EncodedEntries, ID_BYTES, layoutDirectory, TreeBatch, TreeBatchResult, TREE_FORMAT, TREE_MAGIC } from '../block/treelayout';
import { Extent, Inode, MAX_INO, Meta, ROOT_INO } from '../meta/meta';

export const CHUNK_LIST_MAGIC = Buffer.from('ISGC');
/** A file with more extents than this lists them in chunk-list objects. */
export const INLINE_EXTENTS = 64;
/** Extents per chunk-list object (45 bytes each: about 360 KiB). */
export const CHUNK_LIST_EXTENTS = 8192;
export { ID_BYTES, SPLIT_BITS, SPLIT_MAX_BYTES, SPLIT_MAX_ENTRIES, SPLIT_MIN_ENTRIES, TREE_FORMAT, TREE_MAGIC } from '../block/treelayout';

/** Entry types (the S_IFMT bits of the mode say the same; a reader checks that they agree). */
export const EntryType = { file: 1, dir: 2, symlink: 3, charDev: 4, blockDev: 5, fifo: 6, socket: 7 } as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];
const TYPE_OF_FMT = new Map<number, EntryType>([
  [C.S_IFREG, EntryType.file],
  [C.S_IFDIR, EntryType.dir],
  [C.S_IFLNK, EntryType.symlink],
  [C.S_IFCHR, EntryType.charDev],
  [C.S_IFBLK, EntryType.blockDev],
  [C.S_IFIFO, EntryType.fifo],
  [C.S_IFSOCK, EntryType.socket],
]);

export interface TreeExtent {
  offset: number;
  length: number;
  id: Buffer;
  forced: boolean;
}

/** A file's chunk list: inline, or the ids of its chunk-list objects and the number of extents. */
export type ChunkList = { inline: TreeExtent[] } | { objects: Buffer[]; extents: number };

export interface TreeEntry {
  /** The name's bytes (UTF-8 of the name as the filesystem got it). */
  name: Buffer;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  rdev: number;
  nlink: number;
  size: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  /** Hard-link identity: entries with the same value are one inode. */
  link: number;
  xattrs: { name: Buffer; value: Buffer }[];
  /** Symlink target. */
  target?: Buffer;
  /** A directory's object id. */
  dir?: Buffer;
  /** A regular file's chunk list. */
  chunks?: ChunkList;
}

/** An interior object's child: the first name beneath it, its id, and how many entries it holds. */
export interface TreeChild {
  first: Buffer;
  id: Buffer;
  count: number;
}

export type TreeObject = { level: 0; entries: TreeEntry[] } | { level: number; children: TreeChild[] };

/** An encoded object: its plaintext and id. */
export interface EncodedObject {
  id: Buffer;
  plain: Buffer;
  kind: ObjectKind;
}

function corrupt(why: string): IsgError {
  return new IsgError('corrupt', `tree object: ${why}`);
}

/** Appends little-endian fields to one growing buffer. */
class Writer {
  private buf = Buffer.allocUnsafe(4096);
  length = 0;
  private room(n: number): number {
    if (this.length + n > this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + n));
      this.buf.copy(bigger, 0, 0, this.length);
      this.buf = bigger;
    }
    const at = this.length;
    this.length += n;
    return at;
  }
  // `room` may replace the buffer: it is called before `this.buf` is read.
  u8(n: number): void {
    const at = this.room(1);
    this.buf[at] = n;
  }
  u16(n: number): void {
    const at = this.room(2);
    this.buf.writeUInt16LE(n, at);
  }
  u32(n: number): void {
    const at = this.room(4);
    this.buf.writeUInt32LE(n, at);
  }
  u64(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${n} is not a u64 this format holds`);
    const at = this.room(8);
    this.buf.writeUInt32LE(n % 2 ** 32, at);
    this.buf.writeUInt32LE(Math.floor(n / 2 ** 32), at + 4);
  }
  i64(n: bigint): void {
    const at = this.room(8);
    this.buf.writeBigInt64LE(n, at);
  }
  bytes(b: Uint8Array): void {
    const at = this.room(b.length);
    this.buf.set(b, at);
  }
  done(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.length));
  }
}

class Reader {
  at = 0;
  constructor(private readonly b: Buffer) {}
  private need(n: number): number {
    if (this.at + n > this.b.length) throw corrupt('truncated');
    const at = this.at;
    this.at += n;
    return at;
  }
  u8(): number {
    return this.b[this.need(1)];
  }
  u16(): number {
    return this.b.readUInt16LE(this.need(2));
  }
  u32(): number {
    return this.b.readUInt32LE(this.need(4));
  }
  u64(): number {
    const v = this.b.readBigUInt64LE(this.need(8));
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt('a number beyond 2^53');
    return Number(v);
  }
  i64(): bigint {
    return this.b.readBigInt64LE(this.need(8));
  }
  bytes(n: number): Buffer {
    const at = this.need(n);
    return Buffer.from(this.b.subarray(at, at + n));
  }
  end(): void {
    if (this.at !== this.b.length) throw corrupt(`${this.b.length - this.at} bytes after the last field`);
  }
}

function writeExtent(w: Writer, e: TreeExtent): void {
  w.u64(e.offset);
  w.u32(e.length);
  w.u8(e.forced ? 1 : 0);
  w.bytes(e.id);
}

function readExtent(r: Reader): TreeExtent {
  const offset = r.u64();
  const length = r.u32();
  const flags = r.u8();
  if (flags & ~1) throw corrupt('unknown extent flags');
  return { offset, length, forced: flags === 1, id: r.bytes(ID_BYTES) };
}

function writeEntry(w: Writer, e: TreeEntry): void {
  if (e.name.length > 0xffff) throw new RangeError('a name longer than 65535 bytes');
  w.u16(e.name.length);
  w.bytes(e.name);
  w.u8(e.type);
  w.u32(e.mode);
  w.u32(e.uid);
  w.u32(e.gid);
  w.u32(e.rdev);
  w.u32(e.nlink);
  w.u64(e.size);
  w.i64(e.atimeNs);
  w.i64(e.mtimeNs);
  w.i64(e.ctimeNs);
  w.u64(e.link);
  w.u16(e.xattrs.length);
  for (const x of e.xattrs) {
    w.u16(x.name.length);
    w.bytes(x.name);
    w.u32(x.value.length);
    w.bytes(x.value);
  }
  if (e.type === EntryType.dir) {
    if (e.dir?.length !== ID_BYTES) throw new Error('a directory entry needs its object id');
    w.bytes(e.dir);
  } else if (e.type === EntryType.symlink) {
    const t = e.target ?? Buffer.alloc(0);
    w.u32(t.length);
    w.bytes(t);
  } else if (e.type === EntryType.file) {
    const c = e.chunks ?? { inline: [] };
    if ('inline' in c) {
      w.u8(0);
      w.u32(c.inline.length);
      for (const x of c.inline) writeExtent(w, x);
    } else {
      w.u8(1);
      w.u64(c.extents);
      w.u32(c.objects.length);
      for (const id of c.objects) w.bytes(id);
    }
  }
}

function readEntry(r: Reader): TreeEntry {
  const name = r.bytes(r.u16());
  const type = r.u8();
  const mode = r.u32();
  if (TYPE_OF_FMT.get(mode & C.S_IFMT) !== type) throw corrupt(`entry type ${type} does not agree with mode ${mode.toString(8)}`);
  const e: TreeEntry = {
    name,
    type: type as EntryType,
    mode,
    uid: r.u32(),
    gid: r.u32(),
    rdev: r.u32(),
    nlink: r.u32(),
    size: r.u64(),
    atimeNs: r.i64(),
    mtimeNs: r.i64(),
    ctimeNs: r.i64(),
    link: r.u64(),
    xattrs: [],
  };
  const xattrs = r.u16();
  for (let i = 0; i < xattrs; i++) {
    const n = r.bytes(r.u16());
    e.xattrs.push({ name: n, value: r.bytes(r.u32()) });
  }
  if (type === EntryType.dir) e.dir = r.bytes(ID_BYTES);
  else if (type === EntryType.symlink) e.target = r.bytes(r.u32());
  else if (type === EntryType.file) {
    const form = r.u8();
    if (form === 0) {
      const n = r.u32();
      const inline: TreeExtent[] = [];
      for (let i = 0; i < n; i++) inline.push(readExtent(r));
      e.chunks = { inline };
    } else if (form === 1) {
      const extents = r.u64();
      const n = r.u32();
      const objects: Buffer[] = [];
      for (let i = 0; i < n; i++) objects.push(r.bytes(ID_BYTES));
      e.chunks = { objects, extents };
    } else throw corrupt(`unknown chunk list form ${form}`);
  }
  return e;
}

function header(level: number, count: number): Writer {
  const w = new Writer();
  w.bytes(TREE_MAGIC);
  w.u8(TREE_FORMAT);
  w.u8(level);
  w.u32(count);
  return w;
}

/** Plaintext of a leaf object (entries sorted by name bytes, as the caller gives them). */
export function encodeLeaf(entries: TreeEntry[]): Buffer {
  const w = header(0, entries.length);
  for (const e of entries) writeEntry(w, e);
  return w.done();
}

export function encodeInterior(level: number, children: TreeChild[]): Buffer {
  const w = header(level, children.length);
  for (const c of children) {
    w.u16(c.first.length);
    w.bytes(c.first);
    w.bytes(c.id);
    w.u64(c.count);
  }
  return w.done();
}

/** Decodes a tree object, checking its layout and that its names ascend strictly. */
export function decodeTreeObject(plain: Buffer): TreeObject {
  const r = new Reader(plain);
  if (!r.bytes(4).equals(TREE_MAGIC)) throw corrupt('not a tree object (magic)');
  const version = r.u8();
  if (version !== TREE_FORMAT) throw corrupt(`format ${version} is not supported (this isgfs reads ${TREE_FORMAT})`);
  const level = r.u8();
  const count = r.u32();
  let last: Buffer | null = null;
  const ascending = (name: Buffer) => {
    if (last && Buffer.compare(last, name) >= 0) throw corrupt('names out of order');
    last = name;
  };
  if (level === 0) {
    const entries: TreeEntry[] = [];
    for (let i = 0; i < count; i++) {
      const e = readEntry(r);
      ascending(e.name);
      entries.push(e);
    }
    r.end();
    return { level: 0, entries };
  }
  const children: TreeChild[] = [];
  for (let i = 0; i < count; i++) {
    const first = r.bytes(r.u16());
    ascending(first);
    children.push({ first, id: r.bytes(ID_BYTES), count: r.u64() });
  }
  r.end();
  return { level, children };
}

export function encodeChunkList(extents: TreeExtent[]): Buffer {
  const w = new Writer();
  w.bytes(CHUNK_LIST_MAGIC);
  w.u8(TREE_FORMAT);
  w.u32(extents.length);
  for (const e of extents) writeExtent(w, e);
  return w.done();
}

export function decodeChunkList(plain: Buffer): TreeExtent[] {
  const r = new Reader(plain);
  if (!r.bytes(4).equals(CHUNK_LIST_MAGIC)) throw corrupt('not a chunk-list object (magic)');
  const version = r.u8();
  if (version !== TREE_FORMAT) throw corrupt(`chunk list format ${version} is not supported`);
  const n = r.u32();
  const out: TreeExtent[] = [];
  for (let i = 0; i < n; i++) out.push(readExtent(r));
  r.end();
  return out;
}

/** What encoding needs: the ids of objects, and the key of the split hash. */
export interface TreeCodec {
  idOf: (plain: Buffer) => Buffer;
  splitKey: Buffer;
  /**
   * Runs a batch of directory layouts and hashes off this thread (the codec workers); absent,
   * the publisher runs them in this thread (same objects).
   */
  layout?: (batch: TreeBatch, splitKey: Buffer) => Promise<TreeBatchResult>;
}

/** The split key: BLAKE3 keyed with the block-id subkey over "isgfs tree split v1". */
export function treeSplitKey(idKey: Buffer): Buffer {
  return blake3Keyed(idKey, Buffer.from('isgfs tree split v1'));
}

/** The entries encoded back to back (as a leaf holds them), and where each ends. */
export function encodeEntries(entries: TreeEntry[]): EncodedEntries & { ends: number[] } {
  const w = new Writer();
  const ends: number[] = [];
  for (const e of entries) {
    writeEntry(w, e);
    ends.push(w.length);
  }
  return { bytes: w.done(), ends };
}

/**
 * The objects of one directory, given its entries sorted by name bytes: leaves, then interior
 * levels until one object remains, which is the directory's id (`root`). `objects` lists every
 * object, the root first. In the calling thread; the publisher has the codec workers run the
 * same layout (../block/treelayout.ts).
 */
export function encodeDirectory(entries: TreeEntry[], codec: TreeCodec): { root: Buffer; objects: EncodedObject[] } {
  const laid = layoutDirectory(encodeEntries(entries), codec.splitKey, codec.idOf);
  return { root: laid.root, objects: laid.objects.map((o) => ({ ...o, kind: ObjectKind.tree })) };
}

/** A file's chunk list: inline, or chunk-list objects (added to `objects`). */
export function encodeChunks(extents: TreeExtent[], codec: TreeCodec, objects: EncodedObject[]): ChunkList {
  if (extents.length <= INLINE_EXTENTS) return { inline: extents };
  const ids: Buffer[] = [];
  for (let at = 0; at < extents.length; at += CHUNK_LIST_EXTENTS) {
    const plain = encodeChunkList(extents.slice(at, at + CHUNK_LIST_EXTENTS));
    const id = codec.idOf(plain);
    objects.push({ id, plain, kind: ObjectKind.chunkList });
    ids.push(id);
  }
  return { objects: ids, extents: extents.length };
}

/** The entry type of a mode (throws for a mode of no known type). */
export function entryTypeOf(mode: number): EntryType {
  const t = TYPE_OF_FMT.get(mode & C.S_IFMT);
  if (t === undefined) throw new Error(`mode ${mode.toString(8)} has no known file type`);
  return t;
}

/** The entry of an inode (without its directory id or chunk list, which the caller adds). */
export function entryOfInode(name: Buffer, i: Inode, xattrs: { name: string; value: Buffer }[]): TreeEntry {
  const e: TreeEntry = {
    name,
    type: entryTypeOf(i.mode),
    mode: i.mode,
    uid: i.uid,
    gid: i.gid,
    rdev: i.rdev,
    nlink: i.nlink,
    size: i.size,
    atimeNs: i.atimeNs,
    mtimeNs: i.mtimeNs,
    ctimeNs: i.ctimeNs,
    link: i.ino,
    xattrs: xattrs.map((x) => ({ name: Buffer.from(x.name), value: x.value })).sort((a, b) => Buffer.compare(a.name, b.name)),
  };
  if (e.type === EntryType.symlink) e.target = Buffer.from(i.target ?? '');
  return e;
}

/** The plaintext of an object; the caller checks nothing: the codec verified it against its id. */
export type FetchObject = (id: Buffer, kind: ObjectKind) => Promise<Buffer>;

/** Every leaf entry of a directory object, in order, and how many objects were read. */
export async function readDirectory(id: Buffer, fetch: FetchObject, onObject?: (id: Buffer, plain: Buffer) => void): Promise<TreeEntry[]> {
  const plain = await fetch(id, ObjectKind.tree);
  onObject?.(id, plain);
  const o = decodeTreeObject(plain);
  if ('entries' in o) return o.entries;
  const out: TreeEntry[] = [];
  // The children side by side: each read waits on the local tier or a backend.
  const subs = await Promise.all(o.children.map((c) => readDirectory(c.id, fetch, onObject)));
  for (const [i, c] of o.children.entries()) {
    const sub = subs[i];
    if (sub.length !== c.count)
      throw corrupt(`child ${c.id.toString('hex').slice(0, 16)} holds ${sub.length} entries, its parent says ${c.count}`);
    if (sub.length && !sub[0].name.equals(c.first)) throw corrupt('a child does not start with the name its parent gives');
    out.push(...sub);
  }
  for (let i = 1; i < out.length; i++) if (Buffer.compare(out[i - 1].name, out[i].name) >= 0) throw corrupt('names out of order');
  return out;
}

/** A file's extents from its entry (fetching its chunk-list objects). */
export async function extentsOfEntry(
  e: TreeEntry,
  fetch: FetchObject,
  onObject?: (id: Buffer, plain: Buffer) => void,
): Promise<TreeExtent[]> {
  const c = e.chunks;
  if (!c) return [];
  if ('inline' in c) return c.inline;
  const out: TreeExtent[] = [];
  for (const id of c.objects) {
    const plain = await fetch(id, ObjectKind.chunkList);
    onObject?.(id, plain);
    out.push(...decodeChunkList(plain));
  }
  if (out.length !== c.extents) throw corrupt(`chunk list of ${out.length} extents, its entry says ${c.extents}`);
  return out;
}

/** The inode an entry describes, numbered `ino` (its link count as the entry gives it). */
export function inodeOfEntry(ino: number, e: TreeEntry): Inode {
  const i: Inode = {
    ino,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    nlink: e.nlink,
    size: e.size,
    rdev: e.rdev,
    atimeNs: e.atimeNs,
    mtimeNs: e.mtimeNs,
    ctimeNs: e.ctimeNs,
  };
  if (e.type === EntryType.symlink) i.target = (e.target ?? Buffer.alloc(0)).toString('utf8');
  return i;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Rebuilds the whole namespace under tree `root` (the head's top object) into `meta`, an empty,
 * initialised database: inodes (with the writer's inode numbers), directory entries, chunk maps,
 * xattrs, hard links joined; a block row with its references for every data block named (not
 * local: reads fetch it from the packs) and for every tree and chunk-list object, which are also
 * recorded as each directory's published objects, so that the next publish rewrites only what
 * changes. `fetch` gives an object's verified plaintext. Reports objects read and entries made.
 */
export async function restoreTree(
  meta: Meta,
  root: Buffer,
  fetch: FetchObject,
  onProgress?: (objects: number, entries: number) => void,
): Promise<void> {
  if (meta.hasEntries(ROOT_INO)) throw new Error('restoreTree needs an empty database');
  let objects = 0;
  let entries = 0;
  const seen = new Map<number, number>(); // link identity -> inode number here
  let maxIno = ROOT_INO;
  const objectRows = new Map<string, { plain: number }>();
  // One reference per naming (as the publisher counts: a directory's objects, a file's chunk lists).
  const refObject = (id: Buffer, plain: Buffer) => {
    objects++;
    objectRows.set(id.toString('hex'), { plain: plain.length });
  };
  const refObjects = (ino: number, ids: Buffer[]) => {
    meta.txn(() => {
      for (const id of ids) meta.refRemote(id, objectRows.get(id.toString('hex'))?.plain ?? 0, storedOf(id));
      meta.setPublishedObjects(ino, ids);
    });
  };
  const storedOf = (id: Buffer) => meta.getLoc(id)?.length ?? 0;

  const topPlain = await fetch(root, ObjectKind.tree);
  refObject(root, topPlain);
  const top = decodeTreeObject(topPlain);
  if (!('entries' in top) || top.entries.length !== 1 || top.entries[0].name.length !== 0 || top.entries[0].type !== EntryType.dir)
    throw corrupt('the top object must hold one directory entry with an empty name');
  const rootEntry = top.entries[0];
  seen.set(rootEntry.link, ROOT_INO);
  meta.txn(() => {
    meta.putInode(inodeOfEntry(ROOT_INO, rootEntry));
    for (const x of rootEntry.xattrs) meta.setXattr(ROOT_INO, utf8.decode(x.name), x.value);
  });
  onProgress?.(objects, entries);

  const dirs: { ino: number; id: Buffer }[] = [{ ino: ROOT_INO, id: rootEntry.dir! }];
  while (dirs.length) {
    const { ino: dirIno, id } = dirs.pop()!;
    const ids: Buffer[] = [];
    const list = await readDirectory(id, fetch, (oid, plain) => {
      refObject(oid, plain);
      ids.push(oid);
    });
    // Chunk lists of new inodes, fetched before the transaction (which must not await).
    const extents = new Map<number, TreeExtent[]>();
    const chunkObjects = new Map<number, Buffer[]>();
    for (const e of list) {
      if (e.type !== EntryType.file || seen.has(e.link) || extents.has(e.link)) continue;
      const listIds: Buffer[] = [];
      extents.set(
        e.link,
        await extentsOfEntry(e, fetch, (oid, plain) => {
          refObject(oid, plain);
          listIds.push(oid);
        }),
      );
      if (listIds.length) chunkObjects.set(e.link, listIds);
    }
    meta.txn(() => {
      for (const e of list) {
        const name = utf8.decode(e.name);
        if (!name || name.includes('/') || name === '.' || name === '..') throw corrupt(`bad name ${JSON.stringify(name)}`);
        const known = seen.get(e.link);
        if (known !== undefined) {
          if (e.type === EntryType.dir) throw corrupt('a directory named twice');
          meta.link(dirIno, name, known);
          continue;
        }
        const ino = e.link > ROOT_INO && e.link <= MAX_INO && !meta.getInode(e.link) ? e.link : meta.allocIno();
        maxIno = Math.max(maxIno, ino);
        seen.set(e.link, ino);
        meta.putInode(inodeOfEntry(ino, e));
        meta.link(dirIno, name, ino);
        for (const x of e.xattrs) meta.setXattr(ino, utf8.decode(x.name), x.value);
        for (const x of extents.get(e.link) ?? []) {
          const extent: Extent = { offset: x.offset, length: x.length, id: x.id, forced: x.forced };
          meta.putExtent(ino, extent);
          meta.refRemote(x.id, x.length, storedOf(x.id));
        }
        if (e.type === EntryType.dir) dirs.push({ ino, id: e.dir! });
        entries++;
      }
    });
    for (const [link, listIds] of chunkObjects) refObjects(seen.get(link)!, listIds);
    refObjects(dirIno, ids);
    onProgress?.(objects, entries);
  }
  meta.txn(() => {
    meta.setNextIno(Math.max(maxIno + 1, ROOT_INO + 1));
    meta.refRemote(root, topPlain.length, storedOf(root));
    meta.setPublishValue('top', root.toString('hex'));
    meta.clearAllDirty();
  });
}
