/**
 * The write buffer of one file: written byte ranges not yet turned into blocks, kept as sorted,
 * non-overlapping pieces. Piece memory is shared (SharedArrayBuffer), so a flush hands buffered
 * bytes to the codec workers without copying them.
 *
 * Sequential writes append into the last piece while it has room; a full piece is followed by a
 * new one twice its size (up to 16 MiB) instead of being grown by copying, so a 1 GiB copy costs
 * one copy of each byte and a few dozen pieces.
 */

interface Piece {
  offset: number;
  buf: Buffer; // a view of shared memory; its length is the capacity, bytes [0, len) are data
  len: number;
}

const FIRST_PIECE = 256 * 1024;
const MAX_PIECE = 16 * 1024 * 1024;

function sharedBuffer(bytes: number): Buffer {
  return Buffer.from(new SharedArrayBuffer(bytes));
}

export interface Range {
  start: number;
  end: number;
}

export class Overlay {
  private pieces: Piece[] = [];
  private total = 0;

  get bytes(): number {
    return this.total;
  }

  get empty(): boolean {
    return this.pieces.length === 0;
  }

  /** First piece whose end is after pos. */
  private firstAfter(pos: number): number {
    let lo = 0;
    let hi = this.pieces.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const p = this.pieces[mid];
      if (p.offset + p.len <= pos) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Copies data in at offset, replacing what was there. */
  write(offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    const end = offset + data.length;
    // Fast path: appending right after the last piece.
    const last = this.pieces[this.pieces.length - 1];
    if (last && last.offset + last.len === offset) {
      if (last.len + data.length <= last.buf.length) {
        last.buf.set(data, last.len);
        last.len += data.length;
        this.total += data.length;
        return;
      }
      const buf = sharedBuffer(Math.max(data.length, Math.min(MAX_PIECE, 2 * last.buf.length)));
      buf.set(data, 0);
      this.pieces.push({ offset, buf, len: data.length });
      this.total += data.length;
      return;
    }
    this.cut(offset, end);
    const i = this.firstAfter(offset);
    // Room to grow only for a new tail piece, the start of a sequential run.
    const buf = sharedBuffer(i === this.pieces.length ? Math.max(data.length, FIRST_PIECE) : data.length);
    buf.set(data, 0);
    this.pieces.splice(i, 0, { offset, buf, len: data.length });
    this.total += data.length;
  }

  /** Copies data in only where nothing is buffered yet (newer writes win). */
  writeUnder(offset: number, data: Uint8Array): void {
    let pos = offset;
    const end = offset + data.length;
    for (const r of this.ranges(offset, end)) {
      if (r.start > pos) this.write(pos, data.subarray(pos - offset, r.start - offset));
      pos = Math.max(pos, r.end);
    }
    if (pos < end) this.write(pos, data.subarray(pos - offset));
  }

  /** Forgets bytes in [start, end). */
  cut(start: number, end: number): void {
    let i = this.firstAfter(start);
    while (i < this.pieces.length && this.pieces[i].offset < end) {
      const p = this.pieces[i];
      const pEnd = p.offset + p.len;
      if (p.offset < start && pEnd > end) {
        // Split in two over the same memory; the left half loses its spare room, which the
        // right half now holds.
        const right = p.buf.subarray(end - p.offset, p.len);
        this.pieces.splice(i + 1, 0, { offset: end, buf: right, len: right.length });
        p.len = start - p.offset;
        p.buf = p.buf.subarray(0, p.len);
        this.total -= end - start;
        return;
      }
      if (p.offset < start) {
        this.total -= pEnd - start;
        p.len = start - p.offset;
        i++;
      } else if (pEnd > end) {
        const keep = pEnd - end;
        p.buf = p.buf.subarray(end - p.offset);
        this.total -= p.len - keep;
        p.len = keep;
        p.offset = end;
        i++;
      } else {
        this.total -= p.len;
        this.pieces.splice(i, 1);
      }
    }
  }

  truncate(size: number): void {
    this.cut(size, Number.MAX_SAFE_INTEGER);
  }

  /** Buffered slices inside [start, end), in order. The slices share memory with the buffer. */
  slices(start: number, end: number): { offset: number; data: Buffer }[] {
    const out: { offset: number; data: Buffer }[] = [];
    for (let i = this.firstAfter(start); i < this.pieces.length && this.pieces[i].offset < end; i++) {
      const p = this.pieces[i];
      const s = Math.max(start, p.offset);
      const e = Math.min(end, p.offset + p.len);
      out.push({ offset: s, data: p.buf.subarray(s - p.offset, e - p.offset) });
    }
    return out;
  }

  /** Buffered ranges, adjacent pieces merged. */
  ranges(start = 0, end = Number.MAX_SAFE_INTEGER): Range[] {
    const out: Range[] = [];
    for (const s of this.slices(start, end)) {
      const last = out[out.length - 1];
      if (last && last.end === s.offset) last.end = s.offset + s.data.length;
      else out.push({ start: s.offset, end: s.offset + s.data.length });
    }
    return out;
  }
}
