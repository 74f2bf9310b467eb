/**
 * The chunker facade: FastCDC cut points from the native scanner when the addon is loaded,
 * else from the TypeScript reference (fastcdc.ts); both give the same cuts on every input.
 */
import type { ChunkerParams } from './fastcdc';
import { CdcStream, cdcCutPoints } from '../native';

export type { ChunkerParams } from './fastcdc';
export { DEFAULT_CHUNKER, deriveGearTable, validateChunkerParams } from './fastcdc';

/** Chunk ends (exclusive offsets) of a whole buffer; the last one is always data.length. */
export function cutPoints(data: Uint8Array, p: ChunkerParams, gear: Uint32Array): number[] {
  return cdcCutPoints(data, p, gear);
}

/** Streaming form: feed pieces of any size, get absolute cut offsets as soon as they are decided. */
export class StreamChunker extends CdcStream {}
