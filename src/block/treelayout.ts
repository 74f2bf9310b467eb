/**
 * The layout of a directory's tree objects (docs/formats.md "Tree"): given its entries already
 * encoded (sorted by name bytes), where the objects end and what each object's bytes and id are.
 * Shared by the codec workers (the publisher sends them whole directories, ./pool.ts `tree`) and
 * src/snapshot/tree.ts (encodeDirectory, in the calling thread), so both give the same objects.
 *
 * Decisions (why):
 * - It lives here, below src/snapshot, because the workers run it: the CPU of a publish (keyed
 *   hashing of every name for the split and of every object for its id) is off the thread that
 *   answers FUSE. It knows the bytes of an entry only as far as the split needs (its name at the
 *   front); src/snapshot/tree.ts owns the entry format.
 * - An entry's size for the byte bound is its encoded length.
 */
import { blake3Keyed } from '../native';

export const TREE_MAGIC = Buffer.from('ISGT');
export const TREE_FORMAT = 1;
export const ID_BYTES = 32;
/** Split rule: a cut after an entry whose keyed name hash has these low bits zero (mean 128 entries)... */
export const SPLIT_BITS = 7;
/** ...when the object holds at least this many entries... */
export const SPLIT_MIN_ENTRIES = 32;
/** ...and always at this many, or once it holds this many bytes. */
export const SPLIT_MAX_ENTRIES = 1024;
export const SPLIT_MAX_BYTES = 1 << 20;
export const HEADER_BYTES = 4 + 1 + 1 + 4;

/** An object of the layout: its plaintext and id. */
export interface LaidObject {
  id: Buffer;
  plain: Buffer;
}

/** The encoded entries of one directory: `bytes` holds them back to back; entry i ends at ends[i]. */
export interface EncodedEntries {
  bytes: Uint8Array;
  ends: ArrayLike<number>;
}

/** Whether an object may end after the item named `name` at `level`. */
function cutsAfter(splitKey: Uint8Array, level: number, name: Uint8Array): boolean {
  const input = Buffer.allocUnsafe(1 + name.length);
  input[0] = level;
  input.set(name, 1);
  const h = blake3Keyed(splitKey, input);
  return (h.readUInt32LE(0) & ((1 << SPLIT_BITS) - 1)) === 0;
}

/** Groups items [0, n) into objects by the split rule: the end (exclusive) of each group. */
function groupEnds(n: number, level: number, nameOf: (i: number) => Uint8Array, sizeOf: (i: number) => number, key: Uint8Array): number[] {
  const out: number[] = [];
  let count = 0;
  let bytes = HEADER_BYTES;
  for (let i = 0; i < n; i++) {
    count++;
    bytes += sizeOf(i);
    if (count >= SPLIT_MAX_ENTRIES || bytes >= SPLIT_MAX_BYTES || (count >= SPLIT_MIN_ENTRIES && cutsAfter(key, level, nameOf(i)))) {
      out.push(i + 1);
      count = 0;
      bytes = HEADER_BYTES;
    }
  }
  if (count || !out.length) out.push(n);
  return out;
}

function header(level: number, count: number, bodyBytes: number): { buf: Buffer; at: number } {
  const buf = Buffer.allocUnsafe(HEADER_BYTES + bodyBytes);
  TREE_MAGIC.copy(buf, 0);
  buf[4] = TREE_FORMAT;
  buf[5] = level;
  buf.writeUInt32LE(count, 6);
  return { buf, at: HEADER_BYTES };
}

interface Child {
  first: Uint8Array;
  id: Buffer;
  count: number;
}

/**
 * The objects of one directory from its encoded entries: leaves, then interior levels until one
 * object remains, which is the directory's id (`root`). `objects` lists every object, the root
 * first. `idOf` gives an object's id (the keyed block id).
 */
