/**
 * FUSE operations -> src/fs. Each handler answers through its callback with 0 or a negative errno;
 * nothing here blocks: slow work is awaited, and CPU-heavy work happens in the codec workers.
 */
import { FileSystem } from '../src/fs/filesystem';
import { log } from '../src/log';
import { errno, errnoName } from './errno';
import { RENAME_NOREPLACE } from './fuse';
import type { FuseOps, FuseStat } from './fuse';

function negErrno(e: unknown): number {
  const name = errnoName(e);
  if (name === 'EIO') log.warn(`I/O error: ${(e as Error)?.message ?? String(e)}`);
  return errno(name);
}

type Cb<T extends unknown[]> = (err: number, ...result: T) => void;

/** Runs fn and answers cb: its value on success, the errno on failure. */
function answer<T>(cb: Cb<[T]>, fn: () => T | Promise<T>): void {
  let p: Promise<T>;
  try {
    p = Promise.resolve(fn());
  } catch (e) {
    cb(negErrno(e), undefined as T);
    return;
  }
  p.then(
    (v) => cb(0, v),
    (e: unknown) => cb(negErrno(e), undefined as T),
  );
}

function done(cb: (err: number) => void, fn: () => void | Promise<void>): void {
  answer(cb as Cb<[void]>, fn);
}

export function fuseOps(fs: FileSystem): FuseOps {
  return {
    init: (cb) => cb(0),
    getattr: (path, cb) => answer(cb, () => fs.getattr(path)),
    fgetattr: (_path, fh, cb) => answer(cb, () => fs.fgetattr(fh)),
    access: (path, _mode, cb) => done(cb, () => fs.access(path)),
    statfs: (_path, cb) => answer(cb, () => fs.statfs()),
    readdir: (path, cb) => answer(cb, () => fs.readdir(path)),
    opendir: (path, _flags, cb) => answer(cb, () => fs.opendir(path)),
    releasedir: (_path, fh, cb) => done(cb, () => fs.release(fh)),
    fsyncdir: (_path, _datasync, _fh, cb) => done(cb, () => fs.sync()),
    readlink: (path, cb) => answer(cb, () => fs.readlink(path)),
    mkdir: (path, mode, caller, cb) => answer(cb, () => fs.mkdir(path, mode, caller)),
    mknod: (path, mode, rdev, caller, cb) => answer(cb, () => fs.mknod(path, mode, rdev, caller)),
    rmdir: (path, cb) => done(cb, () => fs.rmdir(path)),
    unlink: (path, cb) => done(cb, () => fs.unlink(path)),
    rename: (from, to, flags, cb) => done(cb, () => fs.rename(from, to, { noReplace: (flags & RENAME_NOREPLACE) !== 0 })),
    link: (existing, path, cb) => answer(cb, () => fs.link(existing, path)),
    symlink: (target, path, caller, cb) => answer(cb, () => fs.symlink(target, path, caller)),
    chmod: (path, mode, cb) => answer(cb, () => fs.chmod(path, mode)),
    chown: (path, uid, gid, cb) => answer(cb, () => fs.chown(path, uid, gid)),
    utimens: (path, atimeNs, mtimeNs, cb) => answer(cb, () => fs.utimens(path, atimeNs, mtimeNs)),
    truncate: (path, size, cb) => done(cb, () => fs.truncate(path, size)),
    ftruncate: (_path, fh, size, cb) => done(cb, () => fs.ftruncate(fh, size)),
    create: (path, mode, flags, caller, cb) => {
      fs.create(path, mode, flags, caller).then(
        (fh) => {
          let stat: FuseStat | undefined;
          try {
            stat = fs.fgetattr(fh);
          } catch {
            /* libfuse then asks with a getattr */
          }
          cb(0, fh, stat);
        },
        (e: unknown) => cb(negErrno(e)),
      );
    },
    open: (path, flags, cb) => answer(cb, () => fs.open(path, flags)),
    read: (_path, fh, buf, len, offset, cb) => {
      fs.read(fh, offset, len, buf).then(
        (data) => cb(data.length),
        (e: unknown) => cb(negErrno(e)),
      );
    },
    write: (_path, fh, buf, len, offset, cb) => {
      // buf belongs to FUSE only for the duration of this call: the write buffer copies it.
      fs.write(fh, offset, buf.subarray(0, len)).then(
        (n) => cb(n),
        (e: unknown) => cb(negErrno(e)),
      );
    },
    flush: (_path, fh, cb) => done(cb, () => fs.flush(fh)),
    fsync: (_path, _datasync, fh, cb) => done(cb, () => fs.fsync(fh)),
    release: (_path, fh, cb) => done(cb, () => fs.release(fh)),
    setxattr: (path, name, value, _position, flags, cb) => done(cb, () => fs.setxattr(path, name, value, flags)),
    getxattr: (path, name, _position, cb) => answer(cb, () => fs.getxattr(path, name)),
    listxattr: (path, cb) => answer(cb, () => fs.listxattr(path)),
    removexattr: (path, name, cb) => done(cb, () => fs.removexattr(path, name)),
  };
}
