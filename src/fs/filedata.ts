/**
 * The data of one open file: its write buffer over its chunk map, and the flush that turns
 * buffered bytes into blocks.
 *
 * A flush works run by run (a run is a stretch of data between holes). In a run it starts at the
 * chunk boundary before the first buffered byte, re-chunks through the buffered bytes, and goes on
 * into old chunks only until a new cut falls on an old chunk's start: from there on the old chunks
 * are what chunking would give again (a cut depends only on the bytes since the previous cut).
 * One metadata transaction then swaps the chunk map and the refcounts.
 *
 * Reads see committed chunks, then the layer being flushed, then newer writes.
 */
import { ChunkerParams } from '../chunk';
import { CodecPool } from '../block/pool';
import { Extent, Meta, nowNs } from '../meta/meta';
import { BlockStore, EarlyEncoding } from '../store/blockstore';
import { Mutex } from '../store/rwlock';
import { WriteBudget } from './budget';
import { fsError } from './errors';
import { Overlay, Range } from './overlay';

export interface DataDeps {
  meta: Meta;
  store: BlockStore;
  pool: CodecPool;
  chunker: ChunkerParams;
  /** Buffered bytes per file that start a background flush; writers wait at twice this. */
  dirtyCap: number;
  /** Budget of buffered bytes over all files (default DEFAULT_WRITE_BUFFER). */
  writeBuffer?: number;
  /** Bytes read ahead on sequential reads. */
  readahead: number;
}

interface NewChunk {
  offset: number;
  length: number;
  sab: SharedArrayBuffer;
  rel: number; // offset inside sab
  forced: boolean;
  /** Its encoding, when started while the rest of the run was still being cut. */
  encoding?: EarlyEncoding;
}

/**
 * Buffered data is cut this much at a time, and the chunks decided so far are encoded on the
 * other worker while the next piece is cut.
 */
const CUT_STEP = 16 * 1024 * 1024;

/** Reads this close to where the previous one ended count as sequential. */
const SEQUENTIAL_SLACK = 1024 * 1024;
/** The read-ahead window is extended once this much of it has been read. */
const TOP_UP = 2 * 1024 * 1024;

/** After a failed flush, background flushes of the file wait this long, doubling up to RETRY_MAX_MS. */
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 10_000;

/** The write buffer shared by every file: its budget, and the wait for room when it is full (OpenFiles). */
export interface WriteRoom {
  readonly budget: WriteBudget;
  /** Waits until `bytes` more fit, starting flushes; throws ENOSPC/EIO when they cannot make room. */
  reserve(bytes: number): Promise<void>;
}

/** Bytes of a file in shared memory, handed to the codec workers as they lie. */
export interface Segment {
  sab: SharedArrayBuffer;
  rel: number;
  length: number;
}

/**
 * Bytes [start, end) of the concatenation of `segments` in one shared buffer: a view when they
 * lie in one segment (the usual case), else a copy (a chunk that straddles two pieces).
 */
function sliceSegments(segments: Segment[], start: number, end: number): { sab: SharedArrayBuffer; rel: number } {
  let base = 0;
  let i = 0;
  while (base + segments[i].length <= start) base += segments[i++].length;
  const first = segments[i];
  if (end - base <= first.length) return { sab: first.sab, rel: first.rel + start - base };
  const sab = new SharedArrayBuffer(end - start);
  const out = Buffer.from(sab);
  for (let pos = start; pos < end; i++) {
    const s = segments[i];
    const from = pos - base;
    const n = Math.min(s.length - from, end - pos);
    out.set(new Uint8Array(s.sab, s.rel + from, n), pos - start);
    pos += n;
    base += s.length;
  }
  return { sab, rel: 0 };
}

/** Union of ranges, sorted, touching ranges merged. */
function mergeRanges(ranges: Range[]): Range[] {
  const sorted = ranges.filter((r) => r.end > r.start).sort((a, b) => a.start - b.start);
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.start <= last.end) last.end = Math.max(last.end, r.end);
    else out.push({ ...r });
  }
  return out;
}

export class FileData {
  /** Open handles (and internal users such as a path truncate). */
  handles = 0;
  size: number;
  /** Times changed by writes and not yet committed. */
  pendingTimes: { mtimeNs: bigint; ctimeNs: bigint } | null = null;
  private dirty = new Overlay();
  private flushing: Overlay | null = null;
  private readonly lock = new Mutex();
  private background: Promise<void> | null = null;
  /** When the oldest byte (or time) not yet committed was written; null when nothing is buffered. */
  dirtySince: number | null = null;
  /** The last flush's failure, until a flush succeeds; its data stays buffered and is retried. */
  failure: Error | null = null;
  private failures = 0;
  private retryAt = 0;
  /** Bytes this file has charged to the budget (both layers). */
  private charged = 0;
  private lastReadEnd = -1;
  /** The chunk map, read once and kept until this object changes it (nothing else does). */
  private extentCache: Extent[] | null = null;
  private prefetchedTo = 0;

