/**
 * An in-memory FUSE namespace: inodes, directories, names, modes, owners, times, symlinks, hard
 * links, and files that live on while open after their last name is gone. What a file holds is
 * not kept here: the filesystems built on it add read and write (test/fuse/memfs.ts keeps the
 * bytes; bench/noopfs.ts, the benchmark's FUSE ceiling, keeps none) and are told of every size
 * change through `resize`. Used by both, so the test server and the benchmark's ceiling answer the
 * namespace alike.
 */
import { constants } from 'node:fs';
import * as path from 'node:path';
import {
  EBADF,
  EEXIST,
  EINVAL,
  EISDIR,
  ENOENT,
  ENOTDIR,
  ENOTEMPTY,
  EPERM,
  RENAME_NOREPLACE,
  FuseOps,
  FuseStat,
  FuseStatfs,
} from '../../mount/fuse';

const { S_IFMT, S_IFDIR, S_IFREG, S_IFLNK } = constants;

export interface MemInode {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  rdev: number;
  size: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  target?: string;
  /** A directory's entries: name -> ino. */
  entries?: Map<string, number>;
  /** Open handles (an inode without names lives on while open). */
  open: number;
}

export interface MemNamespaceOptions<I extends MemInode> {
  statfs: FuseStatfs;
  /** Completes a new inode with the fields of the filesystem built on the namespace. */
  init(i: MemInode): I;
  /** Told of every size change (truncate, ftruncate, open with O_TRUNC) before the size is set. */
  resize?(i: I, size: number): void;
}

const clockBase = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
/** The wall clock in nanoseconds, finer than Date.now(). */
export const nowNs = (): bigint => clockBase + process.hrtime.bigint();

export class MemNamespace<I extends MemInode> {
  private readonly inodes = new Map<number, I>();
  private readonly handles = new Map<number, number>();
  private nextIno = 1;
  private nextFh = 10;
  private readonly uid = process.getuid?.() ?? 0;
  private readonly gid = process.getgid?.() ?? 0;
  private readonly root: I;

  constructor(private readonly o: MemNamespaceOptions<I>) {
    this.root = this.make(S_IFDIR | 0o755, { nlink: 2, entries: new Map() });
  }

  private make(mode: number, extra: Partial<MemInode> = {}): I {
    const t = nowNs();
    const i = this.o.init({
      ino: this.nextIno++,
      mode,
      uid: this.uid,
      gid: this.gid,
      nlink: 1,
      rdev: 0,
      size: 0,
      atimeNs: t,
      mtimeNs: t,
      ctimeNs: t,
      open: 0,
      ...extra,
    });
    this.inodes.set(i.ino, i);
    return i;
  }

  resolve(p: string): I | undefined {
    let i: I | undefined = this.root;
    for (const part of p.split('/')) {
      if (!part) continue;
      const ino: number | undefined = i?.entries?.get(part);
      i = ino === undefined ? undefined : this.inodes.get(ino);
      if (!i) return undefined;
    }
    return i;
  }

  byFh(fh: number): I | undefined {
    const ino = this.handles.get(fh);
    return ino === undefined ? undefined : this.inodes.get(ino);
  }

  stat(i: MemInode): FuseStat {
    return {
      ino: i.ino,
      mode: i.mode,
      nlink: i.nlink,
      uid: i.uid,
      gid: i.gid,
      size: i.size,
      rdev: i.rdev,
      blksize: 4096,
      blocks: Math.ceil(i.size / 512),
      atimeNs: i.atimeNs,
      mtimeNs: i.mtimeNs,
      ctimeNs: i.ctimeNs,
    };
  }

  openFh(i: I): number {
    const fh = this.nextFh++;
    this.handles.set(fh, i.ino);
    i.open++;
    return fh;
  }

  closeFh(fh: number): void {
    const i = this.byFh(fh);
    this.handles.delete(fh);
    if (i) {
      i.open--;
      this.maybeFree(i);
    }
  }

  private parent(p: string): { dir: I | undefined; name: string } {
    return { dir: this.resolve(path.posix.dirname(p)), name: path.posix.basename(p) };
  }

  /** The entry at p: its directory, name and inode. */
  private entry(p: string): { dir: I | undefined; name: string; i: I | undefined } {
    const { dir, name } = this.parent(p);
    const ino = dir?.entries?.get(name);
    return { dir, name, i: ino === undefined ? undefined : this.inodes.get(ino) };
  }

  private maybeFree(i: I): void {
    if (i.nlink <= 0 && i.open <= 0) this.inodes.delete(i.ino);
  }

  private add(p: string, mk: () => I): I | number {
    const { dir, name } = this.parent(p);
    if (!dir) return ENOENT;
    if (!dir.entries) return ENOTDIR;
    if (dir.entries.has(name)) return EEXIST;
    const i = mk();
    dir.entries.set(name, i.ino);
    if (i.entries) dir.nlink++;
    dir.mtimeNs = dir.ctimeNs = nowNs();
    return i;
  }

  private setSize(i: I, size: number): void {
    this.o.resize?.(i, size);
    i.size = size;
    i.mtimeNs = i.ctimeNs = nowNs();
  }

