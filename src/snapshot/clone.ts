/**
 * `isg clone`: a subtree of a published tree grafted into the live namespace without copying
 * data. `readSubtree` reads the subtree's tree and chunk-list objects (no data blocks) into a
 * plan; `plantSubtree` turns the plan into new inodes, directory entries, xattrs and chunk maps
 * in the caller's transaction (FileSystem.graft), each extent taking one more reference on the
 * block it names. From then on the graft is ordinary files: a write re-chunks and references new
 * blocks, the shared ones keep their other references.
 *
 * Decisions (why):
 * - The plan is read before the transaction (fetching objects awaits, a transaction must not), and
 *   planted in one transaction: a clone is whole or absent, also after a crash. Directories are
 *   read side by side (READ_CONCURRENCY), and the objects of a large directory too: each object
 *   read waits on the local tier or a backend.
 * - New inodes are marked dirty by Meta as every change is, so the next publish encodes them (the
 *   tree objects may not be reused as they are: they name the writer's inode numbers).
 * - Hard links inside the subtree stay one inode (the entries' link identity); the link count is
 *   the number of names inside the subtree, since names outside it are not cloned.
 * - Times are the tree's, as `cp -a` keeps them, except the change time, which is the clone's.
 * - A block the live metadata no longer has a row for is referenced from its pack location
 *   (`refRemote`); one with neither is gone, and the clone is refused naming the file.
 */
import { IsgError } from '../errors';
import { Inode, Meta, nowNs } from '../meta/meta';
import { UnknownTreeError } from './refs';
import { decodeTreeObject, EntryType, extentsOfEntry, FetchObject, inodeOfEntry, readDirectory, TreeEntry, TreeExtent } from './tree';
import { ObjectKind } from '../block/codec';

/** One entry of a subtree, parents before children. */
export interface PlannedNode {
  entry: TreeEntry;
  /** Index of its directory in the plan (-1: the top). */
  parent: number;
  /** Path inside the tree, for messages. */
  path: string;
}

