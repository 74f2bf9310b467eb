/**
 * Snapshots (docs/architecture.md "Snapshots", docs/formats.md "Snapshot list"): published trees
 * kept by name, listed on the backends, compared without reading what is equal.
 *
 * Decisions (why):
 * - A snapshot is a publish whose tree is recorded (Publisher.publish({ snapshot })): taking one
 *   costs what a publish costs, the changes since the last, never the tree's size. Its files and
 *   bytes are the root directory's aggregate, which the publisher keeps per directory.
 * - The records live in the metadata (table `snapshots`, sealed: the tag is user text) and, for
 *   recovery, in one snapshot list object (all records) stored whole on every backend like index
 *   objects, named by every head. A list is small (about 200 bytes a snapshot).
 * - Holds are by epochs (Meta): a block a snapshot names is never freed while it exists, at a
 *   cost that grows with the blocks freed, not with the snapshots or the tree.
 * - Diff walks the two trees side by side and skips every object whose id is on both sides
 *   (content addressing: equal ids are equal subtrees), interior objects of a large directory
 *   included; its cost grows with the changed paths.
 */
import { randomBytes } from 'node:crypto';
import { constants as C } from 'node:fs';
import { Backend, CallOptions } from '../backend/backend';
import { ObjectKind } from '../block/codec';
import { IsgError } from '../errors';
import { Meta, ROOT_INO, SnapshotRecord } from '../meta/meta';
import { encodeWholeObject, IndexKeys, readWholeObject, storeWholeObject } from './index-objects';
import { decodeTreeObject, EntryType, FetchObject, TreeEntry, TreeObject } from './tree';

export type { SnapshotRecord } from '../meta/meta';

export const SNAPSHOTS_PREFIX = 'isgfs/snapshots/';
const MAGIC = Buffer.from('ISGS');
const VERSION = 1;
/** Largest snapshot list a reader accepts. */
export const MAX_SNAPSHOT_LIST_BYTES = 64 * 1024 * 1024;
const TAG_MAX_BYTES = 1024;

export function snapshotListKey(id: Buffer): string {
  return SNAPSHOTS_PREFIX + id.toString('hex');
}

export function newSnapshotId(): string {
  return randomBytes(8).toString('hex');
}

/** What is wrong with a tag a user gave (kept in the records and the list), or undefined. */
export function tagProblem(tag: string): string | undefined {
  if (!tag.length || Buffer.byteLength(tag) > TAG_MAX_BYTES || [...tag].some((c) => c.charCodeAt(0) < 0x20))
    return `bad tag ${JSON.stringify(tag)}: 1 to ${TAG_MAX_BYTES} bytes, no control characters`;
  return undefined;
}

/** Plaintext of a snapshot list: "ISGS", version, then the records as JSON (root in hex). */
export function encodeSnapshotListPlain(records: readonly SnapshotRecord[]): Buffer {
  const json = records.map((r) => ({ ...r, root: r.root.toString('hex') }));
  return Buffer.concat([MAGIC, Buffer.from([VERSION]), Buffer.from(JSON.stringify(json))]);
}

export function decodeSnapshotListPlain(b: Buffer, where: string): SnapshotRecord[] {
  const bad = (why: string) => new IsgError('corrupt', `${where}: ${why}`);
  if (b.length < 5 || !b.subarray(0, 4).equals(MAGIC)) throw bad('not a snapshot list');
  if (b[4] !== VERSION) throw bad(`snapshot list format ${b[4]} is not supported (this isgfs reads ${VERSION})`);
  let v: unknown;
  try {
    v = JSON.parse(b.toString('utf8', 5));
  } catch {
    throw bad('its records do not parse');
  }
  if (!Array.isArray(v)) throw bad('its records are not a list');
  return v.map((r: Record<string, unknown>, i) => {
    const ok =
      typeof r.id === 'string' &&
      /^[0-9a-f]{16}$/.test(r.id) &&
      typeof r.root === 'string' &&
      /^[0-9a-f]{64}$/.test(r.root) &&
      [r.time, r.files, r.bytes, r.headSeq, r.epoch].every((n) => Number.isSafeInteger(n) && (n as number) >= 0) &&
      (r.tag === undefined || typeof r.tag === 'string');
    if (!ok) throw bad(`record ${i} is malformed`);
    const out: SnapshotRecord = {
      id: r.id as string,
      time: r.time as number,
      root: Buffer.from(r.root as string, 'hex'),
      files: r.files as number,
      bytes: r.bytes as number,
      headSeq: r.headSeq as number,
      epoch: r.epoch as number,
    };
    if (r.tag !== undefined) out.tag = r.tag as string;
    return out;
  });
}

