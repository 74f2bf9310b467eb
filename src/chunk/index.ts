/**
 * The chunker facade: FastCDC parameters, the gear table derived from the repository key, and
 * cut points from the native scanner when the addon is loaded, else from the TypeScript
 * reference (src/native/fastcdc.ts); both give the same cuts on every input.
 *
 * The gear table is derived from the repository key, so chunk lengths reveal nothing about
 * known files.
 */
import { hkdfSync } from 'node:crypto';
import { cdcCutPoints, newCdcStream } from '../native';
import type { CdcStreamLike, ChunkerParams } from '../native';

export type { ChunkerParams } from '../native';
export { validateChunkerParams } from '../native';

export const DEFAULT_CHUNKER: ChunkerParams = { minSize: 256 * 1024, avgSize: 1024 * 1024, maxSize: 4 * 1024 * 1024 };

/** 256 gear values from the repository's chunker key (HKDF-SHA256, so any key length works). */
export function deriveGearTable(chunkerKey: Uint8Array): Uint32Array {
  const bytes = Buffer.from(hkdfSync('sha256', chunkerKey, Buffer.alloc(0), 'isgfs fastcdc gear v1', 1024));
  const gear = new Uint32Array(256);
  for (let i = 0; i < 256; i++) gear[i] = bytes.readUInt32LE(i * 4);
  return gear;
}

/** Chunk ends (exclusive offsets) of a whole buffer; the last one is always data.length. */
export function cutPoints(data: Uint8Array, p: ChunkerParams, gear: Uint32Array): number[] {
  return cdcCutPoints(data, p, gear);
}

/** Streaming form: feed pieces of any size, get absolute cut offsets as soon as they are decided. */
export class StreamChunker {
  private readonly s: CdcStreamLike;
  constructor(p: ChunkerParams, gear: Uint32Array) {
    this.s = newCdcStream(p, gear);
  }
  /** Absolute end offsets of the chunks decided so far. */
  push(piece: Uint8Array): number[] {
    return this.s.push(piece);
  }
  /** End of the stream: the end of the last chunk, if any bytes are pending. */
  finish(): number[] {
    return this.s.finish();
  }
}
