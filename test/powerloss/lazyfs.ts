/**
 * lazyfs: a pass-through FUSE filesystem over a backing directory that holds every data write in
 * memory until the file is fsynced, so that a test can cut the power: the design of LazyFS
 * (https://github.com/dsrhaslab/lazyfs), in TypeScript over the project's binding (mount/fuse.ts).
 * Run in its own process (test/powerloss/harness.ts does):
 *
 *   node -r ./test/fuse/ts-register.js test/powerloss/lazyfs.ts <mountpoint> <backing-dir> [<control-socket>]
 *
 * What is held and what is not:
 * - write(2) and truncate/ftruncate/open(O_TRUNC) are held, per file, as an ordered log of
 *   operations keyed by the backing inode (dev:ino): reads, getattr (size, mtime) and mmap see them
 *   at once, the backing file does not. The log follows the inode, not the name: a rename keeps it,
 *   a hard link shares it, and when the last name is gone and no handle is open it is discarded
 *   (nothing can reach that data any more).
 * - fsync and fdatasync of a file (FUSE's FSYNC, also sent for msync(MS_SYNC)) write the file's
 *   whole log to the backing file: "durable" means "in the backing file" (the backing file is not
 *   fsynced itself: the backing filesystem never loses power here).
 * - A write through an O_SYNC/O_DSYNC descriptor (LMDB writes its meta pages so) is durable on its
 *   own, like a FUA write: it stays in the log, marked durable, and every crash applies it (in
 *   order), while earlier unsynced writes of the same file may still be lost. The kernel follows
 *   each such write with an FSYNC of that descriptor; an FSYNC through an O_SYNC/O_DSYNC handle
 *   therefore flushes nothing more (a program that fsyncs such a descriptor to make writes through
 *   OTHER descriptors durable would lose them here; LMDB fdatasyncs its other descriptor).
 * - sync_file_range(2) and syncfs(2) never reach a FUSE filesystem (the kernel sends nothing for
 *   them): they make nothing durable here. Use the `sync` command to model syncfs.
 * - Metadata goes straight to the backing directory, at once and durable: create, mkdir, unlink,
 *   rmdir, rename, link, symlink, chmod, chown, utimens (as LazyFS does by default). So a file
 *   created, written and renamed over another without fsync comes back as an empty (or shorter)
 *   file under the new name: the classic "rename without fsync" loss. fsyncdir is a no-op.
 *   Not supported: xattrs (ENOTSUP), mknod (no fifos, devices or unix sockets: bind(2) on the mount
 *   fails), times are kept to the microsecond.
 *
 * Crashes (commands, below): `crash` drops every held operation (but the durable ones); `crash-torn` applies a random
 * subset of them (each held write or truncate independently, or each 4 KiB page of each write with
 * unit 'page'; deterministic from the seed) and drops the rest; `crash-apply` applies exactly the
 * listed ones (aim at LMDB's meta pages with `pending` first). An fsync already running when the
 * crash arrives completes first. After a crash the daemon answers EIO to everything (the machine is
 * dead): the harness then unmounts it and mounts a fresh one over the same backing directory, so that
 * the kernel's page cache of the old mount cannot serve the dropped data. Stop the programs on the
 * mount (kill -9) before crashing.
 *
 * Control: over the IPC channel of the parent ({cmd: ...} messages, one answer each), or over a unix
 * socket given as third argument (one JSON command a line, one JSON answer a line), or a plain word:
 *   stats                         -> {files, ops, bytes}: what is held
 *   pending                       -> {ops: HeldOp[]}
 *   sync                          -> writes everything held (like syncfs)
 *   crash                         -> {applied: [], dropped: HeldOp[]}
 *   crash-torn <seed> [p] [unit]  -> {applied, dropped}; p = probability of each (0.5), unit write|page
 *   crash-apply <seq,...>         -> {applied, dropped}
 * SIGTERM syncs everything (a clean shutdown), unmounts and exits 0 (3 when it had to force).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { EBADF, EEXIST, EIO, EISDIR, errno, FUSE_DEFAULTS, FuseOps, FuseStat, mountFuse, RENAME_NOREPLACE } from '../../mount/fuse';
import { forceUnmount } from '../../mount/teardown';

const PAGE = 4096;
const O_ACCMODE = 3;
const { O_RDONLY, O_RDWR, O_WRONLY, O_CREAT, O_EXCL, O_TRUNC, O_SYNC, O_DSYNC } = fs.constants;

const open = promisify(fs.open);
const close = promisify(fs.close);
const fstat = promisify(fs.fstat);
const ftruncate = promisify(fs.ftruncate);
const fchown = promisify(fs.fchown);
const pread = (fd: number, buf: Buffer, off: number, len: number, pos: number) =>
  new Promise<number>((resolve, reject) => fs.read(fd, buf, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))));
const pwrite = (fd: number, buf: Buffer, off: number, len: number, pos: number) =>
  new Promise<number>((resolve, reject) => fs.write(fd, buf, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))));
const fsp = fs.promises;

/** One held operation, as the commands report it. */
export interface HeldOp {
  seq: number;
  /** The name the file was last opened, written or truncated under (for reports only). */
  path: string;
  kind: 'write' | 'truncate';
  /** write: where and how many bytes; truncate: offset is the new size, length 0. */
  offset: number;
  length: number;
  /** Written through an O_SYNC/O_DSYNC descriptor: every crash keeps it. */
  durable: boolean;
}

