/**
 * `isg restore`: a published tree (or a subtree of it) written out to a local directory, with
 * files, directories, symlinks, hard links, modes, owners (as root), times, xattrs and holes.
 *
 * Decisions (why):
 * - Data comes through the block store's read path (`readBlock`: the local tier, else the
 *   backends' data shards, parity only for a missing or damaged shard; decoded off this thread),
 *   and tree and chunk-list objects the same way. Nothing is written to the data directory, so a
 *   restore runs beside a mounted filesystem (a read-only session: LMDB has many readers).
 * - Memory is bounded whatever the file sizes: a file streams block by block, every block read
 *   takes its bytes from one budget of in-flight bytes (and one of concurrent reads), and a long
 *   chunk list is read one chunk-list object at a time. Memory grows with the number of entries
 *   (the scan keeps them, for totals and hard links), never with their sizes.
 * - Small files go in batches (a new restore, with the addon): blocks decoded straight from
 *   their local-tier or shard files and the files written with their attributes, 32 files per
 *   call to the addon (writeBatch). Per file, the trips to the libuv pool (eight with
 *   fs.promises) cost the JS thread more than the syscalls: on two busy cores 764 files/s, against
 *   restic's 1650. Any file that fails there goes the usual way, which reads around damage.
 * - Holes are never written: a file gets its extents at their offsets and is truncated to its size.
 * - Order: directories are made first (owner-writable, whatever their mode), then files in
 *   parallel (a file's content, then owner, mode, xattrs, its other hard-link names (joined by
 *   the entries' `link` identity), and its times last), then symlinks, then each
 *   directory's owner, mode, xattrs and times, deepest first: a directory's mtime is set once
 *   nothing more is made inside it, and a read-only directory is read-only only at the end.
 * - Resumable: the destination holds a marker (RESTORE_MARKER: the tree's id and path) while a
 *   restore runs; it goes when the restore completes. A destination with the marker of the same
 *   tree and path is resumed without --overwrite. A file is complete when its size and mtime
 *   (nanoseconds) are the entry's: its mtime is set last, after its content and other
 *   attributes, so a file that has it was finished. A file that is not complete is checked
 *   extent by extent against the extents' block ids (keyed hash, in a codec worker), and only
 *   extents that differ are read and written. Complete files, directories and links in place
 *   are left untouched (same inode, same ctime).
 * - --overwrite over a directory that is not an interrupted restore of this tree: complete
 *   files (size and mtime, as above: rsync's quick check) are kept, any other file is written
 *   anew; names in the destination that the tree lacks are left alone.
 * - What cannot be restored (a block or object damaged beyond the erasure code, an xattr the
 *   destination refuses) is named in `failed`; everything else is restored. A failed file keeps
 *   a wrong mtime, so a later run tries it again.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ObjectKind } from '../block/codec';
import type { FilePart } from '../block/pool';
import type { FileAttrs, RestoredFileSpec } from '../native/addon';
import { IsgError } from '../errors';
import { binding } from '../native';
import { decodeChunkList, decodeTreeObject, EntryType, FetchObject, readDirectory, TreeEntry, TreeExtent } from './tree';

/** The marker file of a restore in progress: inside a directory destination, beside a file one. */
export const RESTORE_MARKER = '.isg-restore-in-progress';

/** A destination that cannot be used (exists and is not empty, not a directory, ...). */
export class RestoreRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RestoreRefusedError';
  }
}

/** A path that the tree does not hold. */
export class RestorePathError extends IsgError {
  constructor(message: string) {
    super('missing', message);
    this.name = 'RestorePathError';
  }
}

export interface RestoreDeps {
  /** Verified plaintext of a data block (BlockStore.readPlain). */
  readBlock: (id: Buffer) => Promise<Buffer>;
  /** Verified plaintext of a tree or chunk-list object. */
  fetch: FetchObject;
  /** The block id `data` would have (CodecPool.idOf: off this thread); takes `data` over. */
  idOf: (data: Buffer) => Promise<Buffer>;
  /**
   * Optional, both or neither: where a block's encoded bytes lie in local files
   * (BlockStore.localParts), and files made anew from such blocks, many in one call
   * (CodecPool.writeFiles). With them a new restore writes its small files in batches.
   */
  localParts?: (id: Buffer) => FilePart[] | null;
  writeFiles?: (files: RestoredFileSpec[]) => Promise<(Error | null)[]>;
  /** Optional: warms the store's memory with these objects, many per call (BlockStore.prefetchBatch). */
  prefetch?: (ids: Buffer[]) => Promise<void>;
}

