/**
 * Open files and write-behind: the handle table, the FileData of every file that is open (or closed
 * with data still buffered), the flush that runs behind a close, the periodic writeback of data
 * buffered too long (open files included), and the global budget of buffered bytes. FileSystem (the
 * namespace) opens and closes through it; this module knows nothing of names. When a file is no
 * longer held and has nothing left to flush it is forgotten, and FileSystem is told (it frees an
 * unlinked inode).
 *
 * Failures: a flush that fails keeps its data buffered (counted in the budget) and is retried by the
 * writeback, with a growing delay. While the budget has room, writes and closes go on; once it is
 * full and flushes cannot make room, write, close and fsync answer ENOSPC (disk full) or EIO.
 */
import { Inode } from '../meta/meta';
import { DataDeps, FileData, WriteRoom } from './filedata';
import { DEFAULT_WRITE_BUFFER, ROOM_WAIT_MS, WriteBudget, writeError } from './budget';
import { fsError } from './errors';

/** Closed files whose flush may run behind at once before a close waits. */
const MAX_FLUSH_BEHIND = 64;

export interface Handle {
  ino: number;
  flags: number;
  data: FileData | null; // null for directories
}

export interface OpenFilesHooks {
  /** A file nobody holds any more and with nothing left to flush was forgotten. */
  closed: (fd: FileData) => void;
  /** Where errors of write-behind go. */
  error: (message: string) => void;
}

export class OpenFiles implements WriteRoom {
  readonly budget: WriteBudget;
  private readonly files = new Map<number, FileData>();
  private readonly handles = new Map<number, Handle>();
  /** Files being flushed behind their closer's back, and those whose flush failed (kept, retried). */
  private readonly behind = new Map<FileData, Promise<void>>();
  private readonly failedBehind = new Set<FileData>();
  private nextFh = 1;

  constructor(
    private readonly deps: DataDeps,
    private readonly hooks: OpenFilesHooks,
  ) {
    this.budget = new WriteBudget(deps.writeBuffer ?? DEFAULT_WRITE_BUFFER);
  }

  /** The data of an inode that is open, or closed with data still buffered. */
  dataOf(ino: number): FileData | undefined {
    return this.files.get(ino);
  }

  handle(fh: number): Handle {
    const h = this.handles.get(fh);
    if (!h) throw fsError('EBADF');
    return h;
  }

  /** Opens the data of a file (a handle of its own for internal users; see closeData). */
  openData(i: Inode): FileData {
    let fd = this.files.get(i.ino);
    if (!fd) {
      fd = new FileData(this.deps, i.ino, i.size, this);
      this.files.set(i.ino, fd);
    }
    fd.handles++;
    return fd;
  }

  /** A new handle of the inode; a directory's has no data. */
  newHandle(i: Inode, flags: number, isDir: boolean): number {
    const fh = this.nextFh++;
    this.handles.set(fh, { ino: i.ino, flags, data: isDir ? null : this.openData(i) });
    return fh;
  }

  /**
   * FUSE flush, on every close(2): write-behind. The buffered data is turned into blocks in the
   * background (reads keep seeing it meanwhile); fsync waits for it. Only when many closed files
   * are still being flushed does a close wait, so memory stays bounded. When the write buffer is
   * full, the close waits for its file's flush and reports its failure (ENOSPC, EIO).
   */
  async flush(fh: number): Promise<void> {
    const h = this.handle(fh);
    const fd = h.data;
    if (fd && this.budget.full && fd.dirtyState) {
      if (fd.failedRecently) throw writeError(fd.failure);
      await this.behind.get(fd);
      await fd.flush().catch((e: unknown) => {
        this.failedBehind.add(fd);
        throw writeError(e);
      });
      this.failedBehind.delete(fd);
      return;
    }
    if (fd) this.flushBehind(fd);
    while (this.behind.size > MAX_FLUSH_BEHIND) await Promise.race([...this.behind.values()]);
  }

