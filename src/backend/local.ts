/**
 * `local`: a directory; key "a/b/c" is the file ROOT/a/b/c.
 *
 * Spec: `NAME=local:PATH[?tier=hot|warm|cold]` -> {name, type: 'local', tier, path} (path made
 * absolute at parse time). Default tier: hot.
 *
 * Decisions (why):
 * - put writes a temp file in the destination directory, fsyncs it, renames it over the key and
 *   fsyncs the directory: rename within one directory is atomic on POSIX, so a reader sees the
 *   old or the new object and never a part, and after put returns the object survives power
 *   loss. New parent directories are fsynced too, or the rename could be lost with them.
 * - The root is not created on ordinary calls (only by `init`): if a disk is not mounted, its
 *   mount point is an empty directory, and silently writing shards onto the system disk, or
 *   answering "not found" for shards that are merely offline, would mislead repair. A missing
 *   root is therefore 'transient'.
 * - Empty directories are not removed on delete: pruning races with a concurrent put creating
 *   a file in the same directory, and with hashed key fan-out the number of directories is
 *   bounded anyway.
 * - Temp files are named `.isg-tmp-*`; keys with such a segment are refused and list skips
 *   them, so an interrupted put never shows up as an object.
 * - A key cannot be both an object and a "directory" of other keys here ("a" and "a/b"); S3
 *   allows it. Such a put fails 'permanent'. The pack layer's keys never do this.
 * - list reads the subtree below the prefix's directory, then sorts: directory order is not
 *   key order ("a-c" < "a/b" in bytes, but the directory "a" sorts first).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import {
  Backend,
  BackendError,
  BackendErrorKind,
  ByteRange,
  CallOptions,
  checkKey,
  checkPrefix,
  checkRange,
  compareKeys,
  ObjectInfo,
  throwIfAborted,
  Tier,
} from './backend';
import { preadFile } from '../native';
import { BackendFactory, BackendSpec, rejectUnknownParams, specString } from './spec';

const TMP_PREFIX = '.isg-tmp-';
/** Largest single write/read syscall; Node caps a read at 2 GiB anyway. */
const IO_CHUNK = 64 * 1024 * 1024;

export class LocalBackend implements Backend {
  readonly type = 'local';

  constructor(
    readonly name: string,
    readonly root: string,
    readonly tier: Tier = 'hot',
  ) {
    if (!path.isAbsolute(root)) throw new Error(`local backend '${name}': path must be absolute, not '${root}'`);
  }

  describe(): Record<string, unknown> {
    return { path: this.root };
  }

  async close(): Promise<void> {}

  /** Creates the root directory (for a new repository). */
  async init(): Promise<void> {
    try {
      await fsp.mkdir(this.root, { recursive: true });
    } catch (e) {
      throw this.fsError(e, `creating ${this.root}`);
    }
  }

  async put(key: string, data: Buffer, opts: CallOptions = {}): Promise<void> {
    const file = this.fileOf(key);
    const dir = path.dirname(file);
    throwIfAborted(opts.signal);
    const tmp = path.join(dir, TMP_PREFIX + randomBytes(8).toString('hex'));
    let fh: fsp.FileHandle | undefined;
    try {
      try {
        fh = await fsp.open(tmp, 'wx', 0o644);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        await this.makeDirs(dir);
        fh = await fsp.open(tmp, 'wx', 0o644);
      }
      for (let off = 0; off < data.length;) {
        throwIfAborted(opts.signal);
        const { bytesWritten } = await fh.write(data, off, Math.min(IO_CHUNK, data.length - off), off);
        off += bytesWritten;
      }
      await fh.sync();
      await fh.close();
      fh = undefined;
      throwIfAborted(opts.signal);
      await fsp.rename(tmp, file);
    } catch (e) {
      await fh?.close().catch(() => undefined);
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      if (opts.signal?.aborted && e === opts.signal.reason) throw e;
      throw this.fsError(e, `put ${key}`);
    }
    try {
      await fsyncDir(dir);
    } catch (e) {
      throw this.fsError(e, `put ${key} (fsync of directory)`);
    }
  }

