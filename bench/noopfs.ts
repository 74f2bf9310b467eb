/**
 * The "FUSE ceiling" of the benchmark: a filesystem that does as little as a FUSE filesystem can,
 * mounted through mount/fuse.ts with exactly isgfs's options (FUSE_DEFAULTS). The namespace
 * (directories, names, modes, times, symlinks, hard links) lives in memory so tar, ls -lR and rm
 * work; file contents are not kept at all: writes are discarded (only the size grows), reads return
 * zeros.
 *
 *   node dist/bench/noopfs.js <mountpoint>
 *
 * Runs in the foreground until SIGTERM or SIGINT, then unmounts and exits 0.
 */
import * as path from 'node:path';
import { constants } from 'node:fs';
import {
  EEXIST, EINVAL, EISDIR, ENOENT, ENOTDIR, ENOTEMPTY, EBADF, EPERM, RENAME_NOREPLACE,
  FUSE_DEFAULTS, FuseOps, FuseStat, mountFuse, MountedFuse,
} from '../mount/fuse';
import { forceUnmount, findMount } from '../mount/teardown';

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

interface Node {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  nlink: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  target?: string;
  children?: Map<string, Node>;
}

const nowNs = (): bigint => BigInt(Date.now()) * 1_000_000n;

export function noopOps(): FuseOps {
  let nextIno = 1;
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const node = (mode: number, extra: Partial<Node> = {}): Node => {
    const t = nowNs();
    return { ino: nextIno++, mode, uid, gid, rdev: 0, size: 0, nlink: 1, atimeNs: t, mtimeNs: t, ctimeNs: t, ...extra };
  };
  const root = node(S_IFDIR | 0o755, { nlink: 2, children: new Map() });
  const handles = new Map<number, Node>();
  let nextFh = 1;

  const lookup = (p: string): Node | undefined => {
    if (p === '/') return root;
    let n: Node | undefined = root;
    for (const part of p.split('/')) {
      if (!part) continue;
      n = n?.children?.get(part);
      if (!n) return undefined;
    }
    return n;
  };
  const parentOf = (p: string): { dir: Node | undefined; name: string } => ({ dir: lookup(path.posix.dirname(p)), name: path.posix.basename(p) });
  const stat = (n: Node): FuseStat => ({
    ino: n.ino, mode: n.mode, nlink: n.nlink, uid: n.uid, gid: n.gid, size: n.size, rdev: n.rdev,
    blksize: 4096, blocks: Math.ceil(n.size / 512), atimeNs: n.atimeNs, mtimeNs: n.mtimeNs, ctimeNs: n.ctimeNs,
  });
  const add = (p: string, make: () => Node): number | Node => {
    const { dir, name } = parentOf(p);
    if (!dir) return ENOENT;
    if (!dir.children) return ENOTDIR;
    if (dir.children.has(name)) return EEXIST;
    const n = make();
    dir.children.set(name, n);
    if (n.children) dir.nlink++;
    dir.mtimeNs = dir.ctimeNs = nowNs();
    return n;
  };
  const open = (n: Node): number => {
    const fh = nextFh++;
    handles.set(fh, n);
    return fh;
  };

  return {
    getattr: (p, cb) => {
      const n = lookup(p);
      return n ? cb(0, stat(n)) : cb(ENOENT);
    },
    fgetattr: (_p, fh, cb) => {
      const n = handles.get(fh);
      return n ? cb(0, stat(n)) : cb(EBADF);
    },
    access: (p, _mode, cb) => cb(lookup(p) ? 0 : ENOENT),
    statfs: (_p, cb) => cb(0, {
      bsize: 4096, frsize: 4096, blocks: 2 ** 40, bfree: 2 ** 40, bavail: 2 ** 40,
      files: 2 ** 40, ffree: 2 ** 40, favail: 2 ** 40, namemax: 255,
    }),
    readdir: (p, cb) => {
      const n = lookup(p);
      if (!n) return cb(ENOENT);
      if (!n.children) return cb(ENOTDIR);
      cb(0, ['.', '..', ...n.children.keys()]);
    },
    mkdir: (p, mode, _caller, cb) => {
      const r = add(p, () => node(S_IFDIR | (mode & 0o7777), { nlink: 2, children: new Map() }));
      cb(typeof r === 'number' ? r : 0);
    },
    mknod: (p, mode, rdev, _caller, cb) => {
      const r = add(p, () => node(mode, { rdev }));
      cb(typeof r === 'number' ? r : 0);
    },
    symlink: (target, p, _caller, cb) => {
      const r = add(p, () => node(S_IFLNK | 0o777, { target, size: Buffer.byteLength(target) }));
      cb(typeof r === 'number' ? r : 0);
    },
    readlink: (p, cb) => {
      const n = lookup(p);
      if (!n) return cb(ENOENT);
      return n.target === undefined ? cb(EINVAL) : cb(0, n.target);
    },
    link: (existing, p, cb) => {
      const src = lookup(existing);
      if (!src) return cb(ENOENT);
      if (src.children) return cb(EPERM);
      const r = add(p, () => src);
      if (typeof r === 'number') return cb(r);
      src.nlink++;
      src.ctimeNs = nowNs();
      cb(0);
    },
    unlink: (p, cb) => {
      const { dir, name } = parentOf(p);
      const n = dir?.children?.get(name);
      if (!dir || !n) return cb(ENOENT);
      if (n.children) return cb(EISDIR);
      dir.children!.delete(name);
      n.nlink--;
      dir.mtimeNs = dir.ctimeNs = n.ctimeNs = nowNs();
      cb(0);
    },
    rmdir: (p, cb) => {
      const { dir, name } = parentOf(p);
      const n = dir?.children?.get(name);
      if (!dir || !n) return cb(ENOENT);
      if (!n.children) return cb(ENOTDIR);
      if (n.children.size) return cb(ENOTEMPTY);
      dir.children!.delete(name);
      dir.nlink--;
      dir.mtimeNs = dir.ctimeNs = nowNs();
      cb(0);
    },
    rename: (from, to, flags, cb) => {
      const a = parentOf(from);
      const b = parentOf(to);
      const n = a.dir?.children?.get(a.name);
      if (!n || !b.dir) return cb(ENOENT);
      if (!b.dir.children) return cb(ENOTDIR);
      const victim = b.dir.children.get(b.name);
      if (victim && flags & RENAME_NOREPLACE) return cb(EEXIST);
      if (victim === n) return cb(0);
      if (victim) {
        if (victim.children && !n.children) return cb(EISDIR);
        if (!victim.children && n.children) return cb(ENOTDIR);
        if (victim.children?.size) return cb(ENOTEMPTY);
        victim.nlink--;
        if (victim.children) b.dir.nlink--;
      }
      a.dir!.children!.delete(a.name);
      b.dir.children.set(b.name, n);
      if (n.children) { a.dir!.nlink--; b.dir.nlink++; }
      a.dir!.mtimeNs = b.dir.mtimeNs = n.ctimeNs = nowNs();
      cb(0);
    },
    chmod: (p, mode, cb) => {
      const n = lookup(p);
      if (!n) return cb(ENOENT);
      n.mode = (n.mode & S_IFMT) | (mode & 0o7777);
      n.ctimeNs = nowNs();
      cb(0);
    },
    chown: (p, u, g, cb) => {
      const n = lookup(p);
      if (!n) return cb(ENOENT);
      if (u !== -1) n.uid = u;
      if (g !== -1) n.gid = g;
      n.ctimeNs = nowNs();
      cb(0);
    },
    utimens: (p, atimeNs, mtimeNs, cb) => {
      const n = lookup(p);
      if (!n) return cb(ENOENT);
      if (atimeNs !== null) n.atimeNs = atimeNs;
      if (mtimeNs !== null) n.mtimeNs = mtimeNs;
      n.ctimeNs = nowNs();
      cb(0);
    },
    truncate: (p, size, cb) => {
      const n = lookup(p);
      if (!n) return cb(ENOENT);
      if (n.children) return cb(EISDIR);
      n.size = size;
      n.mtimeNs = n.ctimeNs = nowNs();
      cb(0);
    },
    ftruncate: (_p, fh, size, cb) => {
      const n = handles.get(fh);
      if (!n) return cb(EBADF);
      n.size = size;
      n.mtimeNs = n.ctimeNs = nowNs();
      cb(0);
    },
    create: (p, mode, _flags, _caller, cb) => {
      const r = add(p, () => node(S_IFREG | (mode & 0o7777)));
      if (typeof r === 'number') return cb(r);
      cb(0, open(r));
    },
    open: (p, flags, cb) => {
      const n = lookup(p);
      if (!n) return cb(ENOENT);
      if (flags & constants.O_TRUNC && !n.children) n.size = 0;
      cb(0, open(n));
    },
    read: (_p, fh, buf, len, offset, cb) => {
      const n = handles.get(fh);
      if (!n) return cb(EBADF);
      const count = Math.max(0, Math.min(len, n.size - offset));
      buf.fill(0, 0, count);
      cb(count);
    },
    write: (_p, fh, _buf, len, offset, cb) => {
      const n = handles.get(fh);
      if (!n) return cb(EBADF);
      if (offset + len > n.size) n.size = offset + len;
      cb(len);
    },
    flush: (_p, _fh, cb) => cb(0),
    fsync: (_p, _datasync, _fh, cb) => cb(0),
    release: (_p, fh, cb) => {
      handles.delete(fh);
      cb(0);
    },
  };
}

async function main(): Promise<void> {
  const mnt = process.argv[2];
  if (!mnt) {
    process.stderr.write('usage: node dist/bench/noopfs.js <mountpoint>\n');
    process.exit(2);
  }
  const mp = path.resolve(mnt);
  let mounted: MountedFuse;
  try {
    mounted = await mountFuse(mp, noopOps(), { ...FUSE_DEFAULTS, fsname: 'noopfs' });
  } catch (e) {
    process.stderr.write(`noopfs: ${(e as Error).message}\n`);
    process.exit(1);
  }
  const reason = await new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
    const t = setInterval(() => { if (!findMount(mp)) resolve('external unmount'); }, 1000);
    t.unref();
  });
  let code = 0;
  try {
    await mounted.unmount();
  } catch (e) {
    process.stderr.write(`noopfs: unmount after ${reason} failed (${(e as Error).message}); detaching\n`);
    await forceUnmount(mp);
    code = findMount(mp) ? 1 : 0;
  }
  process.exit(code);
}

if (require.main === module) void main();