export interface CrashReport {
  applied: HeldOp[];
  dropped: HeldOp[];
}

export interface LazyStats {
  files: number;
  ops: number;
  bytes: number;
}

interface Op {
  seq: number;
  kind: 'write' | 'truncate';
  offset: number;
  data?: Buffer;
  durable?: boolean;
}

/** The held log of one backing inode, with a descriptor of its own to write it back through. */
interface FileState {
  key: string;
  fd: number;
  path: string;
  /** The size the programs see: the backing size with the log applied. */
  size: number;
  mtimeNs: bigint;
  ops: Op[];
  /** The chain of flushes: one at a time, each writes what the log held when it started. */
  flushing: Promise<void>;
  /** Bumped by a crash: a flush of an older generation stops writing. */
  gen: number;
}

interface Handle {
  fd: number;
  key: string;
  path: string;
  sync: boolean;
}

const keyOf = (st: { dev: number | bigint; ino: number | bigint }): string => `${st.dev}:${st.ino}`;
const clockBase = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
const nowNs = (): bigint => clockBase + process.hrtime.bigint();
const code = (e: unknown): number => errno((e as NodeJS.ErrnoException).code ?? 'EIO');

/** mulberry32: a small deterministic PRNG, uniform in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class LazyFs {
  private readonly states = new Map<string, FileState>();
  private readonly creating = new Map<string, Promise<FileState>>();
  private readonly handles = new Map<number, Handle>();
  private readonly opens = new Map<string, number>();
  private nextFh = 1;
  private seq = 0;
  /** Set by a crash: every operation answers EIO until the mount is replaced. */
  dead = false;

  constructor(readonly backing: string) {}

  private full(p: string): string {
    return path.join(this.backing, p);
  }

  // ---- the held logs ---------------------------------------------------------------------------

  /** The log of a backing inode, made on first need: `reopen` names the inode (a path or /proc/self/fd/N). */
  private stateFor(key: string, reopen: string, name: string): FileState | Promise<FileState> {
    const s = this.states.get(key);
    if (s) return s;
    let p = this.creating.get(key);
    if (!p) {
      p = (async () => {
        const fd = await open(reopen, O_WRONLY);
        const st = await fstat(fd, { bigint: true });
        if (keyOf(st) !== key) {
          await close(fd);
          throw Object.assign(new Error(`${name} changed under us`), { code: 'ESTALE' });
        }
        const state: FileState = {
          key,
          fd,
          path: name,
          size: Number(st.size),
          mtimeNs: st.mtimeNs,
          ops: [],
          flushing: Promise.resolve(),
          gen: 0,
        };
        this.states.set(key, state);
        return state;
      })().finally(() => this.creating.delete(key));
      this.creating.set(key, p);
    }
    return p;
  }

  private hold(s: FileState, op: Omit<Op, 'seq'>, name: string): void {
    s.ops.push({ ...op, seq: ++this.seq });
    s.size = op.kind === 'truncate' ? op.offset : Math.max(s.size, op.offset + op.data!.length);
    s.mtimeNs = nowNs();
    if (name) s.path = name;
  }

  /** Writes the log as it stands to the backing file; resolves once every op held before the call is there. */
  flush(s: FileState): Promise<void> {
    const run = async (): Promise<void> => {
      const gen = s.gen;
      const batch = s.ops.slice();
      for (const op of batch) {
        if (s.gen !== gen) return;
        await applyOp(s.fd, op);
      }
      if (s.gen !== gen) return;
      s.ops.splice(0, batch.length);
      void this.tidy(s.key);
    };
    const p = s.flushing.catch(() => undefined).then(run);
    s.flushing = p;
    return p;
  }

  /** Forgets a log that holds nothing and that no handle uses; drops one whose inode has no name left. */
  private async tidy(key: string): Promise<void> {
    const s = this.states.get(key);
    if (!s || (this.opens.get(key) ?? 0) > 0) return;
    if (s.ops.length > 0) {
      const st = await fstat(s.fd).catch(() => null);
      if (!st || st.nlink > 0 || (this.opens.get(key) ?? 0) > 0 || this.states.get(key) !== s) return;
      s.gen++;
      s.ops = [];
    }
    this.states.delete(key);
    await close(s.fd).catch(() => undefined);
  }

  /** The held size and mtime over the backing file's attributes. */
  private stat(st: fs.BigIntStats): FuseStat {
    const s = st.isFile() ? this.states.get(keyOf(st)) : undefined;
    return {
      mode: Number(st.mode),
      nlink: Number(st.nlink),
      uid: Number(st.uid),
      gid: Number(st.gid),
      ino: Number(st.ino),
      size: s ? s.size : Number(st.size),
      rdev: Number(st.rdev),
      blksize: Number(st.blksize),
      blocks: s ? Math.ceil(s.size / 512) : Number(st.blocks),
      atimeNs: st.atimeNs,
      mtimeNs: s && s.mtimeNs > st.mtimeNs ? s.mtimeNs : st.mtimeNs,
      ctimeNs: s && s.mtimeNs > st.ctimeNs ? s.mtimeNs : st.ctimeNs,
    };
  }

  private async read(h: Handle, buf: Buffer, len: number, offset: number): Promise<number> {
    const s = this.states.get(h.key);
    if (!s) return pread(h.fd, buf, 0, len, offset);
    // The log as it is now: a flush running meanwhile may move some of it to the backing file,
    // and applying an op twice changes nothing.
    const ops = s.ops.slice();
    const n = Math.max(0, Math.min(len, s.size - offset));
    let got = 0;
    while (got < n) {
      const r = await pread(h.fd, buf, got, n - got, offset + got);
      if (r === 0) break;
      got += r;
    }
    buf.fill(0, got, n);
    const end = offset + n;
    for (const op of ops) {
      if (op.kind === 'truncate') {
        if (op.offset < end) buf.fill(0, Math.max(op.offset, offset) - offset, n);
        continue;
      }
      const a = Math.max(op.offset, offset);
      const b = Math.min(op.offset + op.data!.length, end);
      if (a < b) op.data!.copy(buf, a - offset, a - op.offset, b - op.offset);
    }
    return n;
  }

  // ---- commands --------------------------------------------------------------------------------

  stats(): LazyStats {
    let files = 0,
      ops = 0,
      bytes = 0;
    for (const s of this.states.values()) {
      if (s.ops.length) files++;
      ops += s.ops.length;
      for (const op of s.ops) bytes += op.data?.length ?? 0;
    }
    return { files, ops, bytes };
  }

  pending(): HeldOp[] {
    const out: HeldOp[] = [];
    for (const s of this.states.values()) for (const op of s.ops) out.push(describe(s, op));
    return out.sort((a, b) => a.seq - b.seq);
  }

  async sync(): Promise<void> {
    await Promise.all([...this.states.values()].map((s) => this.flush(s)));
  }

  /**
   * The power cut: every held op that is durable or for which keep() is true reaches the backing
   * file (in order), the rest is lost (keep() is not asked about durable ops). With unit 'page' a write is cut at 4 KiB boundaries and keep() asked for
   * each piece. Answers EIO to everything afterwards.
   */
  async crash(keep: (op: HeldOp) => boolean, unit: 'write' | 'page' = 'write'): Promise<CrashReport> {
    this.dead = true;
    await Promise.all([...this.states.values()].map((s) => s.flushing.catch(() => undefined)));
    const report: CrashReport = { applied: [], dropped: [] };
    const all = [...this.states.values()].flatMap((s) => s.ops.map((op) => ({ s, op }))).sort((a, b) => a.op.seq - b.op.seq);
    for (const s of this.states.values()) s.gen++;
    for (const { s, op } of all) {
      for (const piece of unit === 'page' ? pages(op) : [op]) {
        const d = describe(s, piece);
        if (!piece.durable && !keep(d)) {
          report.dropped.push(d);
          continue;
        }
        await applyOp(s.fd, piece);
        report.applied.push(d);
      }
    }
    for (const s of this.states.values()) await close(s.fd).catch(() => undefined);
    this.states.clear();
    return report;
  }

  // ---- the FUSE operations ---------------------------------------------------------------------

  ops(): FuseOps {
    const full = (p: string) => this.full(p);
    const root = process.getuid?.() === 0;
    const owner = async (p: string, uid: number, gid: number) => {
      if (root) await fsp.lchown(p, uid, gid);
    };
    const lstat = (p: string) => fsp.lstat(full(p), { bigint: true });
    const byFh = (fh: number): Handle => {
      const h = this.handles.get(fh);
      if (!h) throw Object.assign(new Error('bad handle'), { code: 'EBADF' });
      return h;
    };
    const addHandle = async (fd: number, p: string, flags: number): Promise<number> => {
      const st = await fstat(fd, { bigint: true });
      const h: Handle = { fd, key: keyOf(st), path: p, sync: (flags & (O_SYNC | O_DSYNC)) !== 0 };
      const fh = this.nextFh++;
      this.handles.set(fh, h);
      this.opens.set(h.key, (this.opens.get(h.key) ?? 0) + 1);
      if (flags & O_TRUNC) {
        const s = await this.stateFor(h.key, `/proc/self/fd/${fd}`, p);
        this.hold(s, { kind: 'truncate', offset: 0 }, p);
      }
      return fh;
    };
    // Descriptors are opened read-write when writing is asked: the kernel may read a page it writes.
    const accmode = (flags: number) => ((flags & O_ACCMODE) === O_RDONLY ? O_RDONLY : O_RDWR);
    /** After a name is removed: a log nobody can reach any more is dropped. */
    const forget = async (st: fs.BigIntStats | null) => {
      if (st?.isFile()) await this.tidy(keyOf(st));
    };
    const lstatOrNull = (p: string) => lstat(p).catch(() => null);

    // Each handler: an async function answering 0 (or a value), errors mapped to negative errnos.
    const ops: FuseOps = {
      getattr: (p, cb) =>
        void lstat(p).then(
          (st) => cb(0, this.stat(st)),
          (e) => cb(code(e)),
        ),
      fgetattr: (p, fh, cb) => {
        const h = this.handles.get(fh);
        if (!h) return ops.getattr!(p, cb);
        fstat(h.fd, { bigint: true }).then(
          (st) => cb(0, this.stat(st)),
          (e) => cb(code(e)),
        );
      },
      access: (p, mode, cb) =>
        void fsp.access(full(p), mode).then(
          () => cb(0),
          (e) => cb(code(e)),
        ),
      statfs: (_p, cb) =>
        void fsp.statfs(this.backing).then(
          (s) =>
            cb(0, {
              bsize: s.bsize,
              frsize: s.bsize,
              blocks: s.blocks,
              bfree: s.bfree,
              bavail: s.bavail,
              files: s.files,
              ffree: s.ffree,
              favail: s.ffree,
              namemax: 255,
            }),
          (e) => cb(code(e)),
        ),
      readdir: (p, cb) =>
        void fsp.readdir(full(p)).then(
          (names) => cb(0, ['.', '..', ...names]),
          (e) => cb(code(e)),
        ),
      fsyncdir: (_p, _d, _fh, cb) => cb(0),
      readlink: (p, cb) =>
        void fsp.readlink(full(p)).then(
          (t) => cb(0, t),
          (e) => cb(code(e)),
        ),
      mkdir: (p, mode, caller, cb) =>
        void fsp
          .mkdir(full(p), mode)
          .then(() => owner(full(p), caller.uid, caller.gid))
          .then(
            () => cb(0),
            (e) => cb(code(e)),
          ),
      rmdir: (p, cb) =>
        void fsp.rmdir(full(p)).then(
          () => cb(0),
          (e) => cb(code(e)),
        ),
      symlink: (target, p, caller, cb) =>
        void fsp
          .symlink(target, full(p))
          .then(() => owner(full(p), caller.uid, caller.gid))
          .then(
            () => cb(0),
            (e) => cb(code(e)),
          ),
      link: (existing, p, cb) =>
        void fsp.link(full(existing), full(p)).then(
          () => cb(0),
          (e) => cb(code(e)),
        ),
      unlink: (p, cb) =>
        void (async () => {
          const st = await lstatOrNull(p);
          await fsp.unlink(full(p));
          await forget(st);
        })().then(
          () => cb(0),
          (e) => cb(code(e)),
        ),
      rename: (from, to, flags, cb) =>
        void (async () => {
          const victim = await lstatOrNull(to);
          if (victim && flags & RENAME_NOREPLACE) return EEXIST;
          await fsp.rename(full(from), full(to));
          await forget(victim);
          for (const s of this.states.values()) if (s.path === from) s.path = to;
          return 0;
        })().then(
          (r) => cb(r),
          (e) => cb(code(e)),
        ),
      chmod: (p, mode, cb) =>
        void fsp.chmod(full(p), mode).then(
          () => cb(0),
          (e) => cb(code(e)),
        ),
      chown: (p, uid, gid, cb) =>
        void fsp.lchown(full(p), uid, gid).then(
          () => cb(0),
          (e) => cb(code(e)),
        ),
      utimens: (p, atimeNs, mtimeNs, cb) =>
        void (async () => {
          const st = await lstat(p);
          const sec = (ns: bigint) => Number(ns) / 1e9;
          await fsp.lutimes(full(p), sec(atimeNs ?? st.atimeNs), sec(mtimeNs ?? st.mtimeNs));
          const s = this.states.get(keyOf(st));
          if (s && mtimeNs !== null) s.mtimeNs = mtimeNs; // the held mtime must not hide the one set
        })().then(
          () => cb(0),
          (e) => cb(code(e)),
        ),
      truncate: (p, size, cb) =>
        void (async () => {
          const st = await lstat(p);
          if (st.isDirectory()) return EISDIR;
          this.hold(await this.stateFor(keyOf(st), full(p), p), { kind: 'truncate', offset: size }, p);
          return 0;
        })().then(
          (r) => cb(r),
          (e) => cb(code(e)),
        ),
      ftruncate: (p, fh, size, cb) =>
        void (async () => {
          const h = byFh(fh);
          this.hold(await this.stateFor(h.key, `/proc/self/fd/${h.fd}`, h.path), { kind: 'truncate', offset: size }, p);
        })().then(
          () => cb(0),
          (e) => cb(code(e)),
        ),
      create: (p, mode, flags, caller, cb) =>
        void (async () => {
          const fd = await open(full(p), O_CREAT | (flags & O_EXCL) | O_RDWR, mode);
          if (root) await fchown(fd, caller.uid, caller.gid);
          return addHandle(fd, p, flags & ~O_TRUNC); // a new file: nothing to truncate
        })().then(
          (fh) => cb(0, fh),
          (e) => cb(code(e)),
        ),
      open: (p, flags, cb) =>
        void (async () => addHandle(await open(full(p), accmode(flags)), p, flags))().then(
          (fh) => cb(0, fh),
          (e) => cb(code(e)),
        ),
      read: (_p, fh, buf, len, offset, cb) => {
        const h = this.handles.get(fh);
        if (!h) return cb(EBADF);
        this.read(h, buf, len, offset).then(cb, (e) => cb(code(e)));
      },
      write: (p, fh, buf, len, offset, cb) => {
        const h = this.handles.get(fh);
        if (!h) return cb(EBADF);
        const data = Buffer.from(buf.subarray(0, len)); // FUSE's buffer is gone after the answer
        const held = (s: FileState): number | Promise<number> => {
          this.hold(s, { kind: 'write', offset, data, durable: h.sync }, p || h.path);
          return len;
        };
        const s = this.stateFor(h.key, `/proc/self/fd/${h.fd}`, p || h.path);
        if ('key' in s) return void Promise.resolve(held(s)).then(cb, (e) => cb(code(e)));
        s.then(held).then(cb, (e) => cb(code(e)));
      },
      flush: (_p, _fh, cb) => cb(0), // close(2) makes nothing durable
      fsync: (p, _datasync, fh, cb) =>
        void (async () => {
          const h = this.handles.get(fh);
          if (h?.sync) return; // the kernel's FSYNC after each O_DSYNC write: that write is durable already
          const key = h ? h.key : keyOf(await lstat(p));
          const s = this.states.get(key) ?? (await this.creating.get(key));
          if (s) await this.flush(s);
        })().then(
          () => cb(0),
          (e) => cb(code(e)),
        ),
      release: (_p, fh, cb) => {
        const h = this.handles.get(fh);
        if (!h) return cb(0);
        this.handles.delete(fh);
        const left = (this.opens.get(h.key) ?? 1) - 1;
        if (left > 0) this.opens.set(h.key, left);
        else this.opens.delete(h.key);
        void close(h.fd)
          .catch(() => undefined)
          .then(() => this.tidy(h.key))
          .catch(() => undefined);
        cb(0);
      },
    };
    // A crashed machine answers nothing but EIO.
    for (const [name, fn] of Object.entries(ops) as [keyof FuseOps, (...a: unknown[]) => void][]) {
      (ops as Record<string, unknown>)[name] = (...args: unknown[]) => {
        if (!this.dead) return fn(...args);
        (args[args.length - 1] as (e: number) => void)(EIO);
      };
    }
    return ops;
  }
}

