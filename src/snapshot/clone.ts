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
 *   planted in one transaction: a clone is whole or absent, also after a crash.
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
  /** A regular file's extents (the first name of an inode only). */
  extents?: TreeExtent[];
  /** Path inside the tree, for messages. */
  path: string;
}

export interface SubtreePlan {
  nodes: PlannedNode[];
  /** Objects read. */
  objects: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

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
  const nodes: PlannedNode[] = [{ entry, parent: -1, path: at || '/' }];
  const seen = new Set<number>();
  for (let i = 0; i < nodes.length; i++) {
    const n = nodes[i];
    if (n.entry.type === EntryType.file && !seen.has(n.entry.link)) {
      seen.add(n.entry.link);
      n.extents = await extentsOfEntry(n.entry, fetch, count);
    }
    if (n.entry.type !== EntryType.dir) continue;
    for (const e of await readDirectory(n.entry.dir!, fetch, count))
      nodes.push({ entry: e, parent: i, path: `${n.path === '/' ? '' : n.path}/${utf8.decode(e.name)}` });
  }
  return { nodes, objects };
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
    for (const x of n.extents ?? []) {
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
