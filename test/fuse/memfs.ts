/**
 * An in-memory filesystem for the binding tests, mounted through mount/fuse.ts with FUSE_DEFAULTS.
 * Run in a CHILD process (a FUSE server must not share its process with anything that touches the
 * mount synchronously):
 *
 *   node -r test/fuse/ts-register.js test/fuse/memfs.ts <mountpoint> [<mount options as JSON>]
 *
 * It talks to its parent over the IPC channel: it sends {ready: true} once mounted and answers
 * {cmd: 'stats'} with what it observed (largest write, write offsets, the last utimens, create,
 * setxattr and ftruncate arguments, fgetattr calls), and obeys {cmd: 'hang', path} (reads of that
 * file never answer; '*': no getattr answers either) and {cmd: 'slow', ms} (every read answers
 * after ms). SIGTERM unmounts and exits 0 (3 when the unmount failed and it had to detach).
 */
import * as path from 'node:path';
import {
  EBADF, EEXIST, EINVAL, EISDIR, ENODATA, ENOENT, ENOTDIR, ENOTEMPTY, EPERM, RENAME_NOREPLACE,
  FUSE_DEFAULTS, FuseOps, FuseStat, mountFuse, XATTR_CREATE, XATTR_REPLACE,
} from '../../mount/fuse';
import { forceUnmount } from '../../mount/teardown';

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const PAGE = 64 * 1024;

interface Inode {
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
  entries?: Map<string, number>;
  pages: Map<number, Buffer>;
  xattrs: Map<string, Buffer>;
  open: number;
}

export interface MemfsStats {
  writes: number;
  maxWrite: number;
  writeOffsets: number[];
  lastUtimens: { path: string; atimeNs: string | null; mtimeNs: string | null } | null;
  lastCreate: { path: string; mode: number; flags: number; uid: number; gid: number } | null;
  lastSetxattr: { name: string; flags: number; size: number } | null;
  ftruncates: { path: string; fh: number; size: number }[];
  truncates: { path: string; size: number }[];
  fgetattrs: number;
  getattrs: number;
  /** getxattr requests that reached this filesystem, by name. */
  xattrGets: Record<string, number>;
  lastChown: { uid: number; gid: number } | null;
}

const clockBase = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
const nowNs = (): bigint => clockBase + process.hrtime.bigint();