export interface RestoreProgress {
  /** Names done (files, their other hard-link names, symlinks; not directories) and their total. */
  files: number;
  totalFiles: number;
  /** Logical bytes of files done (holes count) and their total. */
  bytes: number;
  totalBytes: number;
}

export interface RestoreOptions {
  /** Top object of the tree (resolveTreeRef). */
  root: Buffer;
  /** Path inside the tree ('/': all of it). */
  path: string;
  dest: string;
  overwrite?: boolean;
  /** Block reads at once (default 16). */
  reads?: number;
  /** Bytes of blocks read and not yet written, at most (default 64 MiB). */
  inflightBytes?: number;
  /** Files restored at once (default 32). */
  files?: number;
  onProgress?: (p: RestoreProgress) => void;
}

export interface RestoreResult {
  path: string;
  dest: string;
  /** The destination held an interrupted restore of this tree. */
  resumed: boolean;
  files: number;
  directories: number;
  symlinks: number;
  /** Names made as further hard links to a file. */
  hardLinks: number;
  /** Device, fifo and socket entries (not restored: named in `skipped`). */
  skipped: string[];
  /** Logical bytes of the files restored. */
  bytes: number;
  /** Bytes read from the store and written. */
  bytesWritten: number;
  /** Files already complete (left untouched), and bytes of extents found already right. */
  filesKept: number;
  bytesKept: number;
  /** What could not be restored, by path in the destination. */
  failed: { path: string; error: string }[];
  seconds: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const isRoot = process.getuid?.() === 0;

/** Bytes in flight and reads at once: a block read waits for both. */
class Budget {
  private used = 0;
  private running = 0;
  private waiting: (() => void)[] = [];
  constructor(
    private readonly bytes: number,
    private readonly reads: number,
  ) {}
  async take(n: number): Promise<number> {
    n = Math.min(n, this.bytes);
    while (this.used + n > this.bytes || this.running >= this.reads) await new Promise<void>((r) => this.waiting.push(r));
    this.used += n;
    this.running++;
    return n;
  }
  give(n: number): void {
    this.used -= n;
    this.running--;
    for (const w of this.waiting.splice(0)) w();
  }
}

/** Runs `fn` over `items`, `width` at a time. */
async function eachLimited<T>(items: T[], width: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(width, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]);
  });
  await Promise.all(lanes);
}