function describe(s: FileState, op: Op): HeldOp {
  return { seq: op.seq, path: s.path, kind: op.kind, offset: op.offset, length: op.data?.length ?? 0, durable: !!op.durable };
}

/** A write cut at 4 KiB boundaries (same seq; offsets tell the pieces apart). */
function pages(op: Op): Op[] {
  if (op.kind !== 'write') return [op];
  const out: Op[] = [];
  for (let at = op.offset, end = op.offset + op.data!.length; at < end;) {
    const next = Math.min(end, (Math.floor(at / PAGE) + 1) * PAGE);
    out.push({ ...op, offset: at, data: op.data!.subarray(at - op.offset, next - op.offset) });
    at = next;
  }
  return out;
}

async function applyOp(fd: number, op: Op): Promise<void> {
  if (op.kind === 'truncate') return ftruncate(fd, op.offset);
  const data = op.data!;
  for (let done = 0; done < data.length;) done += await pwrite(fd, data, done, data.length - done, op.offset + done);
}

/** Runs one control command: an object {cmd, ...} or a line of words. */
export async function command(
  fs_: LazyFs,
  msg: { cmd: string; seed?: number; p?: number; unit?: 'write' | 'page'; seqs?: number[] },
): Promise<unknown> {
  switch (msg.cmd) {
    case 'stats':
      return fs_.stats();
    case 'pending':
      return { ops: fs_.pending() };
    case 'sync':
      await fs_.sync();
      return fs_.stats();
    case 'crash':
      return fs_.crash(() => false);
    case 'crash-torn': {
      const r = rng(msg.seed ?? 0);
      const p = msg.p ?? 0.5;
      return fs_.crash(() => r() < p, msg.unit ?? 'write');
    }
    case 'crash-apply': {
      const keep = new Set(msg.seqs ?? []);
      return fs_.crash((op) => keep.has(op.seq));
    }
    default:
      throw new Error(`unknown command ${msg.cmd}`);
  }
}

