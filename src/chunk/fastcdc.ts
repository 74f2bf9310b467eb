/**
 * FastCDC content-defined chunking: the TypeScript reference.
 *
 * Gear hash `fp = (fp << 1) + gear[byte]` over 32-bit words, normalised chunking (a harder
 * mask before the average size, an easier one after), hashing starts after `minSize` bytes and
 * the state is reset at every cut, so a cut depends only on the bytes since the previous cut.
 * That is what lets the write path re-chunk only the neighbourhood of a change: once a new cut
 * falls on an old boundary, every later cut is the same as before.
 *
 * The gear table is derived from the repository key, so chunk lengths reveal nothing about
 * known files. The native scanner (src/native) must give the same cut points on every input.
 */
import { hkdfSync } from 'node:crypto';

export interface ChunkerParams {
  minSize: number;
  avgSize: number;
  maxSize: number;
}

export const DEFAULT_CHUNKER: ChunkerParams = { minSize: 256 * 1024, avgSize: 1024 * 1024, maxSize: 4 * 1024 * 1024 };

export function validateChunkerParams(p: ChunkerParams): void {
  const ok = Number.isInteger(p.minSize) && Number.isInteger(p.avgSize) && Number.isInteger(p.maxSize) &&
    p.minSize >= 64 && p.minSize < p.avgSize && p.avgSize < p.maxSize && p.maxSize <= 64 * 1024 * 1024;
  if (!ok) throw new RangeError(`chunker sizes must satisfy 64 <= min < avg < max <= 64 MiB (got ${p.minSize}/${p.avgSize}/${p.maxSize})`);
}

/** 256 gear values from the repository's chunker key (HKDF-SHA256, so any key length works). */
export function deriveGearTable(chunkerKey: Uint8Array): Uint32Array {
  const bytes = Buffer.from(hkdfSync('sha256', chunkerKey, Buffer.alloc(0), 'isgfs fastcdc gear v1', 1024));
  const gear = new Uint32Array(256);
  for (let i = 0; i < 256; i++) gear[i] = bytes.readUInt32LE(i * 4);
  return gear;
}

/** Masks over the top bits of the 32-bit hash (the bits that depend on the most bytes). */
export function chunkMasks(avgSize: number): { maskS: number; maskL: number } {
  const bits = Math.round(Math.log2(avgSize));
  const top = (n: number) => (n >= 32 ? 0xffffffff : ((0xffffffff << (32 - n)) >>> 0));
  return { maskS: top(bits + 2), maskL: top(bits - 2) };
}

/**
 * Length of the chunk that starts at `start`, looking at no byte past `end`.
 * With `final` false, returns 0 when the data ends before a cut can be decided (more bytes are needed).
 */
export function nextCut(data: Uint8Array, start: number, end: number, p: ChunkerParams, gear: Uint32Array, final: boolean): number {
  const { maskS, maskL } = chunkMasks(p.avgSize);
  let n = end - start;
  if (n <= p.minSize) return final ? n : 0;
  if (n > p.maxSize) n = p.maxSize;
  const normal = Math.min(p.avgSize, n);
  let fp = 0;
  let i = start + p.minSize;
  for (const stop = start + normal; i < stop; i++) {
    fp = ((fp << 1) + gear[data[i]]) >>> 0;
    if ((fp & maskS) === 0) return i + 1 - start;
  }
  for (const stop = start + n; i < stop; i++) {
    fp = ((fp << 1) + gear[data[i]]) >>> 0;
    if ((fp & maskL) === 0) return i + 1 - start;
  }
  if (n === p.maxSize || final) return n;
  return 0;
}

/** Chunk ends (exclusive offsets) of a whole buffer; the last one is always data.length. */
export function cutPoints(data: Uint8Array, p: ChunkerParams, gear: Uint32Array): number[] {
  const cuts: number[] = [];
  let pos = 0;
  while (pos < data.length) {
    pos += nextCut(data, pos, data.length, p, gear, true);
    cuts.push(pos);
  }
  return cuts;
}

/** Streaming form: feed pieces of any size, get absolute cut offsets as soon as they are decided. */
export class StreamChunker {
  private pending: Buffer = Buffer.alloc(0);
  private base = 0; // absolute offset of pending[0]

  constructor(private readonly p: ChunkerParams, private readonly gear: Uint32Array) {}

  push(piece: Uint8Array): number[] {
    this.pending = this.pending.length ? Buffer.concat([this.pending, piece]) : Buffer.from(piece);
    return this.drain(false);
  }

  finish(): number[] {
    return this.drain(true);
  }

  private drain(final: boolean): number[] {
    const cuts: number[] = [];
    let pos = 0;
    while (pos < this.pending.length) {
      const len = nextCut(this.pending, pos, this.pending.length, this.p, this.gear, final);
      if (len === 0) break;
      pos += len;
      cuts.push(this.base + pos);
    }
    this.pending = this.pending.subarray(pos);
    this.base += pos;
    return cuts;
  }
}
