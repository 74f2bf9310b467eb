/**
 * The filesystem core: POSIX semantics over src/meta (namespace, attributes, xattrs) and
 * FileData (file contents); open files, handles and write-behind live in handles.ts. Knows nothing
 * of FUSE: paths in, attributes and Buffers out, FsError with an errno name on failure. Every
 * namespace change is one LMDB transaction.
 */
import * as fs from 'node:fs';
import { constants as C } from 'node:fs';
import { Inode, Meta, nowNs, ROOT_INO } from '../meta/meta';
import { BlockStore } from '../store/blockstore';
import { DataDeps, FileData } from './filedata';
import { FsError, fsError } from './errors';
import { OpenFiles } from './handles';
import { Rounds } from '../util/rounds';
import { log } from '../log';

const { S_IFMT, S_IFDIR, S_IFREG, S_IFLNK } = C;
const NAME_MAX = 255;
const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;
const XATTR_SIZE_MAX = 65536;
const MAX_FILE_SIZE = 2 ** 50;
const O_ACCMODE = 3;
/** libfuse renames a file unlinked while open to this, and unlinks it on release. */
const HIDDEN_PREFIX = '.fuse_hidden';

/** The attributes of an inode; also the stat shape the FUSE binding reads (mount/fuse.ts FuseStat). */
export interface Attr {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  rdev: number;
  blksize: number;
  blocks: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

export interface StatFs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  namemax: number;
}

export interface Caller {
  uid: number;
  gid: number;
}

export interface FileSystemOptions {
  deps: DataDeps;
  dataDir: string; // for statfs: the disk the local tier lives on
  readOnly?: boolean;
}

const isDir = (i: Inode) => (i.mode & S_IFMT) === S_IFDIR;
const isReg = (i: Inode) => (i.mode & S_IFMT) === S_IFREG;

/** Bound of the directory cache (it is emptied when full). */
const DIR_CACHE_ENTRIES = 65536;

function splitPath(p: string): string[] {
  return p.split('/').filter((s) => s.length > 0);
}

function checkName(name: string): void {
  if (Buffer.byteLength(name) > NAME_MAX) throw fsError('ENAMETOOLONG', name.slice(0, 32) + '…');
}

export class FileSystem {
  private readonly meta: Meta;
  private readonly store: BlockStore;
  /** Open files, their handles and write-behind. */
  private readonly files: OpenFiles;
  /** Where errors of write-behind go (the daemon logs them). */
  onError?: (message: string) => void;
  /**
   * Directory path -> inode number. A directory keeps its number until it is removed or moved,
   * and rmdir and rename (the only ways) empty the cache, so an entry is never stale.
   */
  private readonly dirCache = new Map<string, number>();
  /** One sync in flight; each caller waits for a round that started after its call (see sync). */
  private readonly syncs: Rounds;

  constructor(private readonly o: FileSystemOptions) {
    this.meta = o.deps.meta;
    this.store = o.deps.store;
    this.syncs = new Rounds(() => this.meta.sync());
    this.files = new OpenFiles(o.deps, { closed: (fd) => this.closed(fd), error: (m) => this.onError?.(m) });
  }

  /**
   * Deletes what files unlinked while open left when the last process died: orphan inodes, and
   * the `.fuse_hidden*` names libfuse gives such files (it removes them on release, not on kill);
   * and block files a crash left half-written or that no committed row counts.
   */
  async recover(): Promise<void> {
    const orphans = this.meta.orphanList();
    if (orphans.length)
      this.meta.txn(() => {
        for (const ino of orphans) this.destroy(ino);
      });
    const hidden = this.meta.hiddenNames();
    if (hidden.length) {
      this.meta.txn(() => {
        for (const h of hidden) {
          const ino = this.meta.lookup(h.parent, h.name);
          const parent = this.meta.getInode(h.parent);
          if (ino !== undefined && parent) this.dropName(parent, h.name, this.inode(ino), nowNs());
          this.meta.forgetHidden(h.parent, h.name);
        }
      });
    }
    const strays = await this.store.removeTemporaries();
    if (strays) log.warn(`removed ${strays} block file(s) that a crash left without metadata`);
    await this.store.sweep();
  }

  // ---- lookup ---------------------------------------------------------------------------------