function parseLine(line: string): Parameters<typeof command>[1] {
  const t = line.trim();
  if (t.startsWith('{')) return JSON.parse(t) as Parameters<typeof command>[1];
  const [cmd, a, b, c] = t.split(/\s+/);
  if (cmd === 'crash-apply') return { cmd, seqs: (a ?? '').split(',').filter(Boolean).map(Number) };
  return {
    cmd,
    seed: a === undefined ? undefined : Number(a),
    p: b === undefined ? undefined : Number(b),
    unit: c as 'write' | 'page' | undefined,
  };
}

async function main(): Promise<void> {
  const [mnt, backing, socket] = process.argv.slice(2).map((a) => path.resolve(a));
  if (!mnt || !backing) throw new Error('usage: lazyfs.ts <mountpoint> <backing-dir> [<control-socket>]');
  process.umask(0); // the kernel has applied the caller's umask to the modes already
  const lazy = new LazyFs(backing);
  const mounted = await mountFuse(mnt, lazy.ops(), { ...FUSE_DEFAULTS, attrCache: false, fsname: 'isgfs-lazyfs', subtype: 'lazyfs' });
  const answer = (msg: Parameters<typeof command>[1]) =>
    command(lazy, msg).then(
      (r) => ({ ok: true, result: r }),
      (e: Error) => ({ ok: false, error: e.message }),
    );
  process.on('message', (m: Parameters<typeof command>[1]) => void answer(m).then((r) => process.send?.(r)));
  if (socket) {
    fs.rmSync(socket, { force: true });
    net
      .createServer((c) => {
        let buf = '';
        c.on('data', (d) => {
          buf += d.toString();
          for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (line.trim()) void answer(parseLine(line)).then((r) => c.write(JSON.stringify(r) + '\n'));
          }
        });
        c.on('error', () => undefined);
      })
      .listen(socket);
  }
  process.once('SIGTERM', () => {
    const sync = lazy.dead ? Promise.resolve() : lazy.sync();
    sync
      .catch((e: Error) => process.stderr.write(`lazyfs: sync failed: ${e.message}\n`))
      .then(() => mounted.unmount())
      .then(
        () => process.exit(0),
        async () => {
          await forceUnmount(mnt);
          process.exit(3);
        },
      );
  });
  process.send?.({ ready: true });
  process.stdout.write(`lazyfs: ${backing} on ${mnt}\n`);
}

if (require.main === module) {
  main().catch((e: Error) => {
    process.stderr.write(`lazyfs: ${e.stack ?? e.message}\n`);
    process.exit(1);
  });
}