export function layoutDirectory(
  entries: EncodedEntries,
  splitKey: Uint8Array,
  idOf: (plain: Buffer) => Buffer,
): { root: Buffer; objects: LaidObject[] } {
  const { bytes, ends } = entries;
  const n = ends.length;
  const startOf = (i: number) => (i === 0 ? 0 : ends[i - 1]);
  const nameOf = (i: number) => {
    const at = startOf(i);
    const len = bytes[at] | (bytes[at + 1] << 8);
    return bytes.subarray(at + 2, at + 2 + len);
  };
  const objects: LaidObject[] = [];
  const make = (plain: Buffer): Buffer => {
    const id = idOf(plain);
    objects.push({ id, plain });
    return id;
  };
  let level: Child[] = [];
  let from = 0;
  for (const end of groupEnds(n, 0, nameOf, (i) => ends[i] - startOf(i), splitKey)) {
    const a = startOf(from);
    const b = end === 0 ? 0 : ends[end - 1];
    const { buf, at } = header(0, end - from, b - a);
    buf.set(bytes.subarray(a, b), at);
    level.push({ first: from < end ? nameOf(from) : new Uint8Array(0), id: make(buf), count: end - from });
    from = end;
  }
  for (let depth = 1; level.length > 1; depth++) {
    const below = level;
    level = [];
    let start = 0;
    for (const end of groupEnds(
      below.length,
      depth,
      (i) => below[i].first,
      (i) => 2 + below[i].first.length + ID_BYTES + 8,
      splitKey,
    )) {
      const group = below.slice(start, end);
      const { buf, at } = header(
        depth,
        group.length,
        group.reduce((s, c) => s + 2 + c.first.length + ID_BYTES + 8, 0),
      );
      let p = at;
      for (const c of group) {
        buf.writeUInt16LE(c.first.length, p);
        buf.set(c.first, p + 2);
        p += 2 + c.first.length;
        c.id.copy(buf, p);
        p += ID_BYTES;
        buf.writeUInt32LE(c.count % 2 ** 32, p);
        buf.writeUInt32LE(Math.floor(c.count / 2 ** 32), p + 4);
        p += 8;
      }
      level.push({ first: group[0].first, id: make(buf), count: group.reduce((s, c) => s + c.count, 0) });
      start = end;
    }
  }
  const root = level[0].id;
  objects.reverse(); // the root was made last
  return { root, objects };
}

/** A batch of directories for a worker: their entries back to back in `sab`. */
export interface TreeBatch {
  sab: SharedArrayBuffer;
  /** Per directory: where its entries start in `sab`, and each entry's end relative to that. */
  dirs: { start: number; ends: number[] }[];
  /** Objects that are only hashed (chunk lists): [start, end) in `sab`. */
  raw: { start: number; end: number }[];
}

/** What a worker gives back: every object's bytes back to back in `sab`, and its id. */
export interface TreeBatchResult {
  sab: SharedArrayBuffer;
  /** Ids, 32 bytes each: the raw objects' first, then each directory's objects, root first. */
  ids: Uint8Array;
  /** The directories' objects, in order: object i's bytes end at ends[i] in `sab` (raw objects are not copied back). */
  ends: number[];
  /** Objects per directory. */
  counts: number[];
}

/** Runs a batch (in a worker, or in the calling thread): the layout of each directory, the ids of the raw objects. */
export function layoutBatch(batch: TreeBatch, splitKey: Uint8Array, idOf: (plain: Buffer) => Buffer): TreeBatchResult {
  const all = new Uint8Array(batch.sab);
  const ids: Buffer[] = [];
  const plains: Buffer[] = [];
  for (const r of batch.raw) ids.push(idOf(Buffer.from(batch.sab, r.start, r.end - r.start)));
  const counts: number[] = [];
  for (const d of batch.dirs) {
    const size = d.ends.length ? d.ends[d.ends.length - 1] : 0;
    const laid = layoutDirectory({ bytes: all.subarray(d.start, d.start + size), ends: d.ends }, splitKey, idOf);
    counts.push(laid.objects.length);
    for (const o of laid.objects) {
      ids.push(o.id);
      plains.push(o.plain);
    }
  }
  const total = plains.reduce((s, p) => s + p.length, 0);
  const sab = new SharedArrayBuffer(total);
  const out = new Uint8Array(sab);
  const ends: number[] = [];
  let at = 0;
  for (const p of plains) {
    out.set(p, at);
    at += p.length;
    ends.push(at);
  }
  const idBytes = new Uint8Array(ids.length * ID_BYTES);
  ids.forEach((id, i) => idBytes.set(id, i * ID_BYTES));
  return { sab, ids: idBytes, ends, counts };
}