  private inode(ino: number): Inode {
    const i = this.meta.getInode(ino);
    if (!i) throw fsError('ENOENT');
    return i;
  }

  private resolve(path: string): Inode {
    const parts = splitPath(path);
    const name = parts.pop();
    const dir = this.resolveDir(parts);
    if (name === undefined) return dir;
    if (!isDir(dir)) throw fsError('ENOTDIR');
    checkName(name);
    const next = this.meta.lookup(dir.ino, name);
    if (next === undefined) throw fsError('ENOENT');
    return this.inode(next);
  }

  /**
   * The inode at the path made of `parts`, through the directory cache: deep trees (node_modules,
   * git objects) would otherwise cost two LMDB reads and a decode per component on every call.
   */
  private resolveDir(parts: string[]): Inode {
    const key = '/' + parts.join('/');
    const cached = this.dirCache.get(key);
    if (cached !== undefined) {
      const hit = this.meta.getInode(cached);
      if (hit) return hit;
      this.dirCache.clear(); // cannot happen while rmdir and rename clear it; be safe anyway
    }
    let cur = this.inode(ROOT_INO);
    let prefix = '';
    for (const name of parts) {
      if (!isDir(cur)) throw fsError('ENOTDIR');
      checkName(name);
      const next = this.meta.lookup(cur.ino, name);
      if (next === undefined) throw fsError('ENOENT');
      cur = this.inode(next);
      prefix += '/' + name;
      if (isDir(cur)) {
        if (this.dirCache.size >= DIR_CACHE_ENTRIES) this.dirCache.clear();
        this.dirCache.set(prefix, cur.ino);
      }
    }
    return cur;
  }

  private resolveParent(path: string): { parent: Inode; name: string } {
    const parts = splitPath(path);
    const name = parts.pop();
    if (name === undefined) throw fsError('EBUSY', 'the root has no parent');
    checkName(name);
    const parent = this.resolveDir(parts);
    if (!isDir(parent)) throw fsError('ENOTDIR');
    return { parent, name };
  }

  get isReadOnly(): boolean {
    return !!this.o.readOnly;
  }

  private writable(): void {
    if (this.o.readOnly) throw fsError('EROFS');
  }

  private touchDir(dir: Inode, t: bigint, nlinkDelta = 0): void {
    dir.mtimeNs = t;
    dir.ctimeNs = t;
    dir.nlink += nlinkDelta;
    this.meta.putInode(dir);
  }

  private attrOf(i: Inode): Attr {
    const fd = this.files.dataOf(i.ino);
    let size = i.size;
    let { mtimeNs, ctimeNs } = i;
    if (fd) {
      size = fd.size;
      if (fd.pendingTimes) ({ mtimeNs, ctimeNs } = fd.pendingTimes);
    }
    let stored = size;
    if (isReg(i)) {
      if (fd) stored = fd.storedBytes;
      else {
        stored = 0;
        for (const e of this.meta.extentsOf(i.ino)) stored += e.length;
      }
    }
    return {
      ino: i.ino,
      mode: i.mode,
      nlink: i.nlink,
      uid: i.uid,
      gid: i.gid,
      size,
      rdev: i.rdev,
      blksize: 4096,
      blocks: Math.ceil(stored / 512),
      atimeNs: i.atimeNs,
      mtimeNs,
      ctimeNs,
    };
  }

  getattr(path: string): Attr {
    return this.attrOf(this.resolve(path));
  }

  fgetattr(fh: number): Attr {
    return this.attrOf(this.inode(this.files.handle(fh).ino));
  }

  access(path: string): void {
    this.resolve(path); // permission bits are checked by the kernel (default_permissions)
  }

  readdir(path: string): string[] {
    const dir = this.resolve(path);
    if (!isDir(dir)) throw fsError('ENOTDIR');
    const names = ['.', '..'];
    for (const e of this.meta.entries(dir.ino)) names.push(e.name);
    return names;
  }

  readlink(path: string): string {
    const i = this.resolve(path);
    if ((i.mode & S_IFMT) !== S_IFLNK || i.target === undefined) throw fsError('EINVAL');
    return i.target;
  }

  // ---- namespace changes ----------------------------------------------------------------------

