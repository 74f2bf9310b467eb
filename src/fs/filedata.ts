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
import { ChunkerParams } from '../chunk/fastcdc';
import { CodecPool } from '../block/pool';
import { Extent, Meta, nowNs } from '../meta/meta';
import { BlockStore } from '../store/blockstore';
import { Mutex } from '../store/rwlock';
import { Overlay, Range } from './overlay';

export interface DataDeps {
  meta: Meta;
  store: BlockStore;
  pool: CodecPool;
  chunker: ChunkerParams;
  /** Buffered bytes per file that start a background flush; writers wait at twice this. */
  dirtyCap: number;
  /** Bytes read ahead on sequential reads. */
  readahead: number;
}

interface NewChunk {
  offset: number;
  length: number;
  sab: SharedArrayBuffer;
  rel: number; // offset inside sab
  forced: boolean;
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
  private backgroundError: Error | null = null;
  private lastReadEnd = -1;

  constructor(private readonly d: DataDeps, readonly ino: number, size: number) {
    this.size = size;
  }

  get dirtyBytes(): number {
    return this.dirty.bytes;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.throwBackgroundError();
    this.dirty.write(offset, data);
    if (offset + data.length > this.size) this.size = offset + data.length;
    const t = nowNs();
    this.pendingTimes = { mtimeNs: t, ctimeNs: t };
    while (this.dirty.bytes >= 2 * this.d.dirtyCap) {
      this.startBackgroundFlush();
      await this.background;
      this.throwBackgroundError();
    }
    if (this.dirty.bytes >= this.d.dirtyCap) this.startBackgroundFlush();
  }

  private startBackgroundFlush(): void {
    if (this.background) return;
    this.background = this.lock.run(() => this.flushLocked(true))
      .catch((e: Error) => { this.backgroundError = e; })
      .finally(() => { this.background = null; });
  }

  private throwBackgroundError(): void {
    const e = this.backgroundError;
    if (e) {
      this.backgroundError = null;
      throw e;
    }
  }

  /** Turns every buffered byte into blocks and commits. */
  async flush(): Promise<void> {
    await this.lock.run(() => this.flushLocked(false));
    this.throwBackgroundError();
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
        const straddler = this.d.meta.extentsOf(this.ino, newSize, newSize + 1)
          .find((e) => e.offset < newSize && e.offset + e.length > newSize);
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
    this.throwBackgroundError();
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const size = this.size;
    if (offset >= size || length <= 0) return Buffer.alloc(0);
    const n = Math.min(length, size - offset);
    const out = Buffer.alloc(n);
    const end = offset + n;
    await this.d.store.guard(async () => {
      // Chunk map and buffer layers are taken in the same tick: one consistent view.
      const extents = this.d.meta.extentsOf(this.ino, offset, end);
      const layers = [this.flushing, this.dirty].filter((l): l is Overlay => l !== null).map((l) => l.slices(offset, end));
      await Promise.all(extents.map(async (e) => {
        const from = Math.max(offset, e.offset);
        const to = Math.min(end, e.offset + e.length, size);
        if (to <= from) return;
        const plain = await this.d.store.readPlain(e.id);
        plain.copy(out, from - offset, from - e.offset, to - e.offset);
      }));
      for (const slices of layers) for (const s of slices) s.data.copy(out, s.offset - offset);
    });
    if (offset === this.lastReadEnd) this.readAhead(end);
    this.lastReadEnd = end;
    return out;
  }

  private readAhead(from: number): void {
    const ids = this.d.meta.extentsOf(this.ino, from, from + this.d.readahead).map((e) => e.id);
    if (ids.length) this.d.store.prefetch(ids);
  }

  /** Bytes [from, to) of the view (committed chunks under `layer`) in a SharedArrayBuffer. */
  private async materialize(from: number, to: number, live: Extent[], layer: Overlay): Promise<SharedArrayBuffer> {
    const sab = new SharedArrayBuffer(to - from);
    const view = Buffer.from(sab);
    await this.d.store.guard(() => Promise.all(live.map(async (e) => {
      const s = Math.max(from, e.offset);
      const t = Math.min(to, e.offset + e.length);
      if (t <= s) return;
      const plain = await this.d.store.readPlain(e.id);
      plain.copy(view, s - from, s - e.offset, t - e.offset);
    })));
    layer.copyInto(view, from);
    return sab;
  }