  constructor(
    private readonly d: DataDeps,
    readonly ino: number,
    size: number,
    private readonly room: WriteRoom,
  ) {
    this.size = size;
  }

  /** Buffered bytes past which a background flush starts; writers of this file wait at twice this. */
  private get cap(): number {
    return Math.min(this.d.dirtyCap, this.room.budget.limit / 4);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    // Room first: a write that fails (the buffer full and flushes failing) leaves nothing behind.
    // Checked again after the wait, in the tick that takes the room: others woken with it may have taken it.
    while (!this.room.budget.fits(data.length)) await this.room.reserve(data.length);
    this.dirty.write(offset, data);
    this.account();
    this.dirtySince ??= Date.now();
    if (offset + data.length > this.size) this.size = offset + data.length;
    const t = nowNs();
    this.pendingTimes = { mtimeNs: t, ctimeNs: t };
    const cap = this.cap;
    // A flush that fails ends the wait: the global budget bounds what such a file may hold.
    while (this.dirty.bytes >= 2 * cap && this.startBackgroundFlush()) await this.background;
    if (this.dirty.bytes >= cap) this.startBackgroundFlush();
  }

  /** Keeps the budget's count of this file's buffered bytes (both layers) right. */
  private account(): void {
    const now = this.dirty.bytes + (this.flushing?.bytes ?? 0);
    if (now !== this.charged) this.room.budget.charge(now - this.charged);
    this.charged = now;
  }

  /** Bytes buffered and not being flushed. */
  get dirtyBytes(): number {
    return this.dirty.bytes;
  }

  /** A flush is under way (background, pressure or full). */
  get flushRunning(): boolean {
    return this.flushing !== null || this.background !== null;
  }

  /** The last flush failed and background flushes wait before trying again. */
  get failedRecently(): boolean {
    return this.failure !== null && Date.now() < this.retryAt;
  }

  /** The background flush under way, if any. */
  get backgroundFlush(): Promise<void> | null {
    return this.background;
  }

  /**
   * Starts a background flush unless one runs or the last one failed recently; false when none runs.
   * With keepTail (the default: the file is being written) the tail of the file is kept back, unless
   * `whole` (the buffer is full, or the data is old enough to be written back).
   */
  startBackgroundFlush(whole = false): boolean {
    if (this.background) return true;
    if (this.failedRecently) return false;
    // Keeping the tail back must leave something to commit (the tail is at most one chunk).
    const keepTail = !whole && this.dirty.bytes > 2 * this.d.chunker.maxSize;
    this.background = this.lock
      .run(() => this.flushLocked(keepTail))
      .catch(() => undefined) // recorded in `failure`; the data stays buffered
      .finally(() => {
        this.background = null;
      });
    return true;
  }

  /** Turns every buffered byte into blocks and commits. Throws the error of a failed flush. */
  async flush(): Promise<void> {
    await this.lock.run(() => this.flushLocked(false));
  }

  /** Something to flush: buffered bytes or times. */
  get dirtyState(): boolean {
    return !this.dirty.empty || this.pendingTimes !== null;
  }