  private newInode(mode: number, caller: Caller, extra: Partial<Inode> = {}): Inode {
    const t = nowNs();
    return {
      ino: this.meta.allocIno(),
      mode,
      uid: caller.uid,
      gid: caller.gid,
      nlink: 1,
      size: 0,
      rdev: 0,
      atimeNs: t,
      mtimeNs: t,
      ctimeNs: t,
      ...extra,
    };
  }

  /** Adds a new name in one transaction; returns the new inode. */
  private addEntry(path: string, make: () => Inode, isDirectory = false): Inode {
    this.writable();
    return this.meta.txn(() => {
      const { parent, name } = this.resolveParent(path);
      if (this.meta.lookup(parent.ino, name) !== undefined) throw fsError('EEXIST');
      const inode = make();
      this.meta.putInode(inode);
      this.meta.link(parent.ino, name, inode.ino);
      this.touchDir(parent, inode.ctimeNs, isDirectory ? 1 : 0);
      return inode;
    });
  }

  /**
   * Names a subtree made by `plant` at `path` (`isg clone`): `plant` makes its inodes, names below
   * the top and chunk-map references inside this operation's transaction and returns the top
   * inode. Under the store's guard, so that the references it takes cannot race a sweep. The
   * kernel caches no failed lookups (negative_timeout 0) and no attributes, so a name added here
   * without a FUSE request is seen at the next lookup.
   */
  graft(path: string, isDirectory: boolean, plant: () => Inode): Promise<Attr> {
    this.writable();
    return this.store.guard(() => Promise.resolve(this.attrOf(this.addEntry(path, plant, isDirectory))));
  }

  // The operations that change or make an inode answer with its new attributes (FUSE asks for
  // them right after each).

  mkdir(path: string, mode: number, caller: Caller): Attr {
    return this.attrOf(this.addEntry(path, () => this.newInode(S_IFDIR | (mode & 0o7777), caller, { nlink: 2 }), true));
  }

  mknod(path: string, mode: number, rdev: number, caller: Caller): Attr {
    const type = mode & S_IFMT || S_IFREG;
    if (type === S_IFDIR) throw fsError('EINVAL');
    return this.attrOf(this.addEntry(path, () => this.newInode(type | (mode & 0o7777), caller, { rdev })));
  }

  symlink(target: string, path: string, caller: Caller): Attr {
    if (Buffer.byteLength(target) > 4095) throw fsError('ENAMETOOLONG');
    return this.attrOf(this.addEntry(path, () => this.newInode(S_IFLNK | 0o777, caller, { target, size: Buffer.byteLength(target) })));
  }

  link(existing: string, path: string): Attr {
    this.writable();
    return this.meta.txn(() => {
      const src = this.resolve(existing);
      if (isDir(src)) throw fsError('EPERM', 'hard links to directories are not allowed');
      const { parent, name } = this.resolveParent(path);
      if (this.meta.lookup(parent.ino, name) !== undefined) throw fsError('EEXIST');
      const t = nowNs();
      src.nlink++;
      src.ctimeNs = t;
      this.meta.putInode(src);
      this.meta.link(parent.ino, name, src.ino);
      this.touchDir(parent, t);
      return this.attrOf(src);
    });
  }

  /** Drops one name of a non-directory; the inode goes when its last name and handle do. */
  private dropName(parent: Inode, name: string, victim: Inode, t: bigint): void {
    this.meta.unlinkEntry(parent.ino, name);
    victim.nlink--;
    victim.ctimeNs = t;
    if (victim.nlink > 0) this.meta.putInode(victim);
    else if (this.files.dataOf(victim.ino)) {
      this.meta.putInode(victim);
      this.meta.addOrphan(victim.ino); // still open: freed on the last release
    } else this.destroy(victim.ino);
  }

  /** Frees an inode, its chunk map references and its xattrs; inside a transaction. */
  private destroy(ino: number): void {
    for (const e of this.meta.extentsOf(ino)) {
      this.meta.deleteExtent(ino, e.offset);
      this.meta.unref(e.id);
    }
    this.meta.removeAllXattrs(ino);
    this.meta.deleteInode(ino);
    this.meta.removeOrphan(ino);
  }

