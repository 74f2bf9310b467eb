/**
 * The typed FUSE binding everything in isgfs mounts through: fuse-native 2.2.6 with the isgfs patch
 * (patches/fuse-native+2.2.6.patch, built by scripts/setup.d/10-fuse-native.sh against the system
 * libfuse 3, high-level API, multithreaded loop).
 *
 * Conventions of the ops:
 * - Every handler answers exactly once through its callback; `err` is 0 or a negative errno
 *   (the E* constants, from errno.ts). read/write answer with the byte count or a negative errno.
 * - Sizes, offsets, file handles, inode numbers and device numbers are JS numbers; the binding
 *   carries them as 64-bit integers, so they are exact up to 2^53 (8 PiB).
 * - Times are BigInt nanoseconds since the epoch: in FuseStat (atimeNs/mtimeNs/ctimeNs) and in
 *   utimens, where null means "leave unchanged" (UTIME_OMIT); UTIME_NOW arrives already resolved to
 *   the current time.
 * - `path` is "" for an operation on an open file whose last name is gone (hardRemove); such
 *   operations (read, write, fgetattr, ftruncate, flush, fsync, release) carry the file handle.
 * - The buffer of read/write is FUSE's own memory, valid until the callback is called (it is
 *   detached afterwards): copy what must outlive the call. setxattr values are already copies.
 * - getxattr answers with the whole value and listxattr with the names; the binding implements
 *   the size protocol of getxattr(2)/listxattr(2): size 0 returns the size, a too small buffer
 *   gives ERANGE, a null value gives ENODATA.
 * - chown: uid or gid -1 means "leave unchanged".
 * - Operations that change or make an inode (chmod, chown, utimens, create, mkdir, mknod, symlink,
 *   link) may answer with its new attributes: libfuse asks for them right after each, and the
 *   binding then answers that getattr itself instead of calling getattr again.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Attr, StatFs } from '../src/fs/filesystem';
import { findMount } from './teardown';

export type FuseCallback = (err: number) => void;
export type FuseValueCallback<T> = (err: number, value?: T) => void;
/** The process that made the request: the owner of what create, mkdir, mknod and symlink make. */
export interface FuseCaller {
  uid: number;
  gid: number;
}
/** 0 and, optionally, the inode's new attributes; or a negative errno. */
export type FuseAttrCallback = (err: number, stat?: FuseStat) => void;
/** Bytes transferred (>= 0) or a negative errno. */
export type FuseIoCallback = (result: number) => void;

/**
 * The attributes the binding reads (fuse-native's getStatArray: mode, uid, gid, size, dev, nlink,
 * ino, rdev, blksize, blocks and the three times; dev is 0): src/fs's Attr, one shape for both.
 * Times are nanoseconds since the epoch.
 */
export type FuseStat = Attr;

/** statvfs(2) as the binding reads it: src/fs's StatFs (fsid and flag are left 0). */
export type FuseStatfs = StatFs;