  async truncate(newSize: number): Promise<void> {
    await this.lock.run(async () => {
      if (newSize < this.size) {
        this.dirty.truncate(newSize);
        // The chunk that straddles the new end is cut short: its kept prefix becomes buffered data.
        const straddler = this.extentsIn(newSize, newSize + 1).find((e) => e.offset < newSize && e.offset + e.length > newSize);
        if (straddler) {
          const plain = await this.d.store.guard(() => this.d.store.readPlain(straddler.id));
          this.dirty.writeUnder(straddler.offset, plain.subarray(0, newSize - straddler.offset));
        }
      }
      this.size = newSize;
      const t = nowNs();
      this.pendingTimes = { mtimeNs: t, ctimeNs: t };
      await this.flushLocked(false);
    });
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const size = this.size;
    if (offset >= size || length <= 0) return Buffer.alloc(0);
    const n = Math.min(length, size - offset);
    const out = into ? into.subarray(0, n) : Buffer.allocUnsafe(n);
    const end = offset + n;
    // Chunk map and buffer layers are taken in the same tick: one consistent view.
    const extents = this.extentsIn(offset, end);
    const cached = extents.map((e) => this.d.store.cachedPlain(e.id));
    if (cached.every((p) => p !== undefined)) {
      // Every block in memory: copied in this tick, so no sweep can interfere and no lock is taken.
      assemble(out, offset, extents, cached as Buffer[], this.layersIn(offset, end));
    } else {
      await this.d.store.guard(async () => {
        // Taken again under the guard: a sweep that ran before it may have freed blocks that a
        // flush meanwhile replaced; none is freed while the guard holds.
        const ext = this.extentsIn(offset, end);
        const layers = this.layersIn(offset, end);
        assemble(out, offset, ext, await Promise.all(ext.map((e) => this.d.store.readPlain(e.id))), layers);
      });
    }
    // Sequential, give or take the kernel's reordering of concurrent reads.
    if (Math.abs(offset - this.lastReadEnd) <= SEQUENTIAL_SLACK) this.readAhead(end);
    this.lastReadEnd = end;
    return out;
  }

  /**
   * Bytes that hold data (for st_blocks): committed chunks and buffered layers together, within
   * the size. The same before, during and after a flush, which only moves bytes from the layers
   * into chunks: the binding's attribute cache may keep this answer while a flush runs.
   */
  get storedBytes(): number {
    const size = this.size;
    const ranges = this.extentsIn(0, size).map((e) => ({ start: e.offset, end: Math.min(size, e.offset + e.length) }));
    for (const l of [this.flushing, this.dirty]) if (l) ranges.push(...l.ranges(0, size));
    let n = 0;
    for (const r of mergeRanges(ranges)) n += r.end - r.start;
    return n;
  }

  /** Buffered bytes over [from, to): the layer being flushed, then the newer writes. */
  private layersIn(from: number, to: number): { offset: number; data: Buffer }[][] {
    return [this.flushing, this.dirty].filter((l): l is Overlay => l !== null).map((l) => l.slices(from, to));
  }