  unlink(path: string): void {
    this.writable();
    this.meta.txn(() => {
      const { parent, name } = this.resolveParent(path);
      const ino = this.meta.lookup(parent.ino, name);
      if (ino === undefined) throw fsError('ENOENT');
      const victim = this.inode(ino);
      if (isDir(victim)) throw fsError('EISDIR');
      const t = nowNs();
      this.dropName(parent, name, victim, t);
      this.touchDir(parent, t);
      if (name.startsWith(HIDDEN_PREFIX)) this.meta.forgetHidden(parent.ino, name);
    });
  }

  rmdir(path: string): void {
    this.writable();
    this.dirCache.clear();
    this.meta.txn(() => {
      const { parent, name } = this.resolveParent(path);
      const ino = this.meta.lookup(parent.ino, name);
      if (ino === undefined) throw fsError('ENOENT');
      const dir = this.inode(ino);
      if (!isDir(dir)) throw fsError('ENOTDIR');
      if (this.meta.hasEntries(ino)) throw fsError('ENOTEMPTY');
      this.meta.unlinkEntry(parent.ino, name);
      this.destroy(ino);
      this.touchDir(parent, nowNs(), -1);
    });
  }

  /** noReplace: renameat2's RENAME_NOREPLACE, EEXIST when `to` exists (atomically: one transaction). */
  rename(from: string, to: string, opts: { noReplace?: boolean } = {}): void {
    this.writable();
    this.dirCache.clear();
    this.meta.txn(() => {
      const src = this.resolveParent(from);
      const dst = this.resolveParent(to);
      const ino = this.meta.lookup(src.parent.ino, src.name);
      if (ino === undefined) throw fsError('ENOENT');
      const moving = this.inode(ino);
      const movingDir = isDir(moving);
      if (movingDir) {
        // A directory cannot move into its own subtree.
        const fromParts = splitPath(from);
        const toParts = splitPath(to);
        if (toParts.length > fromParts.length && fromParts.every((p, i) => toParts[i] === p)) throw fsError('EINVAL');
      }
      const t = nowNs();
      const existing = this.meta.lookup(dst.parent.ino, dst.name);
      if (existing !== undefined && opts.noReplace) throw fsError('EEXIST');
      if (existing !== undefined) {
        if (existing === ino) return; // the same file under two names: rename does nothing
        const victim = this.inode(existing);
        if (isDir(victim)) {
          if (!movingDir) throw fsError('EISDIR');
          if (this.meta.hasEntries(existing)) throw fsError('ENOTEMPTY');
          this.meta.unlinkEntry(dst.parent.ino, dst.name);
          this.destroy(existing);
          dst.parent.nlink--;
        } else {
          if (movingDir) throw fsError('ENOTDIR');
          this.dropName(dst.parent, dst.name, victim, t);
        }
      }
      this.meta.unlinkEntry(src.parent.ino, src.name);
      this.meta.link(dst.parent.ino, dst.name, ino);
      if (dst.name.startsWith(HIDDEN_PREFIX)) this.meta.rememberHidden(dst.parent.ino, dst.name);
      moving.ctimeNs = t;
      this.meta.putInode(moving);
      if (src.parent.ino === dst.parent.ino) {
        this.touchDir(dst.parent, t);
      } else {
        const sp = this.inode(src.parent.ino);
        this.touchDir(sp, t, movingDir ? -1 : 0);
        this.touchDir(dst.parent, t, movingDir ? 1 : 0);
      }
    });
  }

  // ---- attributes ------------------------------------------------------------------------------

  private updateInode(path: string, change: (i: Inode) => void): Attr {
    this.writable();
    const i = this.meta.txn(() => {
      const i = this.resolve(path);
      change(i);
      i.ctimeNs = nowNs();
      this.meta.putInode(i);
      return i;
    });
    return this.attrOf(i);
  }

  chmod(path: string, mode: number): Attr {
    return this.updateInode(path, (i) => {
      i.mode = (i.mode & S_IFMT) | (mode & 0o7777);
    });
  }

  chown(path: string, uid: number, gid: number): Attr {
    return this.updateInode(path, (i) => {
      if (uid !== -1 && uid !== 0xffffffff) i.uid = uid;
      if (gid !== -1 && gid !== 0xffffffff) i.gid = gid;
    });
  }

