/**
 * FastCDC content-defined chunking: the TypeScript reference, and the portable fallback of the
 * addon's scanner (native/cdc.h), which must give the same cut points on every input.
 *
 * Gear hash `fp = (fp << 1) + gear[byte]` over 32-bit words, normalised chunking (a harder
 * mask before the average size, an easier one after), hashing starts after `minSize` bytes and
 * the state is reset at every cut, so a cut depends only on the bytes since the previous cut.
 * That is what lets the write path re-chunk only the neighbourhood of a change: once a new cut
 * falls on an old boundary, every later cut is the same as before.
 *
 * The gear table (derived from the repository key in src/chunk) is an argument here.
 */
export interface ChunkerParams {
  minSize: number;
  avgSize: number;
  maxSize: number;
}

export function validateChunkerParams(p: ChunkerParams): void {
  const ok =
    Number.isInteger(p.minSize) &&
    Number.isInteger(p.avgSize) &&
    Number.isInteger(p.maxSize) &&
    p.minSize >= 64 &&
    p.minSize < p.avgSize &&
    p.avgSize < p.maxSize &&
    p.maxSize <= 64 * 1024 * 1024;
  if (!ok) throw new RangeError(`chunker sizes must satisfy 64 <= min < avg < max <= 64 MiB (got ${p.minSize}/${p.avgSize}/${p.maxSize})`);
}

export function checkGear(gear: Uint32Array): void {
  if (!(gear instanceof Uint32Array) || gear.length !== 256) throw new TypeError('gear must be a Uint32Array of 256 entries');
}

/** Masks over the top bits of the 32-bit hash (the bits that depend on the most bytes). */
export function chunkMasks(avgSize: number): { maskS: number; maskL: number } {
  const bits = Math.round(Math.log2(avgSize));
  const top = (n: number) => (n >= 32 ? 0xffffffff : (0xffffffff << (32 - n)) >>> 0);
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

/**
 * Streaming form of the reference (the fallback of the addon's CdcStream): feed pieces of any
 * size, get absolute cut offsets as soon as they are decided. It keeps only the hash state and
 * the length of the current chunk, so each byte is scanned once and no bytes are held between pieces.
 */
export class TsCdcStream {
  private readonly min: number;
  private readonly avg: number;
  private readonly max: number;
  private readonly maskS: number;
  private readonly maskL: number;
  private readonly gear: Uint32Array;
  private base = 0; // absolute offset of the next piece
  private pos = 0; // bytes of the current chunk seen so far
  private fp = 0;

  constructor(p: ChunkerParams, gear: Uint32Array) {
    validateChunkerParams(p);
    checkGear(gear);
    ({ minSize: this.min, avgSize: this.avg, maxSize: this.max } = p);
    ({ maskS: this.maskS, maskL: this.maskL } = chunkMasks(p.avgSize));
    this.gear = Uint32Array.from(gear);
  }

  push(piece: Uint8Array): number[] {
    const cuts: number[] = [];
    const gear = this.gear;
    const len = piece.length;
    let i = 0;
    while (i < len) {
      const avail = len - i;
      if (this.pos < this.min) {
        const skip = Math.min(this.min - this.pos, avail);
        this.pos += skip;
        i += skip;
        continue;
      }
      const small = this.pos < this.avg;
      const mask = small ? this.maskS : this.maskL;
      const stop = i + Math.min((small ? this.avg : this.max) - this.pos, avail);
      let fp = this.fp;
      let j = i;
      let hit = false;
      while (j < stop) {
        fp = ((fp << 1) + gear[piece[j++]]) >>> 0;
        if ((fp & mask) === 0) {
          hit = true;
          break;
        }
      }
      this.pos += j - i;
      i = j;
      if (hit || this.pos === this.max) {
        cuts.push(this.base + i);
        this.pos = 0;
        fp = 0;
      }
      this.fp = fp;
    }
    this.base += len;
    return cuts;
  }

  finish(): number[] {
    const cuts = this.pos > 0 ? [this.base] : [];
    this.pos = 0;
    this.fp = 0;
    return cuts;
  }
}