export function memfs(stats: MemfsStats, control: { hang: Set<string>; slowMs: number }): FuseOps {
  const inodes = new Map<number, Inode>();
  const handles = new Map<number, number>();
  let nextIno = 1;
  let nextFh = 10;
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;

  const make = (mode: number, extra: Partial<Inode> = {}): Inode => {
    const t = nowNs();
    const i: Inode = {
      ino: nextIno++, mode, uid, gid, nlink: 1, rdev: 0, size: 0, atimeNs: t, mtimeNs: t, ctimeNs: t,
      pages: new Map(), xattrs: new Map(), open: 0, ...extra,
    };
    inodes.set(i.ino, i);
    return i;
  };
  const root = make(S_IFDIR | 0o755, { nlink: 2, entries: new Map() });

  const resolve = (p: string): Inode | undefined => {
    let i: Inode | undefined = root;
    for (const part of p.split('/')) {
      if (!part) continue;
      const ino: number | undefined = i?.entries?.get(part);
      i = ino === undefined ? undefined : inodes.get(ino);
      if (!i) return undefined;
    }
    return i;
  };
  const parent = (p: string) => ({ dir: resolve(path.posix.dirname(p)), name: path.posix.basename(p) });
  const stat = (i: Inode): FuseStat => ({
    ino: i.ino, mode: i.mode, nlink: i.nlink, uid: i.uid, gid: i.gid, size: i.size, rdev: i.rdev,
    blksize: 4096, blocks: Math.ceil(i.size / 512), atimeNs: i.atimeNs, mtimeNs: i.mtimeNs, ctimeNs: i.ctimeNs,
  });
  const maybeFree = (i: Inode) => {
    if (i.nlink <= 0 && i.open <= 0) inodes.delete(i.ino);
  };
  const add = (p: string, mk: () => Inode): Inode | number => {
    const { dir, name } = parent(p);
    if (!dir) return ENOENT;
    if (!dir.entries) return ENOTDIR;
    if (dir.entries.has(name)) return EEXIST;
    const i = mk();
    dir.entries.set(name, i.ino);
    if (i.entries) dir.nlink++;
    dir.mtimeNs = dir.ctimeNs = nowNs();
    return i;
  };
  const openFh = (i: Inode): number => {
    const fh = nextFh++;
    handles.set(fh, i.ino);
    i.open++;
    return fh;
  };
  const byFh = (fh: number): Inode | undefined => {
    const ino = handles.get(fh);
    return ino === undefined ? undefined : inodes.get(ino);
  };

  const readData = (i: Inode, offset: number, len: number, out: Buffer): number => {
    const n = Math.max(0, Math.min(len, i.size - offset));
    let done = 0;
    while (done < n) {
      const pos = offset + done;
      const pi = Math.floor(pos / PAGE);
      const po = pos - pi * PAGE;
      const take = Math.min(PAGE - po, n - done);
      const page = i.pages.get(pi);
      if (page) page.copy(out, done, po, po + take);
      else out.fill(0, done, done + take);
      done += take;
    }
    return n;
  };
  const writeData = (i: Inode, offset: number, data: Buffer): void => {
    let done = 0;
    while (done < data.length) {
      const pos = offset + done;
      const pi = Math.floor(pos / PAGE);
      const po = pos - pi * PAGE;
      const take = Math.min(PAGE - po, data.length - done);
      let page = i.pages.get(pi);
      if (!page) i.pages.set(pi, (page = Buffer.alloc(PAGE)));
      data.copy(page, po, done, done + take);
      done += take;
    }
    if (offset + data.length > i.size) i.size = offset + data.length;
  };
  const setSize = (i: Inode, size: number): void => {
    for (const pi of [...i.pages.keys()]) if (pi * PAGE >= size) i.pages.delete(pi);
    const last = i.pages.get(Math.floor(size / PAGE));
    if (last) last.fill(0, size % PAGE);
    i.size = size;
    i.mtimeNs = i.ctimeNs = nowNs();
  };

  return {
    getattr: (p, cb) => {
      if (control.hang.has('*')) return; // a hung filesystem: for the teardown tests
      stats.getattrs++;
      const i = resolve(p);
      return i ? cb(0, stat(i)) : cb(ENOENT);
    },
    fgetattr: (_p, fh, cb) => {
      stats.fgetattrs++;
      const i = byFh(fh);
      return i ? cb(0, stat(i)) : cb(EBADF);
    },
    access: (p, _mode, cb) => cb(resolve(p) ? 0 : ENOENT),
    statfs: (_p, cb) => cb(0, {
      bsize: 4096, frsize: 4096, blocks: 2 ** 33, bfree: 2 ** 33 - 7, bavail: 2 ** 33 - 7,
      files: 2 ** 32 + 5, ffree: 2 ** 32 + 1, favail: 2 ** 32 + 1, namemax: 255,
    }),
    opendir: (p, _flags, cb) => {
      const i = resolve(p);
      if (!i) return cb(ENOENT);
      if (!i.entries) return cb(ENOTDIR);
      cb(0, openFh(i));
    },
    releasedir: (_p, fh, cb) => {
      const i = byFh(fh);
      handles.delete(fh);
      if (i) { i.open--; maybeFree(i); }
      cb(0);
    },
    fsyncdir: (_p, _d, _fh, cb) => cb(0),
    readdir: (p, cb) => {
      const i = resolve(p);
      if (!i) return cb(ENOENT);
      if (!i.entries) return cb(ENOTDIR);
      cb(0, ['.', '..', ...i.entries.keys()]);
    },
    mkdir: (p, mode, _caller, cb) => {
      const r = add(p, () => make(S_IFDIR | (mode & 0o7777), { nlink: 2, entries: new Map() }));
      cb(typeof r === 'number' ? r : 0);
    },
    mknod: (p, mode, rdev, _caller, cb) => {
      const r = add(p, () => make(mode, { rdev }));
      cb(typeof r === 'number' ? r : 0);
    },
    symlink: (target, p, _caller, cb) => {
      const r = add(p, () => make(S_IFLNK | 0o777, { target, size: Buffer.byteLength(target) }));
      cb(typeof r === 'number' ? r : 0);
    },
    readlink: (p, cb) => {
      const i = resolve(p);
      if (!i) return cb(ENOENT);
      return i.target === undefined ? cb(EINVAL) : cb(0, i.target);
    },
    link: (existing, p, cb) => {
      const src = resolve(existing);
      if (!src) return cb(ENOENT);
      if (src.entries) return cb(EPERM);
      const r = add(p, () => src);
      if (typeof r === 'number') return cb(r);
      src.nlink++;
      src.ctimeNs = nowNs();
      cb(0);
    },
    unlink: (p, cb) => {
      const { dir, name } = parent(p);
      const ino = dir?.entries?.get(name);
      const i = ino === undefined ? undefined : inodes.get(ino);
      if (!dir || !i) return cb(ENOENT);
      if (i.entries) return cb(EISDIR);
      dir.entries!.delete(name);
      i.nlink--;
      i.ctimeNs = dir.mtimeNs = dir.ctimeNs = nowNs();
      maybeFree(i);
      cb(0);
    },
    rmdir: (p, cb) => {
      const { dir, name } = parent(p);
      const ino = dir?.entries?.get(name);
      const i = ino === undefined ? undefined : inodes.get(ino);
      if (!dir || !i) return cb(ENOENT);
      if (!i.entries) return cb(ENOTDIR);
      if (i.entries.size) return cb(ENOTEMPTY);
      dir.entries!.delete(name);
      dir.nlink--;
      i.nlink = 0;
      maybeFree(i);
      cb(0);
    },
    rename: (from, to, flags, cb) => {
      const a = parent(from);
      const b = parent(to);
      const ino = a.dir?.entries?.get(a.name);
      const i = ino === undefined ? undefined : inodes.get(ino);
      if (!i || !b.dir) return cb(ENOENT);
      if (!b.dir.entries) return cb(ENOTDIR);
      const vIno = b.dir.entries.get(b.name);
      const victim = vIno === undefined ? undefined : inodes.get(vIno);
      if (victim && flags & RENAME_NOREPLACE) return cb(EEXIST);
      if (victim === i) return cb(0);
      if (victim) {
        if (victim.entries && !i.entries) return cb(EISDIR);
        if (!victim.entries && i.entries) return cb(ENOTDIR);
        if (victim.entries?.size) return cb(ENOTEMPTY);
        victim.nlink--;
        if (victim.entries) { b.dir.nlink--; victim.nlink = 0; }
        maybeFree(victim);
      }
      a.dir!.entries!.delete(a.name);
      b.dir.entries.set(b.name, i.ino);
      if (i.entries) { a.dir!.nlink--; b.dir.nlink++; }
      i.ctimeNs = nowNs();
      cb(0);
    },
    chmod: (p, mode, cb) => {
      const i = resolve(p);
      if (!i) return cb(ENOENT);
      i.mode = (i.mode & S_IFMT) | (mode & 0o7777);
      i.ctimeNs = nowNs();
      cb(0, stat(i)); // the new attributes: libfuse's getattr after it is answered with them
    },
    chown: (p, u, g, cb) => {
      const i = resolve(p);
      if (!i) return cb(ENOENT);
      stats.lastChown = { uid: u, gid: g };
      if (u !== -1) i.uid = u;
      if (g !== -1) i.gid = g;
      i.ctimeNs = nowNs();
      cb(0);
    },
    utimens: (p, atimeNs, mtimeNs, cb) => {
      const i = resolve(p);
      if (!i) return cb(ENOENT);
      stats.lastUtimens = { path: p, atimeNs: atimeNs === null ? null : String(atimeNs), mtimeNs: mtimeNs === null ? null : String(mtimeNs) };
      if (atimeNs !== null) i.atimeNs = atimeNs;
      if (mtimeNs !== null) i.mtimeNs = mtimeNs;
      i.ctimeNs = nowNs();
      cb(0);
    },
    truncate: (p, size, cb) => {
      const i = resolve(p);
      if (!i) return cb(ENOENT);
      if (i.entries) return cb(EISDIR);
      stats.truncates.push({ path: p, size });
      setSize(i, size);
      cb(0);
    },
    ftruncate: (p, fh, size, cb) => {
      const i = byFh(fh);
      if (!i) return cb(EBADF);
      stats.ftruncates.push({ path: p, fh, size });
      setSize(i, size);
      cb(0);
    },
    create: (p, mode, flags, caller, cb) => {
      stats.lastCreate = { path: p, mode, flags, uid: caller.uid, gid: caller.gid };
      const r = add(p, () => make(S_IFREG | (mode & 0o7777)));
      if (typeof r === 'number') return cb(r);
      cb(0, openFh(r));
    },
    open: (p, _flags, cb) => {
      const i = resolve(p);
      if (!i) return cb(ENOENT);
      cb(0, openFh(i));
    },
    read: (p, fh, buf, len, offset, cb) => {
      const i = byFh(fh);
      if (!i) return cb(EBADF);
      if (control.hang.has(p)) return; // never answers: for the teardown tests
      const answer = () => cb(readData(i, offset, len, buf));
      if (control.slowMs > 0) setTimeout(answer, control.slowMs);
      else answer();
    },
    write: (_p, fh, buf, len, offset, cb) => {
      const i = byFh(fh);
      if (!i) return cb(EBADF);
      stats.writes++;
      stats.maxWrite = Math.max(stats.maxWrite, len);
      stats.writeOffsets.push(offset);
      if (stats.writeOffsets.length > 64) stats.writeOffsets.shift();
      writeData(i, offset, buf.subarray(0, len));
      i.mtimeNs = i.ctimeNs = nowNs();
      cb(len);
    },
    flush: (_p, _fh, cb) => cb(0),
    fsync: (_p, _d, _fh, cb) => cb(0),
    release: (_p, fh, cb) => {
      const i = byFh(fh);
      handles.delete(fh);
      if (i) { i.open--; maybeFree(i); }
      cb(0);
    },
    setxattr: (p, name, value, _pos, flags, cb) => {
      const i = resolve(p);
      if (!i) return cb(ENOENT);
      stats.lastSetxattr = { name, flags, size: value.length };
      const exists = i.xattrs.has(name);
      if (flags & XATTR_CREATE && exists) return cb(EEXIST);
      if (flags & XATTR_REPLACE && !exists) return cb(ENODATA);
      i.xattrs.set(name, value);
      i.ctimeNs = nowNs();
      cb(0);
    },
    getxattr: (p, name, _pos, cb) => {
      stats.xattrGets[name] = (stats.xattrGets[name] ?? 0) + 1;
      const i = resolve(p);
      if (!i) return cb(ENOENT);
      const v = i.xattrs.get(name);
      return v === undefined ? cb(ENODATA) : cb(0, v);
    },
    listxattr: (p, cb) => {
      const i = resolve(p);
      if (!i) return cb(ENOENT);
      cb(0, [...i.xattrs.keys()]);
    },
    removexattr: (p, name, cb) => {
      const i = resolve(p);
      if (!i) return cb(ENOENT);
      if (!i.xattrs.delete(name)) return cb(ENODATA);
      cb(0);
    },
  };
}