  /**
   * The flush proper; runs under the file lock. With keepTail (a background flush of a file still
   * being written) the last chunk of a run that ends at end of file is not committed: its end is
   * only where the writer has got to, and the next flush would cut it again anyway.
   */
  private async flushLocked(keepTail: boolean): Promise<void> {
    const committed = this.d.meta.extentsOf(this.ino);
    const size = this.size;
    const beyond = committed.filter((e) => e.offset >= size);
    if (this.dirty.empty && !this.pendingTimes && !beyond.length) return;

    const layer = this.dirty;
    this.dirty = new Overlay();
    this.flushing = layer;
    const tailBack: { offset: number; data: Buffer }[] = [];
    try {
      const live = committed.filter((e) => e.offset < size)
        .map((e) => (e.offset + e.length > size ? { ...e, length: size - e.offset } : e));
      const runs = mergeRanges([...live.map((e) => ({ start: e.offset, end: e.offset + e.length })), ...layer.ranges(0, size)]);
      const chunks: NewChunk[] = [];
      const removed: Extent[] = [...beyond];
      for (const run of runs) {
        const dirtyRanges = layer.ranges(run.start, run.end);
        if (!dirtyRanges.length) continue;
        const r = await this.rechunkRun(run, dirtyRanges, live, layer);
        let commitEnd = r.end;
        if (keepTail && r.end === size && r.chunks.length) {
          const tail = r.chunks.pop()!;
          commitEnd = tail.offset;
          tailBack.push({ offset: tail.offset, data: Buffer.from(Buffer.from(tail.sab, tail.rel, tail.length)) });
        }
        chunks.push(...r.chunks);
        removed.push(...live.filter((e) => e.offset >= r.start && e.offset < commitEnd));
      }
      await this.d.store.ingest(chunks.map((c) => ({ sab: c.sab, start: c.rel, end: c.rel + c.length })), (ids, admit) => {
        const meta = this.d.meta;
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
        inode.size = this.size;
        if (this.pendingTimes) {
          inode.mtimeNs = this.pendingTimes.mtimeNs;
          inode.ctimeNs = this.pendingTimes.ctimeNs;
        }
        meta.putInode(inode);
      });
      this.pendingTimes = null;
      this.flushing = null;
      for (const t of tailBack) this.dirty.writeUnder(t.offset, t.data);
    } catch (e) {
      // Nothing was committed: the flushed layer goes back under the newer writes.
      this.flushing = null;
      for (const s of layer.slices(0, Number.MAX_SAFE_INTEGER)) this.dirty.writeUnder(s.offset, s.data);
      throw e;
    }
  }

  /** New chunks for the part of a run that the buffered ranges touch, and the span they replace. */
  private async rechunkRun(run: Range, dirtyRanges: Range[], live: Extent[], layer: Overlay):
    Promise<{ start: number; end: number; chunks: NewChunk[] }> {
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
    let from = start;
    let to = Math.min(run.end, Math.max(d1, from + this.d.chunker.maxSize));
    for (;;) {
      const final = to >= run.end;
      const sab = await this.materialize(from, to, live, layer);
      // Data that ends within the minimum chunk size is one chunk: no need to ask a worker.
      const cuts = final && to - from <= this.d.chunker.minSize ? [to - from] : await this.d.pool.cut(sab, to - from, final);
      let prev = 0;
      for (const c of cuts) {
        const abs = from + c;
        chunks.push({ offset: from + prev, length: c - prev, sab, rel: prev, forced: final && abs === run.end });
        prev = c;
        if (abs >= d1 && oldStarts.has(abs)) return { start, end: abs, chunks };
      }
      if (final) return { start, end: run.end, chunks };
      // Not aligned yet: continue from the last decided cut, one old chunk further.
      from += prev;
      const next = live.find((e) => e.offset + e.length > to);
      to = Math.min(run.end, Math.max(next ? next.offset + next.length : run.end, from + this.d.chunker.maxSize));
    }
  }

  /** Forgets buffered data (the inode is being destroyed). */
  discard(): void {
    this.dirty = new Overlay();
    this.pendingTimes = null;
  }
}