  /** null leaves a time unchanged (UTIME_OMIT). */
  utimens(path: string, atimeNs: bigint | null, mtimeNs: bigint | null): Attr {
    return this.updateInode(path, (i) => {
      if (atimeNs !== null) i.atimeNs = atimeNs;
      if (mtimeNs !== null) {
        i.mtimeNs = mtimeNs;
        const fd = this.files.dataOf(i.ino);
        if (fd) fd.pendingTimes = null; // an explicit time beats the time of earlier writes
      }
    });
  }

  // ---- xattrs ----------------------------------------------------------------------------------

  private xattrName(name: string): void {
    if (!name || Buffer.byteLength(name) > 255) throw fsError('ERANGE');
    if (!/^(user|trusted|security)\./.test(name)) throw fsError('EOPNOTSUPP');
  }

  setxattr(path: string, name: string, value: Buffer, flags: number): void {
    this.writable();
    this.xattrName(name);
    if (value.length > XATTR_SIZE_MAX) throw fsError('E2BIG');
    this.meta.txn(() => {
      const i = this.resolve(path);
      const exists = this.meta.getXattr(i.ino, name) !== undefined;
      if (flags & XATTR_CREATE && exists) throw fsError('EEXIST');
      if (flags & XATTR_REPLACE && !exists) throw fsError('ENODATA');
      this.meta.setXattr(i.ino, name, Buffer.from(value));
      i.ctimeNs = nowNs();
      this.meta.putInode(i);
    });
  }

  getxattr(path: string, name: string): Buffer {
    const i = this.resolve(path);
    const v = this.meta.getXattr(i.ino, name);
    if (v === undefined) throw fsError('ENODATA');
    return v;
  }

  /**
   * What getxattr of `name` answers for every file alike right now: EOPNOTSUPP for a name the
   * core refuses, ENODATA for one that no file has; null when it depends on the file.
   */
  xattrAnswerForAll(name: string): 'ENODATA' | 'EOPNOTSUPP' | null {
    try {
      this.xattrName(name);
    } catch (e) {
      return e instanceof FsError && e.code === 'EOPNOTSUPP' ? 'EOPNOTSUPP' : null;
    }
    return this.meta.anyXattrNamed(name) ? null : 'ENODATA';
  }

  listxattr(path: string): string[] {
    return this.meta.xattrNames(this.resolve(path).ino);
  }

  removexattr(path: string, name: string): void {
    this.writable();
    this.meta.txn(() => {
      const i = this.resolve(path);
      if (this.meta.getXattr(i.ino, name) === undefined) throw fsError('ENODATA');
      this.meta.removeXattr(i.ino, name);
      i.ctimeNs = nowNs();
      this.meta.putInode(i);
    });
  }

  // ---- files (open files, handles and write-behind: handles.ts) --------------------------------

  private newHandle(i: Inode, flags: number): number {
    return this.files.newHandle(i, flags, isDir(i));
  }

  async open(path: string, flags: number): Promise<number> {
    const i = this.resolve(path);
    const acc = flags & O_ACCMODE;
    if (acc !== C.O_RDONLY || flags & C.O_TRUNC) {
      if (isDir(i)) throw fsError('EISDIR');
      this.writable();
    }
    const fh = this.newHandle(i, flags);
    if (flags & C.O_TRUNC && isReg(i)) {
      try {
        await this.files.handle(fh).data!.truncate(0);
      } catch (e) {
        await this.release(fh);
        throw e;
      }
    }
    return fh;
  }

  async create(path: string, mode: number, flags: number, caller: Caller): Promise<number> {
    this.writable();
    let inode: Inode;
    try {
      inode = this.addEntry(path, () => this.newInode(S_IFREG | (mode & 0o7777), caller));
    } catch (e) {
      if ((e as { code?: string }).code === 'EEXIST' && !(flags & C.O_EXCL)) return this.open(path, flags);
      throw e;
    }
    return this.newHandle(inode, flags);
  }

  opendir(path: string): number {
    const i = this.resolve(path);
    if (!isDir(i)) throw fsError('ENOTDIR');
    return this.newHandle(i, 0);
  }