  /** Committed extents that overlap [from, to), in order. */
  private extentsIn(from: number, to: number): Extent[] {
    const all = (this.extentCache ??= this.d.meta.extentsOf(this.ino));
    let lo = 0;
    let hi = all.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (all[mid].offset + all[mid].length <= from) lo = mid + 1;
      else hi = mid;
    }
    const out: Extent[] = [];
    for (let i = lo; i < all.length && all[i].offset < to; i++) out.push(all[i]);
    return out;
  }

  /** Keeps the next `readahead` bytes loading, topping the window up as reading moves on. */
  private readAhead(pos: number): void {
    if (pos > this.prefetchedTo || pos < this.prefetchedTo - this.d.readahead - SEQUENTIAL_SLACK) this.prefetchedTo = pos; // a new stream
    if (pos + this.d.readahead - TOP_UP < this.prefetchedTo) return;
    const from = Math.max(pos, this.prefetchedTo);
    this.prefetchedTo = pos + this.d.readahead;
    const ids = this.extentsIn(from, this.prefetchedTo).map((e) => e.id);
    if (ids.length) this.d.store.prefetch(ids);
  }

  /**
   * Bytes [from, to) of the view (committed chunks under `layer`) as shared segments in order:
   * buffered bytes are handed over where they lie (no copy), gaps are filled from committed chunks.
   */
  private async materialize(from: number, to: number, live: Extent[], layer: Overlay): Promise<Segment[]> {
    const segments: Segment[] = [];
    const gaps: { at: number; view: Buffer }[] = [];
    const gap = (start: number, end: number) => {
      const sab = new SharedArrayBuffer(end - start);
      segments.push({ sab, rel: 0, length: end - start });
      gaps.push({ at: start, view: Buffer.from(sab) });
    };
    let pos = from;
    for (const s of layer.slices(from, to)) {
      if (s.offset > pos) gap(pos, s.offset);
      segments.push({ sab: s.data.buffer as SharedArrayBuffer, rel: s.data.byteOffset, length: s.data.length }); // Overlay memory is shared
      pos = s.offset + s.data.length;
    }
    if (pos < to) gap(pos, to);
    if (gaps.length) {
      await this.d.store.guard(() =>
        Promise.all(
          live.map(async (e) => {
            const parts = gaps.filter((g) => g.at < e.offset + e.length && g.at + g.view.length > e.offset);
            if (!parts.length) return;
            const plain = await this.d.store.readPlain(e.id);
            for (const g of parts) {
              const s = Math.max(g.at, e.offset);
              const t = Math.min(g.at + g.view.length, e.offset + e.length);
              plain.copy(g.view, s - g.at, s - e.offset, t - e.offset);
            }
          }),
        ),
      );
    }
    return segments;
  }

  /**
   * The flush proper; runs under the file lock. With keepTail (a background flush of a file still
   * being written) the last chunk of a run that ends at end of file is not committed: its end is
   * only where the writer has got to, and the next flush would cut it again anyway.
   */
  private async flushLocked(keepTail: boolean): Promise<void> {
    const committed = this.extentsIn(0, Number.MAX_SAFE_INTEGER);
    const size = this.size;
    const beyond = committed.filter((e) => e.offset >= size);
    if (this.dirty.empty && !this.pendingTimes && !beyond.length) return;

    const layer = this.dirty;
    const since = this.dirtySince;
    this.dirty = new Overlay();
    this.dirtySince = null;
    this.flushing = layer;
    const tailBack: { offset: number; data: Buffer }[] = [];
    try {
      const live = committed
        .filter((e) => e.offset < size)
        .map((e) => (e.offset + e.length > size ? { ...e, length: size - e.offset } : e));
      const runs = mergeRanges([...live.map((e) => ({ start: e.offset, end: e.offset + e.length })), ...layer.ranges(0, size)]);
      const chunks: NewChunk[] = [];
      const removed: Extent[] = [...beyond];
      // The size this commit makes durable: the one the flushed layer covers. Writes that came in
      // while it was encoding are only in memory, and a tail kept back is not committed: a size
      // ahead of the chunk map would read back as zeros after a crash.
      let commitSize = size;
      for (const run of runs) {
        const dirtyRanges = layer.ranges(run.start, run.end);
        if (!dirtyRanges.length) continue;
        const r = await this.rechunkRun(run, dirtyRanges, live, layer);
        let commitEnd = r.end;
        if (keepTail && r.end === size && this.roomForTail(r.chunks[r.chunks.length - 1], layer)) {
          const tail = r.chunks.pop()!;
          commitEnd = tail.offset;
          tailBack.push({ offset: tail.offset, data: Buffer.from(Buffer.from(tail.sab, tail.rel, tail.length)) });
          commitSize = tail.offset;
        }
        chunks.push(...r.chunks);
        removed.push(...live.filter((e) => e.offset >= r.start && e.offset < commitEnd));
      }
      await this.d.store.ingest(
        chunks.map((c) => ({ sab: c.sab, start: c.rel, end: c.rel + c.length, encoding: c.encoding })),
        (ids, admit) => {
          const meta = this.d.meta;
          this.extentCache = null;
          for (const e of removed) {
            meta.deleteExtent(this.ino, e.offset);
            meta.unref(e.id);
          }
          chunks.forEach((c, i) => {
            admit(i);
            meta.putExtent(this.ino, { offset: c.offset, length: c.length, id: ids[i], forced: c.forced });
          });
          const inode = meta.getInode(this.ino);
          if (!inode) return; // deleted meanwhile: nothing refers to these extents (release cleans up)
          inode.size = commitSize;
          if (this.pendingTimes) {
            inode.mtimeNs = this.pendingTimes.mtimeNs;
            inode.ctimeNs = this.pendingTimes.ctimeNs;
          }
          meta.putInode(inode);
        },
      );
      this.pendingTimes = null;
      this.flushing = null;
      for (const t of tailBack) this.dirty.writeUnder(t.offset, t.data);
      // The tail kept back is as old as the layer it came from.
      if (tailBack.length && since !== null) this.dirtySince = Math.min(since, this.dirtySince ?? since);
      this.failure = null;
      this.failures = 0;
      this.account();
    } catch (e) {
      // Nothing was committed: the flushed layer goes back under the newer writes.
      this.flushing = null;
      for (const s of layer.slices(0, Number.MAX_SAFE_INTEGER)) this.dirty.writeUnder(s.offset, s.data);
      if (since !== null) this.dirtySince = Math.min(since, this.dirtySince ?? since);
      else if (!this.dirty.empty || this.pendingTimes) this.dirtySince ??= Date.now();
      this.failure = e as Error;
      this.retryAt = Date.now() + Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** this.failures++);
      this.account();
      this.room.budget.notify(); // writers waiting for room learn that this flush gave none
      throw e;
    }
  }

  /**
   * Whether the tail chunk may be kept back: bytes of it that were committed go back into the
   * buffer, so they take room in the budget now (or the tail is committed after all).
   */
  private roomForTail(tail: NewChunk | undefined, layer: Overlay): boolean {
    if (!tail) return false;
    let extra = tail.length;
    for (const r of layer.ranges(tail.offset, tail.offset + tail.length)) extra -= r.end - r.start;
    if (extra === 0) return true;
    if (!this.room.budget.fits(extra)) return false;
    this.room.budget.charge(extra);
    this.charged += extra;
    return true;
  }

  /** New chunks for the part of a run that the buffered ranges touch, and the span they replace. */
  private async rechunkRun(
    run: Range,
    dirtyRanges: Range[],
    live: Extent[],
    layer: Overlay,
  ): Promise<{ start: number; end: number; chunks: NewChunk[] }> {
    const d0 = dirtyRanges[0].start;
    const d1 = dirtyRanges[dirtyRanges.length - 1].end;
    // Start at the boundary before the first buffered byte. A content-defined end of the previous
    // chunk is kept; a forced one (data ended there) is cut again.
    let start = run.start;
    if (d0 > run.start) {
      const prev = live.find((e) => e.offset < d0 && e.offset + e.length >= d0);
      if (prev) start = prev.offset + prev.length === d0 && !prev.forced ? d0 : prev.offset;
      else start = d0;
    }
    const oldStarts = new Set(live.filter((e) => e.offset > start && e.offset < run.end).map((e) => e.offset));
    const chunks: NewChunk[] = [];
    // Encodings start one chunk behind the cutting: the last chunk of a run may yet be dropped
    // (a background flush keeps the tail of a file being written).
    let started = 0;
    const startEncodings = () => {
      for (; started < chunks.length - 1; started++) {
        const c = chunks[started];
        c.encoding = this.d.store.encode({ sab: c.sab, start: c.rel, end: c.rel + c.length });
      }
    };
    const maxSize = this.d.chunker.maxSize;
    let from = start;
    let to = Math.min(run.end, Math.max(from + maxSize, Math.min(d1, from + CUT_STEP)));
    for (;;) {
      const final = to >= run.end;
      const segments = await this.materialize(from, to, live, layer);
      // Data that ends within the minimum chunk size is one chunk: no need to ask a worker.
      const cuts = final && to - from <= this.d.chunker.minSize ? [to - from] : await this.d.pool.cut(segments, final);
      let prev = 0;
      for (const c of cuts) {
        const abs = from + c;
        chunks.push({ offset: from + prev, length: c - prev, ...sliceSegments(segments, prev, c), forced: final && abs === run.end });
        prev = c;
        if (abs >= d1 && oldStarts.has(abs)) return { start, end: abs, chunks };
      }
      if (final) return { start, end: run.end, chunks };
      startEncodings();
      from += prev;
      if (to < d1) {
        // Still in the buffered bytes: the next piece.
        to = Math.min(run.end, Math.max(from + maxSize, Math.min(d1, to + CUT_STEP)));
        continue;
      }
      // Not aligned yet: continue from the last decided cut, one old chunk further.
      const next = live.find((e) => e.offset + e.length > to);
      to = Math.min(run.end, Math.max(next ? next.offset + next.length : run.end, from + maxSize));
    }
  }

  /** Forgets buffered data (the inode is being destroyed). */
  discard(): void {
    this.extentCache = null;
    this.dirty = new Overlay();
    this.pendingTimes = null;
    this.dirtySince = null;
    this.failure = null;
    this.account();
  }
}

/**
 * Fills `out` (file bytes from `offset`): zeros over holes, then the blocks of `extents`
 * (`plains`, in the same order), then the buffer layers, newest last. Every byte is written:
 * `out` may be FUSE's reply buffer, holding an earlier reply.
 */
function assemble(out: Buffer, offset: number, extents: Extent[], plains: Buffer[], layers: { offset: number; data: Buffer }[][]): void {
  const end = offset + out.length;
  let covered = offset;
  extents.forEach((e, i) => {
    if (e.offset > covered) out.fill(0, covered - offset, Math.min(e.offset, end) - offset);
    covered = Math.max(covered, e.offset + e.length);
    const from = Math.max(offset, e.offset);
    const to = Math.min(end, e.offset + e.length);
    if (to <= from) return;
    if (plains[i].length < to - e.offset) throw fsError('EIO'); // never: a block is verified against its id
    plains[i].copy(out, from - offset, from - e.offset, to - e.offset);
  });
  if (covered < end) out.fill(0, covered - offset);
  for (const slices of layers) for (const s of slices) s.data.copy(out, s.offset - offset);
}