  async get(key: string, range?: ByteRange, opts: CallOptions = {}): Promise<Buffer> {
    const file = this.fileOf(key);
    if (range) checkRange(range, this.name);
    throwIfAborted(opts.signal);
    try {
      // A ranged read of a block is one call (a short one: the range ran past the end); a whole
      // object, or a range that may be far larger than the object, is sized by stat first.
      if (range && range.length <= IO_CHUNK) return await preadFile(file, range.offset, range.length);
      const st = await fsp.stat(file);
      if (!st.isFile()) throw this.notFound(key);
      const start = range ? Math.min(range.offset, st.size) : 0;
      const end = range ? Math.min(st.size, range.offset + range.length) : st.size;
      return await preadFile(file, start, end - start); // short if truncated underneath us (our puts replace whole files)
    } catch (e) {
      if (opts.signal?.aborted && e === opts.signal.reason) throw e;
      if (e instanceof BackendError) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') {
        await this.checkRoot();
        throw this.notFound(key);
      }
      throw this.fsError(e, `get ${key}`);
    }
  }

  async stat(key: string, opts: CallOptions = {}): Promise<ObjectInfo | null> {
    const file = this.fileOf(key);
    throwIfAborted(opts.signal);
    try {
      const st = await fsp.stat(file);
      return st.isFile() ? { key, size: st.size } : null;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        await this.checkRoot();
        return null;
      }
      throw this.fsError(e, `stat ${key}`);
    }
  }

  async delete(key: string, opts: CallOptions = {}): Promise<void> {
    const file = this.fileOf(key);
    throwIfAborted(opts.signal);
    try {
      await fsp.unlink(file);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') {
        await this.checkRoot();
        return;
      }
      throw this.fsError(e, `delete ${key}`);
    }
  }

  async *list(prefix: string, opts: CallOptions = {}): AsyncIterable<ObjectInfo> {
    checkPrefix(prefix, this.name);
    throwIfAborted(opts.signal);
    await this.checkRoot();
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash < 0 ? '' : prefix.slice(0, slash + 1); // '' or 'a/b/'
    const found: ObjectInfo[] = [];
    const walk = async (relDir: string): Promise<void> => {
      throwIfAborted(opts.signal);
      let entries: fs.Dirent[];
      try {
        entries = await fsp.readdir(path.join(this.root, relDir), { withFileTypes: true });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return; // vanished or never existed
        throw e;
      }
      for (const ent of entries) {
        if (ent.name.startsWith(TMP_PREFIX)) continue;
        const key = relDir + ent.name;
        if (ent.isDirectory()) {
          // Descend only where keys may still match the prefix.
          const sub = key + '/';
          if (sub.startsWith(prefix) || prefix.startsWith(sub)) await walk(sub);
        } else if (ent.isFile() && key.startsWith(prefix)) {
          try {
            const st = await fsp.stat(path.join(this.root, key));
            found.push({ key, size: st.size });
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; // deleted meanwhile
          }
        }
      }
    };
    try {
      await walk(dirKey);
    } catch (e) {
      if (opts.signal?.aborted && e === opts.signal.reason) throw e;
      throw this.fsError(e, `list ${prefix}`);
    }
    found.sort((a, b) => compareKeys(a.key, b.key));
    for (const info of found) {
      throwIfAborted(opts.signal);
      yield info;
    }
  }

  localFile(key: string): string {
    return this.fileOf(key);
  }

  /** Path of a key, after the common key rules and the local ones. */
  private fileOf(key: string): string {
    checkKey(key, this.name);
    for (const seg of key.split('/')) {
      if (seg.startsWith(TMP_PREFIX))
        throw new BackendError('permanent', `invalid key ${JSON.stringify(key)}: segment starts with '${TMP_PREFIX}'`, this.name);
      if (Buffer.byteLength(seg) > 255)
        throw new BackendError('permanent', `invalid key ${JSON.stringify(key)}: segment longer than 255 bytes`, this.name);
    }
    return path.join(this.root, key);
  }

  /** mkdir -p below the root (never the root itself), fsyncing the parent of each new directory. */
  private async makeDirs(dir: string): Promise<void> {
    await this.checkRoot();
    const created = await fsp.mkdir(dir, { recursive: true }); // first directory created, if any
    if (created === undefined) return;
    for (let d = dir; ; d = path.dirname(d)) {
      await fsyncDir(path.dirname(d));
      if (d === created || d.length <= this.root.length) break;
    }
  }

  /** A missing root means an unmounted disk or a moved directory: 'transient', not 'not found'. */
  private async checkRoot(): Promise<void> {
    let ok = false;
    try {
      ok = (await fsp.stat(this.root)).isDirectory();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw this.fsError(e, `stat of root ${this.root}`);
    }
    if (!ok) throw new BackendError('transient', `root directory ${this.root} does not exist (disk not mounted?)`, this.name);
  }

  private notFound(key: string): BackendError {
    return new BackendError('not-found', `no object ${JSON.stringify(key)}`, this.name);
  }

  private fsError(e: unknown, what: string): BackendError {
    if (e instanceof BackendError) return e;
    const err = e as NodeJS.ErrnoException;
    const kind: BackendErrorKind = fsErrorKind(err.code);
    const text = err.code === 'ENOSPC' ? 'no space left on device' : err.code === 'EDQUOT' ? 'disk quota exceeded' : err.message;
    return new BackendError(kind, `${what}: ${text}`, this.name, { cause: e });
  }
}

/** errno -> kind. Unknown codes are 'permanent': retrying an error we do not understand hides bugs. */
export function fsErrorKind(code: string | undefined): BackendErrorKind {
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return 'unauthorised';
    case 'ENOENT': // the call sites turn a missing object into 'not-found'; here it is a race
    case 'EIO':
    case 'EAGAIN':
    case 'EBUSY':
    case 'EINTR':
    case 'EMFILE':
    case 'ENFILE':
    case 'ENOMEM':
    case 'ETIMEDOUT':
    case 'ESTALE': // NFS
    case 'ENOTCONN': // a FUSE-mounted directory whose daemon died
      return 'transient';
    default: // ENOSPC, EDQUOT, EROFS, ENOTDIR, EISDIR, ENAMETOOLONG, ...
      return 'permanent';
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export const localFactory: BackendFactory = {
  defaultTier: 'hot',
  parse(body, params) {
    rejectUnknownParams(params, []);
    if (body === '') throw new Error('local: a directory path is required, e.g. local:/mnt/a/isg');
    return { path: path.resolve(body) };
  },
  create(spec: BackendSpec) {
    return new LocalBackend(spec.name, specString(spec, 'path', true), spec.tier);
  },
  async init(spec: BackendSpec) {
    await new LocalBackend(spec.name, specString(spec, 'path', true), spec.tier).init();
  },
};
