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
 *   read side by side (READ_CONCURRENCY): each object read waits on the local tier or a backend.
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

/** Objects read at once: a directory's are read one after another, directories side by side. */
const READ_CONCURRENCY = 16;

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
  const worker = async () => {
    for (let job = queue.shift(); job; job = queue.shift()) await job();
  };
  // Workers end when the queue is empty; a job may refill it, so keep starting them until it stays so.
  while (queue.length) await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, queue.length) }, worker));
  plan.objects = objects;
  return plan;
}

/**
 * Makes the plan's inodes, names (below the top), xattrs and chunk maps in `meta`, inside the
 * caller's transaction; returns the top inode, which the caller stores and names.
 */
export function plantSubtree(meta: Meta, plan: SubtreePlan): Inode {
  const now = nowNs();
  const names = new Map<number, number>(); // link identity -> names inside the subtree
  for (const n of plan.nodes) if (n.entry.type !== EntryType.dir) names.set(n.entry.link, (names.get(n.entry.link) ?? 0) + 1);
  const inos: number[] = [];
  const byLink = new Map<number, number>();
  let top: Inode | undefined;
  for (const n of plan.nodes) {
    const e = n.entry;
    const parentIno = n.parent < 0 ? 0 : inos[n.parent];
    const name = utf8.decode(e.name);
    const known = e.type === EntryType.dir ? undefined : byLink.get(e.link);
    if (known !== undefined) {
      meta.link(parentIno, name, known);
      inos.push(known);
      continue;
    }
    const inode = inodeOfEntry(meta.allocIno(), e);
    inode.ctimeNs = now;
    if (e.type !== EntryType.dir) inode.nlink = names.get(e.link) ?? 1;
    inos.push(inode.ino);
    byLink.set(e.link, inode.ino);
    if (n.parent < 0) top = inode;
    else {
      meta.putInode(inode);
      meta.link(parentIno, name, inode.ino);
    }
    for (const x of e.xattrs) meta.setXattr(inode.ino, utf8.decode(x.name), x.value);
    for (const x of e.type === EntryType.file ? (plan.extents.get(e.link) ?? []) : []) {
      if (!meta.ref(x.id)) {
        const loc = meta.getLoc(x.id);
        if (!loc)
          throw new IsgError('missing', `block ${x.id.toString('hex').slice(0, 16)}… of ${n.path} is no longer stored: cannot clone it`);
        meta.refRemote(x.id, x.length, loc.length);
      }
      meta.putExtent(inode.ino, { offset: x.offset, length: x.length, id: x.id, forced: x.forced });
    }
  }
  return top!;
}