export function emptyStats(): MemfsStats {
  return {
    writes: 0, maxWrite: 0, writeOffsets: [], lastUtimens: null, lastCreate: null, lastSetxattr: null,
    ftruncates: [], truncates: [], fgetattrs: 0, getattrs: 0, xattrGets: {}, lastChown: null,
  };
}

async function main(): Promise<void> {
  const mnt = path.resolve(process.argv[2]);
  const stats = emptyStats();
  const control = { hang: new Set<string>(), slowMs: 0 };
  const extra = process.argv[3] ? (JSON.parse(process.argv[3]) as object) : {};
  const mounted = await mountFuse(mnt, memfs(stats, control), { ...FUSE_DEFAULTS, fsname: 'isgfs-memfs', ...extra });
  const send = (m: unknown) => process.send?.(m);
  process.on('message', (m: { cmd: string; path?: string; ms?: number }) => {
    if (m.cmd === 'stats') send({ stats });
    else if (m.cmd === 'hang') { control.hang.add(m.path!); send({ ok: true }); }
    else if (m.cmd === 'slow') { control.slowMs = m.ms ?? 0; send({ ok: true }); }
  });
  process.once('SIGTERM', () => {
    mounted.unmount().then(
      () => process.exit(0),
      async (e: Error) => {
        process.stderr.write(`memfs: unmount failed: ${e.message}\n`);
        await forceUnmount(mnt);
        process.exit(3);
      },
    );
  });
  send({ ready: true });
}

if (require.main === module) {
  main().catch((e: Error) => {
    process.stderr.write(`memfs: ${e.message}\n`);
    process.exit(1);
  });
}
