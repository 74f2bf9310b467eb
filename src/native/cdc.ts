/**
 * FastCDC streaming scanner in TypeScript, the fallback of the addon's CdcStream. Same cuts as
 * StreamChunker in src/chunk/fastcdc.ts, but it keeps only the hash state and the length of the
 * current chunk, so each byte is scanned once and no bytes are held between pieces.
 */
import { ChunkerParams, chunkMasks, validateChunkerParams } from '../chunk/fastcdc';

export function checkGear(gear: Uint32Array): void {
  if (!(gear instanceof Uint32Array) || gear.length !== 256) throw new TypeError('gear must be a Uint32Array of 256 entries');
}

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
