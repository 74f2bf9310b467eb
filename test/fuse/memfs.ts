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
 * after ms). SIGTERM, SIGINT or an external unmount end it: it unmounts and exits 0 (3 when the
 * unmount failed and it had to detach). The namespace is test/fuse/memns.ts (shared with the
 * benchmark's bench/noopfs.ts); this file keeps the bytes and the xattrs, and records what it saw.
 */
import * as path from 'node:path';
import { EBADF, EEXIST, ENODATA, ENOENT, ENOTDIR, FUSE_DEFAULTS, FuseOps, mountFuse, XATTR_CREATE, XATTR_REPLACE } from '../../mount/fuse';
import { stopRequested, unmountOrDetach } from '../../mount/stop';
import { MemInode, MemNamespace, nowNs } from './memns';

const PAGE = 64 * 1024;

interface Inode extends MemInode {
  pages: Map<number, Buffer>;
  xattrs: Map<string, Buffer>;
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

/** Drops the pages past a new size (the namespace sets the size and times). */
const dropPast = (i: Inode, size: number): void => {
  for (const pi of [...i.pages.keys()]) if (pi * PAGE >= size) i.pages.delete(pi);
  const last = i.pages.get(Math.floor(size / PAGE));
  if (last) last.fill(0, size % PAGE);
};

export function memfs(stats: MemfsStats, control: { hang: Set<string>; slowMs: number }): FuseOps {
  const ns = new MemNamespace<Inode>({
    statfs: {
      bsize: 4096,
      frsize: 4096,
      blocks: 2 ** 33,
      bfree: 2 ** 33 - 7,
      bavail: 2 ** 33 - 7,
      files: 2 ** 32 + 5,
      ffree: 2 ** 32 + 1,
      favail: 2 ** 32 + 1,
      namemax: 255,
    },
    init: (i) => Object.assign(i, { pages: new Map<number, Buffer>(), xattrs: new Map<string, Buffer>() }),
    resize: dropPast,
  });
  const ops = ns.ops();
  const withInode = (p: string, cb: (err: number) => void, fn: (i: Inode) => void): void => {
    const i = ns.resolve(p);
    if (!i) return cb(ENOENT);
    fn(i);
  };

  return {
    ...ops,
    getattr: (p, cb) => {
      if (control.hang.has('*')) return; // a hung filesystem: for the teardown tests
      stats.getattrs++;
      ops.getattr!(p, cb);
    },
    fgetattr: (p, fh, cb) => {
      stats.fgetattrs++;
      ops.fgetattr!(p, fh, cb);
    },
    opendir: (p, _flags, cb) => {
      const i = ns.resolve(p);
      if (!i) return cb(ENOENT);
      if (!i.entries) return cb(ENOTDIR);
      cb(0, ns.openFh(i));
    },
    releasedir: (_p, fh, cb) => {
      ns.closeFh(fh);
      cb(0);
    },
    fsyncdir: (_p, _d, _fh, cb) => cb(0),
    chown: (p, u, g, cb) => {
      if (ns.resolve(p)) stats.lastChown = { uid: u, gid: g };
      ops.chown!(p, u, g, cb);
    },
    utimens: (p, atimeNs, mtimeNs, cb) => {
      if (ns.resolve(p))
        stats.lastUtimens = {
          path: p,
          atimeNs: atimeNs === null ? null : String(atimeNs),
          mtimeNs: mtimeNs === null ? null : String(mtimeNs),
        };
      ops.utimens!(p, atimeNs, mtimeNs, cb);
    },
    truncate: (p, size, cb) => {
      const i = ns.resolve(p);
      if (i && !i.entries) stats.truncates.push({ path: p, size });
      ops.truncate!(p, size, cb);
    },
    ftruncate: (p, fh, size, cb) => {
      if (ns.byFh(fh)) stats.ftruncates.push({ path: p, fh, size });
      ops.ftruncate!(p, fh, size, cb);
    },
    create: (p, mode, flags, caller, cb) => {
      stats.lastCreate = { path: p, mode, flags, uid: caller.uid, gid: caller.gid };
      ops.create!(p, mode, flags, caller, cb);
    },
    read: (p, fh, buf, len, offset, cb) => {
      const i = ns.byFh(fh);
      if (!i) return cb(EBADF);
      if (control.hang.has(p)) return; // never answers: for the teardown tests
      const answer = () => cb(readData(i, offset, len, buf));
      if (control.slowMs > 0) setTimeout(answer, control.slowMs);
      else answer();
    },
    write: (_p, fh, buf, len, offset, cb) => {
      const i = ns.byFh(fh);
      if (!i) return cb(EBADF);
      stats.writes++;
      stats.maxWrite = Math.max(stats.maxWrite, len);
      stats.writeOffsets.push(offset);
      if (stats.writeOffsets.length > 64) stats.writeOffsets.shift();
      writeData(i, offset, buf.subarray(0, len));
      i.mtimeNs = i.ctimeNs = nowNs();
      cb(len);
    },
    setxattr: (p, name, value, _pos, flags, cb) =>
      withInode(p, cb, (i) => {
        stats.lastSetxattr = { name, flags, size: value.length };
        const exists = i.xattrs.has(name);
        if (flags & XATTR_CREATE && exists) return cb(EEXIST);
        if (flags & XATTR_REPLACE && !exists) return cb(ENODATA);
        i.xattrs.set(name, value);
        i.ctimeNs = nowNs();
        cb(0);
      }),
    getxattr: (p, name, _pos, cb) => {
      stats.xattrGets[name] = (stats.xattrGets[name] ?? 0) + 1;
      withInode(p, cb, (i) => {
        const v = i.xattrs.get(name);
        return v === undefined ? cb(ENODATA) : cb(0, v);
      });
    },
    listxattr: (p, cb) => withInode(p, cb, (i) => cb(0, [...i.xattrs.keys()])),
    removexattr: (p, name, cb) => withInode(p, cb, (i) => cb(i.xattrs.delete(name) ? 0 : ENODATA)),
  };
}

export function emptyStats(): MemfsStats {
  return {
    writes: 0,
    maxWrite: 0,
    writeOffsets: [],
    lastUtimens: null,
    lastCreate: null,
    lastSetxattr: null,
    ftruncates: [],
    truncates: [],
    fgetattrs: 0,
    getattrs: 0,
    xattrGets: {},
    lastChown: null,
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
    else if (m.cmd === 'hang') {
      control.hang.add(m.path!);
      send({ ok: true });
    } else if (m.cmd === 'slow') {
      control.slowMs = m.ms ?? 0;
      send({ ok: true });
    }
  });
  void stopRequested(mnt).then(async () => {
    const failed = await unmountOrDetach(mounted, mnt);
    if (failed) process.stderr.write(`memfs: unmount failed: ${failed.message}\n`);
    process.exit(failed ? 3 : 0);
  });
  send({ ready: true });
}

if (require.main === module) {
  main().catch((e: Error) => {
    process.stderr.write(`memfs: ${e.message}\n`);
    process.exit(1);
  });
}