/**
 * Stores the list of `records` whole on every backend unless `previous` (the list the last head
 * named) is the same object; returns its id, or undefined for no snapshot at all.
 */
export async function publishSnapshotList(
  backends: readonly Backend[],
  records: readonly SnapshotRecord[],
  keys: IndexKeys,
  previous: Buffer | undefined,
  call?: CallOptions,
): Promise<Buffer | undefined> {
  if (!records.length) return undefined;
  const { id, encoded } = encodeWholeObject(keys, encodeSnapshotListPlain(records), ObjectKind.snapshotList);
  if (previous?.equals(id)) return id;
  await storeWholeObject(backends, snapshotListKey(id), 'snapshot list', id, encoded, call);
  return id;
}

export function readSnapshotList(backends: readonly Backend[], id: Buffer, keys: IndexKeys, call?: CallOptions): Promise<SnapshotRecord[]> {
  return readWholeObject(
    backends,
    snapshotListKey(id),
    'snapshot list',
    id,
    keys,
    ObjectKind.snapshotList,
    MAX_SNAPSHOT_LIST_BYTES,
    decodeSnapshotListPlain,
    call,
  );
}

/**
 * Fills the local table from a list read from the backends (connect) and moves the epoch past
 * every snapshot's. Blocks the restore made before this have birth 0, so every snapshot holds
 * them (a block of an older tree may be in any of them).
 */
export function adoptSnapshots(meta: Meta, records: readonly SnapshotRecord[]): void {
  meta.txn(() => {
    for (const r of records) meta.putSnapshot(r);
    const max = records.reduce((m, r) => Math.max(m, r.epoch), -1);
    if (meta.snapEpoch() <= max) meta.setSnapEpoch(max + 1);
  });
}

// ---------------------------------------------------------------------------------------------
// Aggregates: files and logical bytes of a directory's whole subtree

export interface Aggregate {
  files: number;
  bytes: number;
}

const isDir = (mode: number) => (mode & C.S_IFMT) === C.S_IFDIR;

/** What one entry adds to its directory's aggregate (`child`: a directory's own aggregate). */
export function addEntry(into: Aggregate, mode: number, size: number, child?: Aggregate): void {
  if (isDir(mode)) {
    into.files += child?.files ?? 0;
    into.bytes += child?.bytes ?? 0;
    return;
  }
  into.files++;
  if ((mode & C.S_IFMT) === C.S_IFREG) into.bytes += size;
}

/**
 * Aggregates of every directory under `ino`, computed from the metadata in one post-order pass
 * (connect, after the tree restore; the publisher for a directory encoded before aggregates were
 * kept). Stores them when `store` is set; returns the aggregate of `ino`.
 */