  /** Up to `length` bytes at offset (fewer at end of file); into `into` when given (FUSE's buffer). */
  async read(fh: number, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const h = this.files.handle(fh);
    if (!h.data) throw fsError('EISDIR');
    return h.data.read(offset, length, into);
  }

  async write(fh: number, offset: number, data: Uint8Array): Promise<number> {
    const h = this.files.handle(fh);
    if (!h.data) throw fsError('EISDIR');
    if ((h.flags & O_ACCMODE) === C.O_RDONLY) throw fsError('EBADF');
    if (offset + data.length > MAX_FILE_SIZE) throw fsError('EFBIG');
    await h.data.write(offset, data);
    return data.length;
  }

  async truncate(path: string, size: number): Promise<void> {
    this.writable();
    const i = this.resolve(path);
    if (isDir(i)) throw fsError('EISDIR');
    if (!isReg(i)) throw fsError('EINVAL');
    if (size > MAX_FILE_SIZE) throw fsError('EFBIG');
    const fd = this.files.openData(i); // counts as a handle, so an unlink meanwhile keeps the inode
    try {
      await fd.truncate(size);
    } finally {
      await this.files.closeData(fd);
    }
  }

  async ftruncate(fh: number, size: number): Promise<void> {
    this.writable();
    const h = this.files.handle(fh);
    if (!h.data) throw fsError('EISDIR');
    if (size > MAX_FILE_SIZE) throw fsError('EFBIG');
    await h.data.truncate(size);
  }

  /** FUSE flush, on every close(2): write-behind (see OpenFiles.flush). */
  flush(fh: number): Promise<void> {
    return this.files.flush(fh);
  }

  /** After fsync returns, the file's data and metadata survive a crash or power loss. */
  async fsync(fh: number): Promise<void> {
    await this.files.fsync(fh);
    await this.sync();
  }

  /**
   * Everything committed before the call is durable when this resolves: LMDB's open epoch commits
   * (the block files it names, flushed or kept, are made durable first: Meta.sync).
   * One round runs at a time; a caller that comes while one runs waits for the next, which starts
   * after its call and so covers its writes. A failed round fails every caller that waited for it;
   * what it did not make durable stays queued for the next round.
   */
  sync(): Promise<void> {
    if (this.o.readOnly) return Promise.resolve(); // nothing is written: fsync and fsyncdir return 0
    return this.syncs.run();
  }

  /**
   * The periodic writeback: every file (open or not) with data buffered for `ageMs` or more is
   * flushed, then everything is synced. Called every ageMs, it makes a write durable within twice
   * that (plus the time of the flush and the sync).
   */
  async writeback(ageMs: number): Promise<void> {
    await this.files.writeback(ageMs);
    await this.sync();
  }

  /** Bytes written and not yet committed, over all files (bounded by the write buffer's budget). */
  get bufferedBytes(): number {
    return this.files.budget.bytes;
  }

  release(fh: number): Promise<void> {
    return this.files.release(fh);
  }

  /** A file's data was forgotten (no handle, nothing buffered): an unlinked inode is freed now. */
  private closed(fd: FileData): void {
    const i = this.meta.getInode(fd.ino);
    if (i && i.nlink === 0) {
      fd.discard();
      this.meta.txn(() => this.destroy(fd.ino));
    }
  }

  async statfs(): Promise<StatFs> {
    const s = await fs.promises.statfs(this.o.dataDir);
    const files = this.meta.inodeCount();
    const ffree = Math.max(0, 2 ** 32 - files);
    return {
      bsize: s.bsize,
      frsize: s.bsize,
      blocks: s.blocks,
      bfree: s.bfree,
      bavail: s.bavail,
      files: files + ffree,
      ffree,
      favail: ffree,
      namemax: NAME_MAX,
    };
  }

  /** Turns the buffered data of every open or recently closed file into blocks; reports failures. */
  flushAll(): Promise<void> {
    return this.files.flushAll();
  }

  /** Flushes every open file and makes everything durable (unmount, SIGTERM). */
  async close(): Promise<void> {
    if (this.o.readOnly) return this.files.releaseAll(); // nothing to flush, sweep or sync
    await this.flushAll();
    await this.files.releaseAll();
    await this.store.sweep();
    await this.sync();
  }
}