export interface FuseOps {
  init?: (cb: FuseCallback) => void;
  getattr?: (path: string, cb: FuseValueCallback<FuseStat>) => void;
  /** fstat(2) and the attribute refreshes of open files: by handle. */
  fgetattr?: (path: string, fh: number, cb: FuseValueCallback<FuseStat>) => void;
  access?: (path: string, mode: number, cb: FuseCallback) => void;
  statfs?: (path: string, cb: FuseValueCallback<FuseStatfs>) => void;
  /** The names in the directory, '.' and '..' included (the kernel adds none); stats optional. */
  readdir?: (path: string, cb: (err: number, names?: string[], stats?: FuseStat[]) => void) => void;
  opendir?: (path: string, flags: number, cb: FuseValueCallback<number>) => void;
  releasedir?: (path: string, fh: number, cb: FuseCallback) => void;
  fsyncdir?: (path: string, datasync: number, fh: number, cb: FuseCallback) => void;
  readlink?: (path: string, cb: FuseValueCallback<string>) => void;
  mkdir?: (path: string, mode: number, caller: FuseCaller, cb: FuseAttrCallback) => void;
  mknod?: (path: string, mode: number, rdev: number, caller: FuseCaller, cb: FuseAttrCallback) => void;
  rmdir?: (path: string, cb: FuseCallback) => void;
  unlink?: (path: string, cb: FuseCallback) => void;
  /** flags: 0 or RENAME_NOREPLACE (EEXIST if `to` exists); the binding answers EINVAL to others. */
  rename?: (from: string, to: string, flags: number, cb: FuseCallback) => void;
  link?: (existing: string, path: string, cb: FuseAttrCallback) => void;
  symlink?: (target: string, path: string, caller: FuseCaller, cb: FuseAttrCallback) => void;
  chmod?: (path: string, mode: number, cb: FuseAttrCallback) => void;
  chown?: (path: string, uid: number, gid: number, cb: FuseAttrCallback) => void;
  utimens?: (path: string, atimeNs: bigint | null, mtimeNs: bigint | null, cb: FuseAttrCallback) => void;
  truncate?: (path: string, size: number, cb: FuseCallback) => void;
  ftruncate?: (path: string, fh: number, size: number, cb: FuseCallback) => void;
  /** mode includes S_IFREG; flags are the open(2) flags. Answers the new file handle. */
  create?: (path: string, mode: number, flags: number, caller: FuseCaller, cb: (err: number, fh?: number, stat?: FuseStat) => void) => void;
  open?: (path: string, flags: number, cb: FuseValueCallback<number>) => void;
  read?: (path: string, fh: number, buf: Buffer, len: number, offset: number, cb: FuseIoCallback) => void;
  write?: (path: string, fh: number, buf: Buffer, len: number, offset: number, cb: FuseIoCallback) => void;
  flush?: (path: string, fh: number, cb: FuseCallback) => void;
  fsync?: (path: string, datasync: number, fh: number, cb: FuseCallback) => void;
  release?: (path: string, fh: number, cb: FuseCallback) => void;
  /** flags: XATTR_CREATE (1) / XATTR_REPLACE (2); position is always 0 on Linux. */
  setxattr?: (path: string, name: string, value: Buffer, position: number, flags: number, cb: FuseCallback) => void;
  getxattr?: (path: string, name: string, position: number, cb: FuseValueCallback<Buffer | null>) => void;
  listxattr?: (path: string, cb: FuseValueCallback<string[]>) => void;
  removexattr?: (path: string, name: string, cb: FuseCallback) => void;
}

export interface FuseMountOptions {
  /** Largest read request (-o max_read), bytes. */
  maxRead?: number;
  /** Largest write request (-o max_write), bytes; libfuse 3 caps it at 1 MiB (256 pages). */
  maxWrite?: number;
  /** Largest read-ahead the kernel may ask for (-o max_readahead), bytes. */
  maxReadahead?: number;
  /**
   * xattr names that no file has at mount: the binding answers their getxattr with ENODATA
   * itself, until a setxattr of the name arrives. The kernel asks for security.capability before
   * every write and for security.selinux on every `ls -l` entry, a round trip each otherwise.
   */
  absentXattrs?: string[];
  /** xattr names the filesystem refuses: getxattr answers EOPNOTSUPP from the binding. */
  unsupportedXattrs?: string[];
  /**
   * The binding answers getattr from its last answer for the same path until any operation that
   * may change something runs (all but getattr, read, readdir, readlink, access, statfs,
   * getxattr, listxattr, opendir and releasedir). Only for a filesystem whose attributes change
   * through its own operations alone.
   */
  attrCache?: boolean;
  /** Seconds the kernel caches attributes; 0 is honoured (-o attr_timeout). */
  attrTimeout?: number;
  /** Seconds the kernel caches name lookups (-o entry_timeout). */
  entryTimeout?: number;
  /** Seconds the kernel caches failed lookups (-o negative_timeout). */
  negativeTimeout?: number;
  acAttrTimeout?: number;
  /** Report the filesystem's own inode numbers (-o use_ino): hard links share st_ino. */
  useIno?: boolean;
  /**
   * unlink/rename over an open file happen at once, no .fuse_hidden files (-o hard_remove); but
   * fstat of such a file then fails with ENOENT (see FUSE_DEFAULTS).
   */
  hardRemove?: boolean;
  allowOther?: boolean;
  allowRoot?: boolean;
  defaultPermissions?: boolean;
  autoUnmount?: boolean;
  kernelCache?: boolean;
  autoCache?: boolean;
  fsname?: string;
  subtype?: string;
  uid?: number;
  gid?: number;
  umask?: number;
  debug?: boolean;
  /**
   * Per-request time limit of the JS handlers in ms, after which the kernel gets ETIMEDOUT;
   * false: none (a handler that never answers then holds that request until forceUnmount aborts it).
   */
  timeout?: number | false;
  /** Raw `-o` options, passed through as they are (e.g. 'ro', 'allow_other'). */
  options?: string[];
}

const KiB = 1024;