export function computeAggregates(meta: Meta, ino = ROOT_INO, store = true, into?: Map<number, Aggregate>): Aggregate {
  const done = into ?? new Map<number, Aggregate>();
  const stack: { ino: number; expanded: boolean }[] = [{ ino, expanded: false }];
  while (stack.length) {
    const top = stack[stack.length - 1];
    const children = [...meta.entries(top.ino)];
    if (!top.expanded) {
      top.expanded = true;
      for (const c of children) {
        const i = meta.getInode(c.ino);
        if (i && isDir(i.mode) && !done.has(c.ino)) stack.push({ ino: c.ino, expanded: false });
      }
      continue;
    }
    stack.pop();
    const agg: Aggregate = { files: 0, bytes: 0 };
    for (const c of children) {
      const i = meta.getInode(c.ino);
      if (i) addEntry(agg, i.mode, i.size, done.get(c.ino));
    }
    done.set(top.ino, agg);
  }
  if (store) meta.txn(() => [...done].forEach(([i, a]) => meta.setAggregate(i, a)));
  return done.get(ino)!;
}

// ---------------------------------------------------------------------------------------------
// Diff

export type DiffField = 'content' | 'type' | 'mode' | 'owner' | 'times' | 'xattrs';

export interface TreeDiff {
  added: string[];
  removed: string[];
  modified: { path: string; what: DiffField[] }[];
  /** Tree and chunk-list objects read (equal objects on both sides are never read). */
  objectsRead: number;
}

function sameChunks(a: TreeEntry, b: TreeEntry): boolean {
  const x = a.chunks;
  const y = b.chunks;
  if (!x || !y) return !x && !y;
  if ('inline' in x && 'inline' in y)
    return (
      x.inline.length === y.inline.length &&
      x.inline.every((e, i) => {
        const f = y.inline[i];
        return e.offset === f.offset && e.length === f.length && e.forced === f.forced && e.id.equals(f.id);
      })
    );
  if ('objects' in x && 'objects' in y)
    return x.extents === y.extents && x.objects.length === y.objects.length && x.objects.every((id, i) => id.equals(y.objects[i]));
  return false;
}

function sameXattrs(a: TreeEntry, b: TreeEntry): boolean {
  return (
    a.xattrs.length === b.xattrs.length && a.xattrs.every((x, i) => x.name.equals(b.xattrs[i].name) && x.value.equals(b.xattrs[i].value))
  );
}

/** Which of an entry's properties differ (a directory's entries are compared on their own). */
export function entryChanges(a: TreeEntry, b: TreeEntry): DiffField[] {
  if (a.type !== b.type) return ['type'];
  const out: DiffField[] = [];
  const content =
    a.size !== b.size ||
    a.rdev !== b.rdev ||
    !sameChunks(a, b) ||
    (a.target === undefined) !== (b.target === undefined) ||
    (a.target !== undefined && !a.target.equals(b.target!));
  if (content) out.push('content');
  if ((a.mode & 0o7777) !== (b.mode & 0o7777)) out.push('mode');
  if (a.uid !== b.uid || a.gid !== b.gid) out.push('owner');
  if (a.mtimeNs !== b.mtimeNs || a.ctimeNs !== b.ctimeNs) out.push('times');
  if (!sameXattrs(a, b)) out.push('xattrs');
  return out;
}

interface Node {
  id: Buffer;
  level: number;
  obj?: TreeObject;
}

/**
 * The added, removed and modified paths from tree `a` to tree `b` (top objects). `fetch` reads an
 * object; objects with the same id on both sides are skipped without reading.
 */
export async function diffTrees(fetch: FetchObject, a: Buffer, b: Buffer): Promise<TreeDiff> {
  const out: TreeDiff = { added: [], removed: [], modified: [], objectsRead: 0 };
  if (a.equals(b)) return out;
  const read = async (id: Buffer): Promise<TreeObject> => {
    out.objectsRead++;
    return decodeTreeObject(await fetch(id, ObjectKind.tree));
  };
  const top = async (id: Buffer): Promise<TreeEntry> => {
    const o = await read(id);
    if (!('entries' in o) || o.entries.length !== 1 || o.entries[0].type !== EntryType.dir)
      throw new IsgError('corrupt', `top object ${id.toString('hex').slice(0, 16)}… does not hold one directory entry`);
    return o.entries[0];
  };
  const [ra, rb] = await Promise.all([top(a), top(b)]);
  const rootChanges = entryChanges(ra, rb);
  if (rootChanges.length) out.modified.push({ path: '/', what: rootChanges });
  await diffDirectory(read, '/', ra.dir!, rb.dir!, out);
  return out;
}