function entryName(e: TreeEntry): string {
  const name = utf8.decode(e.name);
  if (!name || name.includes('/') || name === '.' || name === '..' || name.includes('\0'))
    throw new IsgError('corrupt', `tree object: bad name ${JSON.stringify(name)}`);
  return name;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The entry at `p` in the tree under `root` (the top object's one entry for '/'). */
async function resolvePath(root: Buffer, p: string, fetch: FetchObject): Promise<TreeEntry> {
  const top = decodeTreeObject(await fetch(root, ObjectKind.tree));
  if (!('entries' in top) || top.entries.length !== 1 || top.entries[0].type !== EntryType.dir)
    throw new IsgError('corrupt', 'tree object: the top object must hold one directory entry');
  let e = top.entries[0];
  const parts = p.split('/').filter((s) => s && s !== '.');
  for (let i = 0; i < parts.length; i++) {
    if (parts[i] === '..') throw new RestorePathError(`path ${JSON.stringify(p)}: '..' is not allowed`);
    const here = '/' + parts.slice(0, i).join('/');
    if (e.type !== EntryType.dir) throw new RestorePathError(`path ${JSON.stringify(p)}: ${here} is not a directory in this tree`);
    const want = Buffer.from(parts[i]);
    const next = (await readDirectory(e.dir!, fetch)).find((c) => c.name.equals(want));
    if (!next) throw new RestorePathError(`path ${JSON.stringify(p)}: no ${JSON.stringify(parts[i])} in ${here} of this tree`);
    e = next;
  }
  return e;
}

interface Item {
  entry: TreeEntry;
  /** Path in the destination. */
  dest: string;
  depth: number;
}

/** Stats a path without following a symlink; null when nothing is there. */
async function lstatOrNull(p: string): Promise<fs.BigIntStats | null> {
  try {
    return await fs.promises.lstat(p, { bigint: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** Sets atime and mtime in nanoseconds (the addon), else in the microseconds Node's utimes keep. */
function setTimes(p: string, e: TreeEntry): void {
  if (binding) return binding.lutimesNs(p, e.atimeNs, e.mtimeNs);
  fs.lutimesSync(p, Number(e.atimeNs) / 1e9, Number(e.mtimeNs) / 1e9);
}

/** Whether `st` already has the entry's mtime (to the precision setTimes gives). */
function sameMtime(st: fs.BigIntStats, e: TreeEntry): boolean {
  if (binding) return st.mtimeNs === e.mtimeNs;
  const d = st.mtimeNs - e.mtimeNs;
  return d < 1000n && d > -1000n;
}

function setXattrs(p: string, e: TreeEntry): void {
  if (!e.xattrs.length) return;
  if (!binding) throw new Error(`${e.xattrs.length} xattr(s) not restored: setting them needs the native addon (npm run setup)`);
  for (const x of e.xattrs) binding.lsetxattr(p, x.name.toString('utf8'), x.value);
}

/** Removes whatever is at `p` (a file, a symlink, a directory tree). */
function removeAt(p: string): Promise<void> {
  return fs.promises.rm(p, { recursive: true, force: true });
}

export async function restoreTreeTo(deps: RestoreDeps, o: RestoreOptions): Promise<RestoreResult> {
  const started = Date.now();
  const top = await resolvePath(o.root, o.path, deps.fetch);
  const dest = path.resolve(o.dest);
  const isDir = top.type === EntryType.dir;
  const marker = isDir ? path.join(dest, RESTORE_MARKER) : `${dest}${RESTORE_MARKER}`;
  const markerText = JSON.stringify({ root: o.root.toString('hex'), path: o.path }) + '\n';
  const resumed = await checkDestination(dest, isDir, marker, markerText, !!o.overwrite);

  const result: RestoreResult = {
    path: o.path,
    dest,
    resumed,
    files: 0,
    directories: 0,
    symlinks: 0,
    hardLinks: 0,
    skipped: [],
    bytes: 0,
    bytesWritten: 0,
    filesKept: 0,
    bytesKept: 0,
    failed: [],
    seconds: 0,
  };
  const failedDirs = new Set<string>();
  const fail = (p: string, e: unknown) => result.failed.push({ path: p, error: message(e) });

  // 1. The scan: every entry under the top, directories made as they are found.
  const dirs: Item[] = [];
  const files: Item[] = [];
  const links = new Map<Item, Item[]>(); // a file's other names
  const symlinks: Item[] = [];
  const byLink = new Map<number, Item>();
  const progress: RestoreProgress = { files: 0, totalFiles: 0, bytes: 0, totalBytes: 0 };
  const budget = new Budget(o.inflightBytes ?? 64 * 1024 * 1024, o.reads ?? 16);
  const onBytes = (n: number) => {
    progress.bytes += n;
  };
  // A new restore writes small files in batches while the scan goes on (Batcher); those that
  // fail there, and all others, are written after the scan.
  const batcher =
    !resumed && !o.overwrite && deps.localParts && deps.writeFiles
      ? new Batcher((batch) =>
          writeBatch(deps, batch, budget, result)
            .catch(() => new Set<Item>()) // all of it the usual way
            .then((done) => {
              for (const f of batch) {
                if (!done.has(f)) {
                  files.push(f); // the usual way: it reads around damage, or names the failure
                  continue;
                }
                result.files++;
                result.bytes += f.entry.size;
                progress.files++;
                onBytes(f.entry.size);
              }
            }),
        )
      : null;
  const add = (item: Item) => {
    const e = item.entry;
    if (e.type === EntryType.dir) return void dirs.push(item);
    progress.totalFiles++;
    if (e.type === EntryType.symlink) return void symlinks.push(item);
    if (e.type !== EntryType.file) {
      progress.files++;
      return void result.skipped.push(item.dest);
    }
    const primary = byLink.get(e.link);
    if (primary) return void links.set(primary, [...(links.get(primary) ?? []), item]);
    progress.totalBytes += e.size;
    // One name (nlink 1): no other name of it can come later in the scan.
    if (batcher && e.nlink === 1 && e.size <= BATCH_BYTES) return batcher.add(item);
    byLink.set(e.link, item);
    files.push(item);
  };
  add({ entry: top, dest, depth: 0 });
  if (!isDir) await fs.promises.writeFile(marker, markerText);
  // Level by level, 16 directories at a time (their objects are small reads, latency-bound).
  for (let level = dirs.slice(); level.length;) {
    const found: Item[] = [];
    // The directories' objects read ahead, 128 at a time, in batches (fewer trips to the pool).
    for (let i = 0; i < level.length; i += 128) {
      const slice = level.slice(i, i + 128);
      await deps.prefetch?.(slice.map((d) => d.entry.dir!));
      await eachLimited(slice, 16, async (d) => {
        if (!(await makeDir(d.dest, d.depth === 0, fail))) {
          failedDirs.add(d.dest);
          return;
        }
        if (d.depth === 0) await fs.promises.writeFile(marker, markerText);
        let list: TreeEntry[];
        try {
          list = await readDirectory(d.entry.dir!, deps.fetch);
        } catch (e) {
          fail(d.dest, new Error(`directory not restored: its listing cannot be read: ${message(e)}`));
          return;
        }
        for (const e of list) {
          let name: string;
          try {
            name = entryName(e);
          } catch (err) {
            fail(path.join(d.dest, '?'), err);
            continue;
          }
          if (d.depth === 0 && name === RESTORE_MARKER) {
            fail(path.join(d.dest, name), new Error('not restored: the name of the restore marker'));
            continue;
          }
          found.push({ entry: e, dest: path.join(d.dest, name), depth: d.depth + 1 });
        }
      });
    }
    const before = dirs.length;
    for (const item of found) add(item);
    level = dirs.slice(before);
  }
  const report = o.onProgress ? () => o.onProgress!(progress) : () => undefined;
  const ticker = o.onProgress ? setInterval(report, 200) : undefined;
  ticker?.unref();

  try {
    // 2. Files and symlinks.
    await batcher?.finish();
    await eachLimited(files, o.files ?? 32, async (f) => {
      try {
        const names = links.get(f) ?? [];
        const kept = await restoreFile(deps, f, names, budget, resumed || !!o.overwrite, result, onBytes);
        if (kept) result.filesKept++;
        result.hardLinks += names.length;
        progress.files += names.length;
        result.files++;
        result.bytes += f.entry.size;
      } catch (e) {
        fail(f.dest, e);
      }
      progress.files++;
    });
    for (const s of symlinks) {
      try {
        await restoreSymlink(s);
        result.symlinks++;
      } catch (e) {
        fail(s.dest, e);
      }
      progress.files++;
    }
    // 3. Directories' attributes, deepest first; the marker goes before the top's times.
    await fs.promises.rm(marker, { force: true });
    const order = [...dirs].sort((a, b) => b.depth - a.depth);
    for (const d of order) {
      if (failedDirs.has(d.dest)) continue;
      try {
        await setAttributes(d.dest, d.entry);
        result.directories++;
      } catch (e) {
        fail(d.dest, e);
      }
    }
    if (result.failed.length) await fs.promises.writeFile(marker, markerText).catch(() => undefined); // a rerun resumes
  } finally {
    if (ticker) clearInterval(ticker);
    report();
  }
  result.seconds = (Date.now() - started) / 1000;
  return result;
}

/** Refuses a destination in use (unless `overwrite`); true when it holds an interrupted restore of this tree. */
async function checkDestination(dest: string, isDir: boolean, marker: string, markerText: string, overwrite: boolean): Promise<boolean> {
  const parent = path.dirname(dest);
  const pst = await lstatOrNull(parent);
  if (!pst?.isDirectory()) throw new RestoreRefusedError(`destination ${dest}: its parent ${parent} is not a directory`);
  const st = await lstatOrNull(dest);
  if (!st) return false;
  const held = await fs.promises.readFile(marker, 'utf8').catch(() => null);
  if (held === markerText) return true;
  if (held !== null && !overwrite)
    throw new RestoreRefusedError(
      `destination ${dest} holds an interrupted restore of another tree or path (${marker}); give --overwrite to restore over it`,
    );
  if (overwrite) return false;
  if (isDir && st.isDirectory()) {
    if ((await fs.promises.readdir(dest)).length === 0) return false;
    throw new RestoreRefusedError(`destination ${dest} exists and is not empty; give --overwrite to restore into it`);
  }
  throw new RestoreRefusedError(`destination ${dest} exists; give --overwrite to replace it`);
}

/** Makes a directory (owner-writable until its attributes are set); false when it could not. */
async function makeDir(p: string, top: boolean, fail: (p: string, e: unknown) => void): Promise<boolean> {
  try {
    // Made straight away in the usual case (nothing there): one call, not a stat before it, and
    // synchronous (a command, not a FUSE handler): a round trip to the libuv pool costs this
    // thread more than the syscall (2193 directories: 0.48 s of it on two busy cores, measured).
    if (!top) {
      try {
        fs.mkdirSync(p, { mode: 0o700 });
        return true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    }
    const st = await lstatOrNull(p);
    if (st && !st.isDirectory()) {
      if (top) throw new RestoreRefusedError(`destination ${p} is not a directory`);
      await removeAt(p);
    }
    if (!st || !st.isDirectory()) await fs.promises.mkdir(p, { mode: 0o700 });
    else if ((Number(st.mode) & 0o700) !== 0o700) await fs.promises.chmod(p, Number(st.mode & 0o7777n) | 0o700);
    return true;
  } catch (e) {
    if (e instanceof RestoreRefusedError) throw e;
    fail(p, e);
    return false;
  }
}

/** Owner (as root), mode, xattrs, then times, of what is at `p`. */
async function setAttributes(p: string, e: TreeEntry): Promise<void> {
  if (isRoot) await fs.promises.lchown(p, e.uid, e.gid);
  if (e.type !== EntryType.symlink) await fs.promises.chmod(p, e.mode & 0o7777);
  setXattrs(p, e);
  setTimes(p, e);
}

async function restoreSymlink(s: Item): Promise<void> {
  const target = s.entry.target ?? Buffer.alloc(0);
  const st = await lstatOrNull(s.dest);
  if (st?.isSymbolicLink() && (await fs.promises.readlink(s.dest, { encoding: 'buffer' })).equals(target)) {
    if (sameMtime(st, s.entry)) return;
  } else {
    if (st) await removeAt(s.dest);
    await fs.promises.symlink(target.toString('utf8'), s.dest);
  }
  await setAttributes(s.dest, s.entry);
}

/** A file's extents, one chunk-list object at a time (a long list is never whole in memory). */
async function* extentsOf(e: TreeEntry, fetch: FetchObject): AsyncGenerator<TreeExtent> {
  const c = e.chunks;
  if (!c) return;
  if ('inline' in c) return yield* c.inline;
  let n = 0;
  for (const id of c.objects) {
    const list = decodeChunkList(await fetch(id, ObjectKind.chunkList));
    n += list.length;
    yield* list;
  }
  if (n !== c.extents) throw new IsgError('corrupt', `chunk list of ${n} extents, its entry says ${c.extents}`);
}

/** The other names of a file's inode (made unless they are there). */
async function linkNames(primary: Item, names: Item[]): Promise<void> {
  if (!names.length) return;
  const pst = await fs.promises.lstat(primary.dest, { bigint: true });
  for (const item of names) {
    const st = await lstatOrNull(item.dest);
    if (st && st.ino === pst.ino && st.dev === pst.dev) continue;
    if (st) await removeAt(item.dest);
    await fs.promises.link(primary.dest, item.dest);
  }
}

/**
 * A new restore writes files up to BATCH_BYTES in batches of at most BATCH_FILES files and
 * BATCH_BYTES bytes, BATCHES_AT_ONCE batches at a time, each batch one call to the addon that
 * decodes their blocks straight from the shard (or local-tier) files and writes the files with
 * their attributes (writeBatch). File by file, the JS thread's share of the round trips to the
 * libuv pool (two per file even with writeFileAttrs) bounded files/s on two cores.
 */
const BATCH_BYTES = 4 * 1024 * 1024;
const BATCH_FILES = 32;
const BATCHES_AT_ONCE = 4;

/** Groups files into batches as they come and runs `run` on each, BATCHES_AT_ONCE at a time. */
class Batcher {
  private cur: Item[] = [];
  private bytes = 0;
  private readonly queued: Item[][] = [];
  private running = 0;
  private idle: (() => void)[] = [];
  constructor(private readonly run: (batch: Item[]) => Promise<void>) {}
  add(f: Item): void {
    if (this.cur.length && (this.cur.length >= BATCH_FILES || this.bytes + f.entry.size > BATCH_BYTES)) this.close();
    this.cur.push(f);
    this.bytes += f.entry.size;
  }
  /** Resolves when every file added is done (`run` never rejects). */
  finish(): Promise<void> {
    this.close();
    if (!this.running) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }
  private close(): void {
    if (this.cur.length) this.queued.push(this.cur);
    this.cur = [];
    this.bytes = 0;
    this.pump();
  }
  private pump(): void {
    while (this.running < BATCHES_AT_ONCE && this.queued.length) {
      this.running++;
      void this.run(this.queued.shift()!).finally(() => {
        this.running--;
        this.pump();
        if (!this.running && !this.queued.length) for (const r of this.idle.splice(0)) r();
      });
    }
  }
}

/** Owner (as root), mode, xattrs and (with `times`) times of a file made anew. */
function attrsOf(e: TreeEntry, times: boolean): FileAttrs {
  return {
    size: e.size,
    mode: e.mode & 0o7777,
    ...(isRoot ? { uid: e.uid, gid: e.gid } : {}),
    xattrs: e.xattrs.map((x) => ({ name: x.name.toString('utf8'), value: x.value })),
    ...(times ? { atimeNs: e.atimeNs, mtimeNs: e.mtimeNs } : {}),
  };
}

/**
 * New files without other names, written in one call (RestoreDeps.writeFiles) when all their
 * blocks lie in local files; the files done. The others (a block not in local files, a
 * chunk-list object that cannot be read, any failure) are left for restoreFile.
 */
async function writeBatch(deps: RestoreDeps, batch: Item[], budget: Budget, result: RestoreResult): Promise<Set<Item>> {
  const n = await budget.take(batch.reduce((s, f) => s + f.entry.size, 0));
  const done = new Set<Item>();
  try {
    const specs: RestoredFileSpec[] = [];
    const items: Item[] = [];
    for (const f of batch) {
      try {
        const extents: RestoredFileSpec['extents'] = [];
        for await (const x of extentsOf(f.entry, deps.fetch)) {
          const parts = deps.localParts!(x.id);
          if (!parts) throw new Error('not in local files');
          extents.push({ id: x.id, parts, offset: x.offset, length: x.length });
        }
        specs.push({ path: f.dest, extents, ...attrsOf(f.entry, true) });
        items.push(f);
      } catch {
        /* restoreFile's */
      }
    }
    if (!specs.length) return done;
    const outcomes = await deps.writeFiles!(specs);
    outcomes.forEach((err, i) => {
      if (err) return;
      done.add(items[i]);
      for (const x of specs[i].extents) result.bytesWritten += x.length;
    });
    return done;
  } finally {
    budget.give(n);
  }
}

/**
 * Files up to this size are read whole, then written with their attributes in one trip to the
 * libuv pool (writeSmallFile); larger ones stream block by block.
 */
const SMALL_FILE = 4 * 1024 * 1024;

/** The bytes of an extent, read from the store; a block shorter than its extent is damage. */
async function readExtent(deps: RestoreDeps, x: TreeExtent): Promise<Buffer> {
  const plain = await deps.readBlock(x.id);
  if (plain.length < x.length)
    throw new IsgError('corrupt', `block ${x.id.toString('hex').slice(0, 16)}… holds ${plain.length} bytes, its extent ${x.length}`);
  return plain.subarray(0, x.length);
}

/**
 * A small file made anew: its blocks read at once (one take of the budget for the whole file),
 * then content, owner, mode, xattrs and (without other names) times in one native call
 * (writeFileAttrs: with fs.promises a file took eight round trips to the libuv pool, and their
 * cost on this thread bounded files/s). Other names are linked before the times, as below.
 */
async function writeSmallFile(deps: RestoreDeps, f: Item, names: Item[], budget: Budget, result: RestoreResult): Promise<void> {
  const e = f.entry;
  const n = await budget.take(e.size);
  try {
    const reads: Promise<{ data: Buffer; offset: number }>[] = [];
    for await (const x of extentsOf(e, deps.fetch)) reads.push(readExtent(deps, x).then((data) => ({ data, offset: x.offset })));
    const writes = await Promise.all(reads);
    await binding!.writeFileAttrs(f.dest, writes, attrsOf(e, !names.length));
    for (const w of writes) result.bytesWritten += w.data.length;
  } finally {
    budget.give(n);
  }
  if (!names.length) return;
  await linkNames(f, names);
  setTimes(f.dest, e);
}

/**
 * One file's content, attributes and other names (`names`: made before its times, so a file
 * with its mtime has them all and is left untouched by a later run). `reuse`: what is there may be kept (a resume or
 * --overwrite): a complete file is left alone (returns true), extents already right are not
 * written again (a resume only: an interrupted restore of this tree wrote nothing but its extents).
 */
async function restoreFile(
  deps: RestoreDeps,
  f: Item,
  names: Item[],
  budget: Budget,
  reuse: boolean,
  result: RestoreResult,
  onBytes: (n: number) => void,
): Promise<boolean> {
  const e = f.entry;
  let st = reuse ? await lstatOrNull(f.dest) : null;
  if (st && !st.isFile()) {
    await removeAt(f.dest);
    st = null;
  }
  if (st && st.size === BigInt(e.size) && sameMtime(st, e)) {
    result.bytesKept += e.size;
    onBytes(e.size);
    await linkNames(f, names);
    return true;
  }
  const check = st !== null && result.resumed;
  if (!check && e.size <= SMALL_FILE && binding?.writeFileAttrs) {
    await writeSmallFile(deps, f, names, budget, result);
    onBytes(e.size);
    return false;
  }
  const fh = await fs.promises.open(f.dest, check ? 'r+' : 'w', 0o600);
  let extentBytes = 0;
  try {
    const oldSize = st ? Number(st.size) : 0;
    const inFlight = new Set<Promise<void>>();
    let firstError: unknown;
    for await (const x of extentsOf(e, deps.fetch)) {
      if (firstError) break;
      extentBytes += x.length;
      const n = await budget.take(x.length);
      const p = (async () => {
        try {
          if (check && x.offset + x.length <= oldSize) {
            const have = Buffer.allocUnsafeSlow(x.length);
            const { bytesRead } = await fh.read(have, 0, x.length, x.offset);
            if (bytesRead === x.length && (await deps.idOf(have)).equals(x.id)) {
              result.bytesKept += x.length;
              return;
            }
          }
          await fh.write(await readExtent(deps, x), 0, x.length, x.offset);
          result.bytesWritten += x.length;
        } finally {
          budget.give(n);
          onBytes(x.length);
        }
      })().catch((err: unknown) => {
        firstError ??= err;
      });
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
    }
    await Promise.all(inFlight);
    if (firstError) throw firstError;
    await fh.truncate(e.size);
    if (isRoot) await fh.chown(e.uid, e.gid);
    await fh.chmod(e.mode & 0o7777);
  } finally {
    await fh.close();
  }
  onBytes(Math.max(0, e.size - extentBytes)); // holes
  setXattrs(f.dest, e);
  await linkNames(f, names);
  setTimes(f.dest, e);
  return false;
}