/**
 * The options isgfs mounts with (mountFuse applies them under whatever a caller passes):
 * - maxWrite/maxRead/maxReadahead 1 MiB: requests of up to 1 MiB (libfuse 3 negotiates max_pages;
 *   libfuse 2 capped them at 128 KiB, and fuse-native's defaults at 4 KiB pages). Most of FUSE's
 *   own cost is per request.
 * - attrTimeout 0: libfuse's path API gives every name of a hard-linked file its own kernel inode
 *   and attribute cache, so a chmod or a new link through one name would stay invisible through
 *   the other for the whole timeout. Every stat asks the filesystem, and so does every read(2)
 *   (the kernel's auto_inval_data checks that the file did not change).
 * - attrCache: those questions are answered by the binding, in C, while nothing has changed since
 *   the filesystem last answered for that path. Any change anywhere empties it, so it is never
 *   stale: isgfs's attributes change only through its FUSE operations (atime is not updated on
 *   read). Measured: a cold read of 1 GiB from local backends 3.5-3.9 s without it.
 * - entryTimeout 1 s: names change only through this mount, and the kernel keeps its own name
 *   cache coherent for those changes; negativeTimeout 0 for anything changed behind its back.
 * - useIno: st_ino is the filesystem's inode number (tar, rsync -H, cp -a, find -samefile and git
 *   recognise hard links by it).
 * - hardRemove false (libfuse's default): unlinking (or renaming over) an open file renames it to
 *   .fuse_hidden<n> and unlinks that name on the last release. With hardRemove the unlink is real
 *   and reads, writes, ftruncate and lseek keep working by handle, but fstat(2) of that file fails
 *   with ESTALE (libfuse 2: ENOENT): the kernel sends fstat's GETATTR without the handle, and
 *   libfuse finds no path for a node without a name, with or without nullpath_ok (measured).
 *   That breaks programs that fstat an unlinked file (SQLite checks nlink that way). Hidden, the
 *   file keeps working and fstat reports nlink 0; the price is a .fuse_hidden name in readdir and
 *   ENOTEMPTY from rmdir of its directory while it is open.
 * - timeout false: an fsync of a large file or a fetch from a cold tier may legitimately take
 *   longer than any fixed limit, and answering ETIMEDOUT while the operation still runs would lie.
 */
export const FUSE_DEFAULTS: Readonly<FuseMountOptions> = Object.freeze({
  maxRead: 1024 * KiB,
  maxWrite: 1024 * KiB,
  maxReadahead: 1024 * KiB,
  attrTimeout: 0,
  attrCache: true,
  entryTimeout: 1,
  negativeTimeout: 0,
  useIno: true,
  hardRemove: false,
  timeout: false as const,
});

export interface MountedFuse {
  readonly mountpoint: string;
  /**
   * Unmounts (not lazily: rejects with EBUSY while the mount is in use; then use forceUnmount).
   * Resolves at once when the mount is already gone (an external fusermount -u). Idempotent.
   */
  unmount(): Promise<void>;
}

export type FuseMountErrorCode =
  | 'MOUNTPOINT_MISSING'
  | 'MOUNTPOINT_NOT_DIR'
  | 'MOUNTPOINT_BUSY'
  | 'MOUNTPOINT_NOT_EMPTY'
  | 'FUSE_UNAVAILABLE'
  | 'BINDING_MISSING'
  | 'MOUNT_FAILED';

export class FuseMountError extends Error {
  constructor(
    readonly code: FuseMountErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'FuseMountError';
  }
}

// The errno constants (negative, as the callbacks want them) and errno(name) live in errno.ts,
// with the mapping of isgfs's errors; re-exported here for the filesystems written on this binding.
export {
  EPERM,
  ENOENT,
  EIO,
  EBADF,
  EAGAIN,
  ENOMEM,
  EACCES,
  EBUSY,
  EEXIST,
  EXDEV,
  ENODEV,
  ENOTDIR,
  EISDIR,
  EINVAL,
  ENFILE,
  EMFILE,
  EFBIG,
  ENOSPC,
  ESPIPE,
  EROFS,
  EMLINK,
  ERANGE,
  ENAMETOOLONG,
  ENOSYS,
  ENOTEMPTY,
  ELOOP,
  ENODATA,
  E2BIG,
  EOPNOTSUPP,
  ENOTSUP,
  ETIMEDOUT,
  ENOTCONN,
  EDQUOT,
  errno,
} from './errno';

export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;
export const RENAME_NOREPLACE = 1;

// ---- mounting ------------------------------------------------------------------------------------

interface NativeFuse {
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
  detach(cb: (err: Error | null) => void): void;
}
type NativeFuseClass = new (mnt: string, ops: FuseOps, opts: FuseMountOptions) => NativeFuse;

function loadBinding(): NativeFuseClass {
  try {
    // Loaded on first mount only: types, constants and teardown work without the native build.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('fuse-native') as NativeFuseClass;
  } catch (e) {
    throw new FuseMountError('BINDING_MISSING', `the FUSE binding cannot be loaded: ${(e as Error).message}`);
  }
}