/** The leaf entries of two versions of a directory that are not in an object both share, each sorted by name. */
async function differingEntries(read: (id: Buffer) => Promise<TreeObject>, a: Buffer, b: Buffer): Promise<[TreeEntry[], TreeEntry[]]> {
  const load = async (id: Buffer): Promise<Node> => {
    const obj = await read(id);
    return { id, obj, level: 'entries' in obj ? 0 : obj.level };
  };
  let sides: [Node[], Node[]] = [[await load(a)], [await load(b)]];
  const entries: [TreeEntry[], TreeEntry[]] = [[], []];
  for (;;) {
    // Objects on both sides hold the same entries: drop them, unread.
    const count = new Map<string, number>();
    for (const n of sides[1]) count.set(n.id.toString('hex'), (count.get(n.id.toString('hex')) ?? 0) + 1);
    const shared = new Map<string, number>();
    for (const n of sides[0]) {
      const hex = n.id.toString('hex');
      const left = (count.get(hex) ?? 0) - (shared.get(hex) ?? 0);
      if (left > 0) shared.set(hex, (shared.get(hex) ?? 0) + 1);
    }
    const drop = (list: Node[]) => {
      const budget = new Map(shared);
      return list.filter((n) => {
        const hex = n.id.toString('hex');
        const left = budget.get(hex) ?? 0;
        if (left <= 0) return true;
        budget.set(hex, left - 1);
        return false;
      });
    };
    sides = [drop(sides[0]), drop(sides[1])];
    if (!sides[0].length && !sides[1].length) break;
    // Expand the highest level first, so that equal subtrees meet before they are read.
    const level = Math.max(...sides[0].map((n) => n.level), ...sides[1].map((n) => n.level));
    const next: [Node[], Node[]] = [[], []];
    for (const s of [0, 1] as const) {
      const objs = await Promise.all(sides[s].map(async (n) => (n.level === level ? { n, obj: n.obj ?? (await read(n.id)) } : { n })));
      for (const { n, obj } of objs) {
        if (!obj) next[s].push(n);
        else if ('entries' in obj) entries[s].push(...obj.entries);
        else for (const c of obj.children) next[s].push({ id: c.id, level: obj.level - 1 });
      }
    }
    sides = next;
  }
  for (const list of entries) list.sort((x, y) => Buffer.compare(x.name, y.name));
  return entries;
}

async function diffDirectory(read: (id: Buffer) => Promise<TreeObject>, dir: string, a: Buffer, b: Buffer, out: TreeDiff): Promise<void> {
  if (a.equals(b)) return;
  const [ea, eb] = await differingEntries(read, a, b);
  const pathOf = (e: TreeEntry) => `${dir === '/' ? '' : dir}/${e.name.toString('utf8')}${e.type === EntryType.dir ? '/' : ''}`;
  const sub: [string, Buffer, Buffer][] = [];
  let i = 0;
  let j = 0;
  while (i < ea.length || j < eb.length) {
    const c = i >= ea.length ? 1 : j >= eb.length ? -1 : Buffer.compare(ea[i].name, eb[j].name);
    if (c < 0) out.removed.push(pathOf(ea[i++]));
    else if (c > 0) out.added.push(pathOf(eb[j++]));
    else {
      const x = ea[i++];
      const y = eb[j++];
      const what = entryChanges(x, y);
      if (what.length) out.modified.push({ path: pathOf(what[0] === 'type' ? y : x), what });
      if (x.type === EntryType.dir && y.type === EntryType.dir && !x.dir!.equals(y.dir!))
        sub.push([pathOf(x).slice(0, -1), x.dir!, y.dir!]);
    }
  }
  for (const [p, x, y] of sub) await diffDirectory(read, p, x, y, out);
}
