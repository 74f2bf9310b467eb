/**
 * `isg check`: every block a file or the publish state refers to exists, decrypts and hashes to
 * its id; refcounts equal the references; names point at inodes and link counts match them.
 */
import { constants } from 'node:fs';
import { Meta, ROOT_INO } from '../meta/meta';
import { BlockStore } from '../store/blockstore';

const { S_IFDIR, S_IFMT } = constants;

export interface CheckReport {
  problems: string[];
  blocksChecked: number;
  inodesChecked: number;
}

export async function checkRepository(
  meta: Meta,
  store: BlockStore,
  onProgress?: (done: number, total: number) => void,
): Promise<CheckReport> {
  const problems: string[] = [];
  const refs = new Map<string, number>();
  for (const { ino, extent } of meta.allExtents()) {
    const hex = extent.id.toString('hex');
    refs.set(hex, (refs.get(hex) ?? 0) + 1);
    if (!meta.getInode(ino)) problems.push(`extent at ${extent.offset} of missing inode ${ino}`);
  }
  // Tree objects of the last publish, and what it releases after the next head.
  for (const id of meta.publishReferences()) {
    const hex = id.toString('hex');
    refs.set(hex, (refs.get(hex) ?? 0) + 1);
  }
  const blocks = [...meta.allBlocks()];
  for (const [hex, n] of refs) {
    const row = meta.getBlock(Buffer.from(hex, 'hex'));
    if (!row) problems.push(`block ${hex} is referenced ${n}× but not in the block table`);
  }
  let done = 0;
  const queue = blocks.slice();
  const worker = async () => {
    for (let b = queue.pop(); b; b = queue.pop()) {
      const hex = b.id.toString('hex');
      const want = refs.get(hex) ?? 0;
      if (b.row.refs !== want) problems.push(`block ${hex}: refcount ${b.row.refs}, but ${want} references`);
      if (b.row.refs > 0 || want > 0 || b.row.death !== undefined) {
        // (a held block: a snapshot names it)
        try {
          await store.verify(b.id);
        } catch (e) {
          problems.push(`block ${hex}: ${(e as Error).message}`);
        }
      }
      onProgress?.(++done, blocks.length);
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);

  // Names and link counts.
  const links = new Map<number, number>();
  const subdirs = new Map<number, number>();
  let inodes = 0;
  for (const i of meta.allInodes()) {
    inodes++;
    if ((i.mode & S_IFMT) !== S_IFDIR) continue;
    for (const e of meta.entries(i.ino)) {
      const child = meta.getInode(e.ino);
      if (!child) {
        problems.push(`entry '${e.name}' in directory ${i.ino} points at missing inode ${e.ino}`);
        continue;
      }
      links.set(e.ino, (links.get(e.ino) ?? 0) + 1);
      if ((child.mode & S_IFMT) === S_IFDIR) subdirs.set(i.ino, (subdirs.get(i.ino) ?? 0) + 1);
    }
  }
  const orphans = new Set(meta.orphanList());
  for (const i of meta.allInodes()) {
    const isDir = (i.mode & S_IFMT) === S_IFDIR;
    const want = isDir ? 2 + (subdirs.get(i.ino) ?? 0) : (links.get(i.ino) ?? 0);
    if (i.ino !== ROOT_INO && !links.has(i.ino) && !orphans.has(i.ino)) problems.push(`inode ${i.ino} has no name`);
    if (i.nlink !== want && !(orphans.has(i.ino) && i.nlink === 0)) problems.push(`inode ${i.ino}: nlink ${i.nlink}, but ${want} expected`);
  }
  return { problems, blocksChecked: blocks.length, inodesChecked: inodes };
}