  /** The namespace's operations; a filesystem adds read and write (and whatever else it keeps). */
  ops(): FuseOps {
    const made = (cb: (err: number) => void, r: I | number) => cb(typeof r === 'number' ? r : 0);
    return {
      getattr: (p, cb) => {
        const i = this.resolve(p);
        return i ? cb(0, this.stat(i)) : cb(ENOENT);
      },
      fgetattr: (_p, fh, cb) => {
        const i = this.byFh(fh);
        return i ? cb(0, this.stat(i)) : cb(EBADF);
      },
      access: (p, _mode, cb) => cb(this.resolve(p) ? 0 : ENOENT),
      statfs: (_p, cb) => cb(0, this.o.statfs),
      readdir: (p, cb) => {
        const i = this.resolve(p);
        if (!i) return cb(ENOENT);
        if (!i.entries) return cb(ENOTDIR);
        cb(0, ['.', '..', ...i.entries.keys()]);
      },
      mkdir: (p, mode, _caller, cb) =>
        made(
          cb,
          this.add(p, () => this.make(S_IFDIR | (mode & 0o7777), { nlink: 2, entries: new Map() })),
        ),
      mknod: (p, mode, rdev, _caller, cb) =>
        made(
          cb,
          this.add(p, () => this.make(mode, { rdev })),
        ),
      symlink: (target, p, _caller, cb) =>
        made(
          cb,
          this.add(p, () => this.make(S_IFLNK | 0o777, { target, size: Buffer.byteLength(target) })),
        ),
      readlink: (p, cb) => {
        const i = this.resolve(p);
        if (!i) return cb(ENOENT);
        return i.target === undefined ? cb(EINVAL) : cb(0, i.target);
      },
      link: (existing, p, cb) => {
        const src = this.resolve(existing);
        if (!src) return cb(ENOENT);
        if (src.entries) return cb(EPERM);
        const r = this.add(p, () => src);
        if (typeof r === 'number') return cb(r);
        src.nlink++;
        src.ctimeNs = nowNs();
        cb(0);
      },
      unlink: (p, cb) => {
        const { dir, name, i } = this.entry(p);
        if (!dir || !i) return cb(ENOENT);
        if (i.entries) return cb(EISDIR);
        dir.entries!.delete(name);
        i.nlink--;
        i.ctimeNs = dir.mtimeNs = dir.ctimeNs = nowNs();
        this.maybeFree(i);
        cb(0);
      },
      rmdir: (p, cb) => {
        const { dir, name, i } = this.entry(p);
        if (!dir || !i) return cb(ENOENT);
        if (!i.entries) return cb(ENOTDIR);
        if (i.entries.size) return cb(ENOTEMPTY);
        dir.entries!.delete(name);
        dir.nlink--;
        dir.mtimeNs = dir.ctimeNs = nowNs();
        i.nlink = 0;
        this.maybeFree(i);
        cb(0);
      },
      rename: (from, to, flags, cb) => {
        const a = this.entry(from);
        const b = this.entry(to);
        const i = a.i;
        if (!i || !b.dir) return cb(ENOENT);
        if (!b.dir.entries) return cb(ENOTDIR);
        const victim = b.i;
        if (victim && flags & RENAME_NOREPLACE) return cb(EEXIST);
        if (victim === i) return cb(0);
        if (victim) {
          if (victim.entries && !i.entries) return cb(EISDIR);
          if (!victim.entries && i.entries) return cb(ENOTDIR);
          if (victim.entries?.size) return cb(ENOTEMPTY);
          victim.nlink--;
          if (victim.entries) {
            b.dir.nlink--;
            victim.nlink = 0;
          }
          this.maybeFree(victim);
        }
        a.dir!.entries!.delete(a.name);
        b.dir.entries.set(b.name, i.ino);
        if (i.entries) {
          a.dir!.nlink--;
          b.dir.nlink++;
        }
        a.dir!.mtimeNs = b.dir.mtimeNs = i.ctimeNs = nowNs();
        cb(0);
      },
      chmod: (p, mode, cb) => {
        const i = this.resolve(p);
        if (!i) return cb(ENOENT);
        i.mode = (i.mode & S_IFMT) | (mode & 0o7777);
        i.ctimeNs = nowNs();
        cb(0, this.stat(i)); // the new attributes: libfuse's getattr after it is answered with them
      },
      chown: (p, u, g, cb) => {
        const i = this.resolve(p);
        if (!i) return cb(ENOENT);
        if (u !== -1) i.uid = u;
        if (g !== -1) i.gid = g;
        i.ctimeNs = nowNs();
        cb(0);
      },
      utimens: (p, atimeNs, mtimeNs, cb) => {
        const i = this.resolve(p);
        if (!i) return cb(ENOENT);
        if (atimeNs !== null) i.atimeNs = atimeNs;
        if (mtimeNs !== null) i.mtimeNs = mtimeNs;
        i.ctimeNs = nowNs();
        cb(0);
      },
      truncate: (p, size, cb) => {
        const i = this.resolve(p);
        if (!i) return cb(ENOENT);
        if (i.entries) return cb(EISDIR);
        this.setSize(i, size);
        cb(0);
      },
      ftruncate: (_p, fh, size, cb) => {
        const i = this.byFh(fh);
        if (!i) return cb(EBADF);
        this.setSize(i, size);
        cb(0);
      },
      create: (p, mode, _flags, _caller, cb) => {
        const r = this.add(p, () => this.make(S_IFREG | (mode & 0o7777)));
        if (typeof r === 'number') return cb(r);
        cb(0, this.openFh(r));
      },
      open: (p, flags, cb) => {
        const i = this.resolve(p);
        if (!i) return cb(ENOENT);
        if (flags & constants.O_TRUNC && !i.entries) this.setSize(i, 0);
        cb(0, this.openFh(i));
      },
      flush: (_p, _fh, cb) => cb(0),
      fsync: (_p, _datasync, _fh, cb) => cb(0),
      release: (_p, fh, cb) => {
        this.closeFh(fh);
        cb(0);
      },
    };
  }
}