/** Throws FUSE_UNAVAILABLE unless the FUSE device exists and this process may open it. */
export function checkFuseAvailable(device = '/dev/fuse'): void {
  let fd: number;
  try {
    fd = fs.openSync(device, 'r+');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' || code === 'ENXIO' || code === 'ENODEV'
        ? `${device} does not exist: load the fuse kernel module (modprobe fuse), or give the container the device (--device /dev/fuse)`
        : code === 'EACCES' || code === 'EPERM'
          ? `no permission to open ${device} (${code}): add the user to the group that owns it, or run as root / with CAP_SYS_ADMIN`
          : `${device} cannot be opened (${code})`;
    throw new FuseMountError('FUSE_UNAVAILABLE', `FUSE is unavailable: ${why}`);
  }
  fs.closeSync(fd);
}

async function checkMountpoint(mp: string, nonempty: boolean): Promise<void> {
  // /proc first: a stat of a hung FUSE mount would hang.
  const existing = findMount(mp);
  if (existing) {
    throw new FuseMountError('MOUNTPOINT_BUSY', `mountpoint ${mp} is busy: ${existing.source} (${existing.fstype}) is mounted there`);
  }
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(mp);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new FuseMountError('MOUNTPOINT_MISSING', `mountpoint ${mp} does not exist`);
    throw new FuseMountError('MOUNT_FAILED', `mountpoint ${mp} cannot be examined (${code})`);
  }
  if (!st.isDirectory()) throw new FuseMountError('MOUNTPOINT_NOT_DIR', `mountpoint ${mp} is not a directory`);
  // A mount would hide the files of a non-empty mountpoint. libfuse 3 allows it without a word,
  // so the check is ours: refused unless -o nonempty (which the binding then drops: libfuse 3
  // no longer knows it).
  if (!nonempty && (await fs.promises.readdir(mp)).length > 0) {
    throw new FuseMountError(
      'MOUNTPOINT_NOT_EMPTY',
      `mountpoint ${mp} is not empty (its files would be hidden; the FUSE option 'nonempty' allows it)`,
    );
  }
}

/**
 * The kernel gives a FUSE mount the default read-ahead window (128 KiB, the block layer's
 * VM_READAHEAD_PAGES) whatever max_readahead allows, so sequential reads would still arrive as
 * 128 KiB requests. Its backing device's read_ahead_kb in sysfs raises the window; only root may
 * write it, and without it reads simply stay at 128 KiB.
 */
function raiseReadahead(mount: { major: number; minor: number }, bytes: number): void {
  const file = `/sys/class/bdi/${mount.major}:${mount.minor}/read_ahead_kb`;
  try {
    fs.writeFileSync(file, String(Math.floor(bytes / 1024)));
  } catch {
    // not root, or no sysfs: the default window stays
  }
}

function call(fn: (cb: (err: Error | null) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => fn((err) => (err ? reject(err) : resolve())));
}

/**
 * Mounts ops on mountpoint with FUSE_DEFAULTS overridden by opts; resolves once the kernel has
 * initialised the connection (the mount is usable). The FUSE server runs on this process's event
 * loop: never touch the mount with synchronous calls from this same process.
 */
export async function mountFuse(mountpoint: string, ops: FuseOps, opts: FuseMountOptions = {}): Promise<MountedFuse> {
  const mp = path.resolve(mountpoint);
  const options: FuseMountOptions = { ...FUSE_DEFAULTS, ...opts };
  await checkMountpoint(mp, (options.options ?? []).includes('nonempty'));
  checkFuseAvailable();
  const Fuse = loadBinding();
  for (const o of options.options ?? []) {
    if (typeof o !== 'string' || o === '' || /\s/.test(o)) throw new FuseMountError('MOUNT_FAILED', `bad FUSE option ${JSON.stringify(o)}`);
  }
  const fuse = new Fuse(mp, ops, options);
  try {
    await call((cb) => fuse.mount(cb));
  } catch (e) {
    throw new FuseMountError('MOUNT_FAILED', `mounting FUSE on ${mp} failed: ${(e as Error).message}`);
  }
  const ours = findMount(mp);
  if (ours && options.maxReadahead) raiseReadahead(ours, options.maxReadahead);
  let closing: Promise<void> | null = null;

  return {
    mountpoint: mp,
    unmount(): Promise<void> {
      if (closing) return closing;
      const now = findMount(mp);
      const stillOurs = !!now && !!ours && now.mountId === ours.mountId;
      closing = call((cb) => (stillOurs ? fuse.unmount(cb) : fuse.detach(cb))).catch((e: unknown) => {
        closing = null; // allow a retry (e.g. after EBUSY)
        throw e;
      });
      return closing;
    },
  };
}
