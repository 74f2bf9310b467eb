/**
 * Tree views (`isg mount --snapshot <ref>`): the namespace of a published tree, materialised once
 * into its own sealed LMDB under `<data-dir>/views/<root-hex>/` by the tree restore (./tree.ts
 * restoreTree, tree objects fetched through the block store), and opened read-only for every later
 * mount of the same root. The view holds names, inodes, xattrs and chunk maps; the data stays in
 * the repository's blocks, read through the repository's own block store (docs/architecture.md
 * "Tree views").
 *
 * Decisions (why):
 * - A separate database, not rows in the repository's: the live daemon holds the write lock and
 *   the repository's LMDB may only be opened read-only by a second process; and a view never
 *   changes, so it is built once and reused (a root id names one tree forever).
 * - Built in a temporary directory, which gets the `complete` marker last and is then renamed into
 *   place: a crash leaves only a temporary (removed by the next build once its process is gone),
 *   never a view that looks complete and is not. Two builds of one root at once both finish; the
 *   second rename finds the first's view and keeps it.
 * - The view records where each data block it names lies (its pack location and pack row), copied
 *   from the repository's metadata when it is built: the live filesystem drops the location of a
 *   block it no longer references (an overwrite, then a sweep), and the view reads it from its
 *   pack all the same. A block the live filesystem had already dropped when the view was built
 *   cannot be located (the published tree `latest` holds no references; snapshots do).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Meta } from '../meta/meta';
import { MetaSeal } from '../meta/seal';
import { fsyncPath } from '../util/fsync';
import { processAlive } from '../util/process';
import { FetchObject, restoreTree } from './tree';

/** The file a view gets last: present means the view is complete. */
export const VIEW_COMPLETE = 'complete';

/** Where a block lies, as the repository's metadata says (undefined: nowhere known). */
export type BlockLocator = Pick<Meta, 'getLoc' | 'getPack'>;

export interface TreeViewOptions {
  /** `<data-dir>/views`. */
  viewsDir: string;
  /** The tree's top object. */
  root: Buffer;
  seal: MetaSeal;
  /** Reads a tree or chunk-list object (through the block store). */
  fetch: FetchObject;
  /** The repository's block locations, copied into the view for the blocks it names. */
  locator: BlockLocator;
  /** Reports objects read and entries made while building. */
  onProgress?: (objects: number, entries: number) => void;
}

/** The directory of the view of `root`. */
export function viewDir(viewsDir: string, root: Buffer): string {
  return path.join(viewsDir, root.toString('hex'));
}

/** Whether the view of `root` is built (a later mount opens it without reading the tree). */
export function viewComplete(viewsDir: string, root: Buffer): boolean {
  return fs.existsSync(path.join(viewDir(viewsDir, root), VIEW_COMPLETE));
}

/**
 * Opens the view of `root` read-only, building it first when it is not complete. The caller
 * closes the returned Meta.
 */
export async function openTreeView(o: TreeViewOptions): Promise<Meta> {
  const dir = viewDir(o.viewsDir, o.root);
  if (!viewComplete(o.viewsDir, o.root)) await buildView(o, dir);
  return Meta.open(dir, o.seal, true);
}

// No dot: lmdb-js takes a path with an extension for a file, not a directory.
const TMP_INFIX = '-building-';

async function buildView(o: TreeViewOptions, dir: string): Promise<void> {
  await fs.promises.mkdir(o.viewsDir, { recursive: true });
  await removeDeadTemporaries(o.viewsDir, path.basename(dir));
  const tmp = `${dir}${TMP_INFIX}${process.pid}-${Date.now()}`;
  await fs.promises.mkdir(tmp);
  try {
    const meta = await Meta.open(tmp, o.seal);
    try {
      meta.initialise(process.getuid?.() ?? 0, process.getgid?.() ?? 0);
      await restoreTree(meta, o.root, o.fetch, o.onProgress);
      copyLocations(meta, o.locator);
      await meta.sync();
    } finally {
      await meta.close();
    }
    const marker = path.join(tmp, VIEW_COMPLETE);
    await fs.promises.writeFile(marker, `${o.root.toString('hex')}\n`);
    await fsyncPath(marker, 'file');
    await fsyncPath(tmp, 'dir');
    // An incomplete directory in the way (not ours to keep: views are only renamed in complete).
    if (fs.existsSync(dir) && !fs.existsSync(path.join(dir, VIEW_COMPLETE))) await fs.promises.rm(dir, { recursive: true, force: true });
    try {
      await fs.promises.rename(tmp, dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // Another build of the same root finished first: its view is the same tree.
      if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !fs.existsSync(path.join(dir, VIEW_COMPLETE))) throw e;
    }
    await fsyncPath(o.viewsDir, 'dir');
  } finally {
    await fs.promises.rm(tmp, { recursive: true, force: true });
  }
}

/** The pack location (and pack row) of every block the view names, from the repository. */
function copyLocations(view: Meta, locator: BlockLocator): void {
  view.txn(() => {
    for (const { id } of [...view.allBlocks()]) {
      const loc = locator.getLoc(id);
      if (!loc) continue;
      view.putLoc(id, loc);
      if (!view.getPack(loc.pack)) {
        const pack = locator.getPack(loc.pack);
        if (pack) view.putPack(loc.pack, pack);
      }
    }
  });
}

/** Temporaries of builds of `name` whose process is gone (a crash, a kill). */
async function removeDeadTemporaries(viewsDir: string, name: string): Promise<void> {
  for (const e of await fs.promises.readdir(viewsDir)) {
    if (!e.startsWith(name + TMP_INFIX)) continue;
    const pid = Number(e.slice(name.length + TMP_INFIX.length).split('-')[0]);
    if (Number.isSafeInteger(pid) && pid !== process.pid && processAlive(pid)) continue;
    await fs.promises.rm(path.join(viewsDir, e), { recursive: true, force: true });
  }
}

/** Where `primary` does not know a block, `fallback` may (a view's copies of the locations). */
export function fallbackLocator(primary: BlockLocator, fallback: () => BlockLocator | undefined): BlockLocator {
  return {
    getLoc: (id) => primary.getLoc(id) ?? fallback()?.getLoc(id),
    getPack: (id) => primary.getPack(id) ?? fallback()?.getPack(id),
  };
}