  /**
   * WriteRoom: waits until `bytes` more fit in the budget. Flushes are started on every file with
   * data buffered (whole, not keeping a tail back: the buffer must drain), and the wait ends when
   * room is given back. It fails with the flushes' error (ENOSPC, EIO) when none can make room, and
   * with EIO after ROOM_WAIT_MS without room.
   */
  async reserve(bytes: number): Promise<void> {
    const deadline = Date.now() + ROOM_WAIT_MS;
    while (!this.budget.fits(bytes)) {
      let draining = false;
      let failure: Error | null = null;
      for (const f of this.files.values()) {
        if (f.dirtyBytes === 0) {
          draining ||= f.flushRunning;
          continue;
        }
        if (f.startBackgroundFlush(true)) draining = true;
        else failure ??= f.failure;
      }
      if (!draining) throw failure ? writeError(failure) : fsError('EIO', 'write buffer full and nothing to flush');
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.budget.changed(left))) {
        throw fsError('EIO', `write buffer full (${this.budget.bytes} bytes) for ${ROOM_WAIT_MS / 1000} s`);
      }
    }
  }

  private flushBehind(fd: FileData): void {
    if (this.behind.has(fd) || !fd.dirtyState) return;
    if (fd.failedRecently) {
      this.failedBehind.add(fd); // the writeback tries again once its delay has passed
      return;
    }
    const p = fd.flush().then(
      () => {
        this.behind.delete(fd);
        this.closeIfUnused(fd);
      },
      (e: Error) => {
        // The data stays buffered (and readable); fsync, flushAll or unmount try again and report.
        this.behind.delete(fd);
        this.failedBehind.add(fd);
        this.hooks.error(`flush of inode ${fd.ino} failed: ${e.message}`);
      },
    );
    this.behind.set(fd, p);
  }

  /** The file's buffered data turned into blocks (its flush behind awaited); the caller syncs. */
  async fsync(fh: number): Promise<void> {
    const h = this.handle(fh);
    if (h.data) {
      await this.behind.get(h.data);
      await h.data.flush().catch((e: unknown) => {
        throw writeError(e);
      });
      this.failedBehind.delete(h.data);
    }
  }

  /**
   * The periodic writeback (the caller syncs after it): every file, open or closed, with data
   * buffered for `ageMs` or more is flushed whole (a sequential writer's tail too). A file whose
   * flush failed is tried again once its retry delay has passed.
   */
  async writeback(ageMs: number): Promise<void> {
    const now = Date.now();
    const due = [...this.files.values()].filter((fd) => fd.dirtySince !== null && now - fd.dirtySince >= ageMs && !fd.failedRecently);
    await Promise.all(
      due.map(async (fd) => {
        await this.behind.get(fd);
        await fd.backgroundFlush;
        const failedBefore = fd.failure !== null;
        try {
          await fd.flush();
          this.failedBehind.delete(fd);
          this.closeIfUnused(fd);
        } catch (e) {
          if (fd.handles === 0) this.failedBehind.add(fd);
          if (!failedBefore) this.hooks.error(`writeback of inode ${fd.ino} failed (kept buffered, retried): ${(e as Error).message}`);
        }
      }),
    );
  }

  async release(fh: number): Promise<void> {
    const h = this.handle(fh);
    this.handles.delete(fh);
    if (!h.data) return;
    h.data.handles--;
    this.flushBehind(h.data);
    this.closeIfUnused(h.data);
  }

  /** Internal users of a FileData (a path truncate) close it synchronously. */
  async closeData(fd: FileData): Promise<void> {
    fd.handles--;
    this.flushBehind(fd);
    this.closeIfUnused(fd);
  }

  /** Forgets a FileData nobody holds and nothing is left to flush; FileSystem frees an unlinked inode. */
  private closeIfUnused(fd: FileData): void {
    if (fd.handles > 0 || this.behind.has(fd) || this.failedBehind.has(fd) || fd.dirtyState) return;
    if (this.files.get(fd.ino) !== fd) return;
    this.files.delete(fd.ino);
    this.hooks.closed(fd);
  }

  /** Turns the buffered data of every open or recently closed file into blocks; reports failures. */
  async flushAll(): Promise<void> {
    await Promise.allSettled([...this.behind.values()]);
    await Promise.all(
      [...this.files.values()].map(async (fd) => {
        await fd.flush();
        this.failedBehind.delete(fd);
        this.closeIfUnused(fd);
      }),
    );
  }

  /** Releases every handle still open (unmount). */
  async releaseAll(): Promise<void> {
    for (const fh of [...this.handles.keys()]) await this.release(fh).catch(() => undefined);
  }
}
