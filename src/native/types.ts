/** The interface every implementation (addon, portable fallback) provides; src/native/index.ts picks one per function. */
import type { ByteRange } from '../util/range';
import type { ChunkerParams } from './fastcdc';

export type { ByteRange } from '../util/range';

export interface RsOptions {
  /** Pieces a large job is split into, run in parallel (addon only; default: the cores, at most 4). */
  threads?: number;
  /**
   * Buffers to write the computed shards into, instead of new ones (fresh memory costs page
   * faults that can halve the speed): m parity buffers for rsEncode, one per missing shard in
   * ascending shard order for rsReconstruct; each at least the shard (or range) length. The
   * results are views of them.
   */
  into?: Buffer[];
}

export interface CdcStreamLike {
  push(piece: Uint8Array): number[];
  finish(): number[];
}

export interface ErasureImpl {
  rsEncode(k: number, m: number, data: Buffer[], opts?: RsOptions): Promise<Buffer[]>;
  rsReconstruct(k: number, m: number, shards: (Buffer | null)[], range?: ByteRange, opts?: RsOptions): Promise<Buffer[]>;
  shardChecksum(data: Uint8Array): Buffer;
  /** shardChecksum of each `segment`-byte piece of data (the last may be shorter), concatenated. */
  segmentChecksums(data: Uint8Array, segment: number): Promise<Buffer>;
}

export interface ChunkImpl {
  cdcCutPoints(data: Uint8Array, p: ChunkerParams, gear: Uint32Array): number[];
  newCdcStream(p: ChunkerParams, gear: Uint32Array): CdcStreamLike;
}

export interface HashImpl {
  blake3(data: Uint8Array): Buffer;
  blake3Keyed(key: Uint8Array, data: Uint8Array): Buffer;
}

/** AES-256-GCM with a 12-byte nonce and a 16-byte tag, into memory the caller gives. */
export interface AeadImpl {
  /** The ciphertext of `plain`, then the tag, into `out` (at least plain.length + 16 bytes). */
  aesGcmSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plain: Uint8Array, out: Uint8Array): void;
  /** True when `cipher` and `tag` are authentic; the plaintext is then in `out` (at least cipher.length bytes). */
  aesGcmOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, cipher: Uint8Array, tag: Uint8Array, out: Uint8Array): boolean;
}