export interface SubtreePlan {
  nodes: PlannedNode[];
  /** Regular files' extents, by link identity (one inode, however many names). */
  extents: Map<number, TreeExtent[]>;
  /** Objects read. */
  objects: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Objects read at once. Each read is a decode of a small local file on the libuv pool (16
 * threads, bin/uv-threadpool.ts) or a fetch from a backend: latency, not CPU, so more reads than
 * threads keep them busy. The pool was a barrier per round (workers started only when all of a
 * round had ended): 2,228 objects read in 400 ms cold; as a pool of 64, see bench/clone.ts.
 */
const READ_CONCURRENCY = 64;

/** Reads the subtree at `path` of the tree `root` (`label` names the tree in messages). */
export async function readSubtree(root: Buffer, path: string, fetch: FetchObject, label: string): Promise<SubtreePlan> {
  let objects = 0;
  const count = () => void objects++;
  const top = decodeTreeObject(await fetch(root, ObjectKind.tree));
  count();
  if (!('entries' in top) || top.entries.length !== 1 || top.entries[0].type !== EntryType.dir)
    throw new IsgError('corrupt', 'tree object: the top object must hold one directory entry');
  let entry = top.entries[0];
  let at = '';
  for (const name of path.split('/').filter(Boolean)) {
    if (entry.type !== EntryType.dir) throw new UnknownTreeError(`${at || '/'} in tree ${label} is not a directory`);
    const want = Buffer.from(name);
    const found = (await readDirectory(entry.dir!, fetch, count)).find((e) => e.name.equals(want));
    at += `/${name}`;
    if (!found) throw new UnknownTreeError(`no ${at} in tree ${label}`);
    entry = found;
  }
  const plan: SubtreePlan = { nodes: [], extents: new Map(), objects: 0 };
  // Nodes are added as their directory is read; a directory's children after it.
  const add = (e: TreeEntry, parent: number, p: string): (() => Promise<void>) | undefined => {
    const i = plan.nodes.push({ entry: e, parent, path: p }) - 1;
    if (e.type === EntryType.dir)
      return async () => {
        for (const c of await readDirectory(e.dir!, fetch, count)) {
          const more = add(c, i, `${p === '/' ? '' : p}/${utf8.decode(c.name)}`);
          if (more) queue.push(more);
        }
      };
    if (e.type !== EntryType.file || plan.extents.has(e.link)) return undefined;
    if (e.chunks && 'inline' in e.chunks) {
      plan.extents.set(e.link, e.chunks.inline);
      return undefined;
    }
    plan.extents.set(e.link, []);
    return async () => {
      plan.extents.set(e.link, await extentsOfEntry(e, fetch, count));
    };
  };
  const queue: (() => Promise<void>)[] = [];
  const first = add(entry, -1, at || '/');
  if (first) queue.push(first);
  // A pool of READ_CONCURRENCY reads: a job that ends starts the next ones, those it queued too.
  await new Promise<void>((resolve, reject) => {
    let active = 0;
    let failed = false;
    const pump = (): void => {
      while (!failed && active < READ_CONCURRENCY && queue.length) {
        active++;
        queue.shift()!().then(
          () => {
            active--;
            if (!active && !queue.length) resolve();
            else pump();
          },
          (e: unknown) => {
            failed = true;
            reject(e instanceof Error ? e : new Error(String(e)));
          },
        );
      }
    };
    pump();
    if (!active) resolve();
  });
  plan.objects = objects;
  return plan;
}

/**
 * Makes the plan's inodes, names (below the top), xattrs and chunk maps in `meta`, inside the
 * caller's transaction; returns the top inode, which the caller stores and names.
 *
 * Cost: every row below the top is fresh (Meta.putFreshInode): one write each, no reads; the
 * inode numbers come in one allocation, and each block named takes its references in one read
 * and one write however many extents name it. For 16,299 entries that cut the transaction from
 * ~15 LMDB operations an entry to ~5 (bench/clone.ts).
 */
export function plantSubtree(meta: Meta, plan: SubtreePlan): Inode {
  const now = nowNs();
  const names = new Map<number, number>(); // link identity -> names inside the subtree
  let inodes = 0;
  for (const n of plan.nodes)
    if (n.entry.type === EntryType.dir) inodes++;
    else {
      const had = names.get(n.entry.link) ?? 0;
      if (!had) inodes++;
      names.set(n.entry.link, had + 1);
    }
  let next = meta.allocInos(inodes);
  const inos: number[] = [];
  const byLink = new Map<number, number>();
  /** Names of a hard-linked inode per directory so far ("ino/parent"), for the parents rows. */
  const linksIn = new Map<string, number>();
  /** References to take, by block (hex): the id, how many, the first file naming it (messages). */
  const refs = new Map<string, { id: Buffer; n: number; length: number; path: string }>();
  let top: Inode | undefined;
  for (const n of plan.nodes) {
    const e = n.entry;
    const parentIno = n.parent < 0 ? 0 : inos[n.parent];
    const name = utf8.decode(e.name);
    const known = e.type === EntryType.dir ? undefined : byLink.get(e.link);
    if (known !== undefined) {
      const k = `${known}/${parentIno}`;
      const links = (linksIn.get(k) ?? 0) + 1;
      linksIn.set(k, links);
      meta.linkFresh(parentIno, name, known, links);
      inos.push(known);
      continue;
    }
    const inode = inodeOfEntry(next++, e);
    inode.ctimeNs = now;
    if (e.type !== EntryType.dir) inode.nlink = names.get(e.link) ?? 1;
    inos.push(inode.ino);
    if (e.type !== EntryType.dir) byLink.set(e.link, inode.ino);
    if (n.parent < 0) top = inode;
    else {
      meta.putFreshInode(inode);
      meta.linkFresh(parentIno, name, inode.ino, 1);
      if (inode.nlink > 1) linksIn.set(`${inode.ino}/${parentIno}`, 1);
    }
    for (const x of e.xattrs) meta.setFreshXattr(inode.ino, utf8.decode(x.name), x.value);
    for (const x of e.type === EntryType.file ? (plan.extents.get(e.link) ?? []) : []) {
      const hex = x.id.toString('hex');
      const r = refs.get(hex);
      if (r) r.n++;
      else refs.set(hex, { id: x.id, n: 1, length: x.length, path: n.path });
      meta.putFreshExtent(inode.ino, { offset: x.offset, length: x.length, id: x.id, forced: x.forced });
    }
  }
  for (const [hex, r] of refs) {
    if (meta.ref(r.id, r.n)) continue;
    const loc = meta.getLoc(r.id);
    if (!loc) throw new IsgError('missing', `block ${hex.slice(0, 16)}… of ${r.path} is no longer stored: cannot clone it`);
    meta.refRemote(r.id, r.length, loc.length, r.n);
  }
  return top!;
}
