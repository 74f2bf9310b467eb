/**
 * src/native: erasure coding, shard checksums, chunk scanning, hashing and AES-256-GCM, each from
 * the native addon (ISA-L; Node's own OpenSSL) or @napi-rs/blake-hash when they load, else from
 * the portable implementation (TypeScript; node:crypto), which gives byte-identical results. ISGFS_NO_NATIVE=1 forces the fallback.
 * One log line per process says what runs on the fallback.
 */
import { isMainThread } from 'node:worker_threads';
import { log } from '../log';
import { addonAead, addonChunk, addonErasure, Binding, loadBinding } from './addon';
import { fallbackAead, fallbackChunk, fallbackErasure, fallbackHash, fallbackPread } from './fallback';
import type { ChunkerParams } from './fastcdc';
import { loadNapiBlake } from './napi-blake';
import type { AeadImpl, ByteRange, CdcStreamLike, ChunkImpl, ErasureImpl, HashImpl, RsOptions } from './types';

export type { ByteRange, CdcStreamLike, RsOptions } from './types';
export type { ChunkerParams } from './fastcdc';
export { validateChunkerParams } from './fastcdc';

export const forcedFallback = ['1', 'true', 'yes'].includes((process.env.ISGFS_NO_NATIVE ?? '').toLowerCase());

const loaded = forcedFallback ? { binding: null, error: 'ISGFS_NO_NATIVE is set' } : loadBinding();
const blake = forcedFallback ? { impl: null, error: 'ISGFS_NO_NATIVE is set' } : loadNapiBlake();

/** The raw addon, when loaded (tests and the benchmark use its extra functions). */
export const binding: Binding | null = loaded.binding;
/** True when the addon runs erasure coding, checksums and chunk scanning. */
export const nativeLoaded: boolean = binding !== null;
/** True when BLAKE3 runs in @napi-rs/blake-hash. */
export const nativeBlake3: boolean = blake.impl !== null;

const erasure: ErasureImpl = binding ? addonErasure(binding) : fallbackErasure;
const chunk: ChunkImpl = binding ? addonChunk(binding) : fallbackChunk;
const hash: HashImpl = blake.impl ?? fallbackHash;
const nativeAeadImpl = binding && addonAead(binding);
const aead: AeadImpl = nativeAeadImpl ?? fallbackAead;
/** True when AES-256-GCM runs in the addon (into given memory) rather than through node:crypto. */
export const nativeAead: boolean = nativeAeadImpl !== null;

if (isMainThread && (!nativeLoaded || !nativeBlake3 || !nativeAead)) {
  const parts = [
    !nativeLoaded && `erasure coding, checksums and chunking (${loaded.error})`,
    !nativeBlake3 && `BLAKE3 (${blake.error})`,
    !nativeAead && `AES-256-GCM (node:crypto${nativeLoaded ? ': this Node does not export its OpenSSL' : ''})`,
  ].filter(Boolean);
  log.warn(`native: portable fallback for ${parts.join('; ')}`);
}

export function blake3(data: Uint8Array): Buffer {
  return hash.blake3(data);
}

export function blake3Keyed(key: Uint8Array, data: Uint8Array): Buffer {
  return hash.blake3Keyed(key, data);
}

/** Chunk ends of a whole buffer, the same as cutPoints() of the reference (fastcdc.ts). */
export function cdcCutPoints(data: Uint8Array, p: ChunkerParams, gear: Uint32Array): number[] {
  return chunk.cdcCutPoints(data, p, gear);
}

/**
 * Streaming chunk scanner, the same cuts as cdcCutPoints over the whole stream; keeps no bytes
 * between pieces. push() gives the absolute end offsets of the chunks decided so far; finish(),
 * the end of the last chunk, if any bytes are pending.
 */
export function newCdcStream(p: ChunkerParams, gear: Uint32Array): CdcStreamLike {
  return chunk.newCdcStream(p, gear);
}

/** The m parity shards of k equal-length data shards. */
export function rsEncode(k: number, m: number, data: Buffer[], opts?: RsOptions): Promise<Buffer[]> {
  return erasure.rsEncode(k, m, data, opts);
}

/**
 * All k + m shards (or bytes [offset, offset + length) of each) from k + m entries with at most
 * m of them null; present ones are returned as given (sliced to the range), missing ones rebuilt.
 */
export function rsReconstruct(k: number, m: number, shards: (Buffer | null)[], range?: ByteRange, opts?: RsOptions): Promise<Buffer[]> {
  return erasure.rsReconstruct(k, m, shards, range, opts);
}

/** CRC-64/XZ of a shard or segment, 8 bytes little-endian (docs/formats.md). */
export function shardChecksum(data: Uint8Array): Buffer {
  return erasure.shardChecksum(data);
}

/** shardChecksum of each `segment`-byte piece of data, concatenated; large inputs off this thread. */
export function segmentChecksums(data: Uint8Array, segment: number): Promise<Buffer> {
  return erasure.segmentChecksums(data, segment);
}

/** AES-256-GCM: the ciphertext of `plain`, then the 16-byte tag, into `out`. */
export function aesGcmSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plain: Uint8Array, out: Uint8Array): void {
  aead.aesGcmSeal(key, nonce, aad, plain, out);
}

/** AES-256-GCM: true when authentic, the plaintext then in `out`. */
export function aesGcmOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  cipher: Uint8Array,
  tag: Uint8Array,
  out: Uint8Array,
): boolean {
  return aead.aesGcmOpen(key, nonce, aad, cipher, tag, out);
}

/**
 * Bytes [offset, offset + length) of a file, fewer at its end: one trip to the libuv pool with
 * the addon, else fs.promises (open, read, close). Errors are Node's fs errors (code ENOENT, ...).
 */
export async function preadFile(file: string, offset: number, length: number): Promise<Buffer> {
  const out = Buffer.allocUnsafe(length);
  const got = await (binding ? binding.preadFile(file, offset, out) : fallbackPread(file, offset, out));
  return got === length ? out : out.subarray(0, got);
}

/** flock(2) on a descriptor, without waiting (native/lock_glue.cc). */
export interface FileLock {
  /** true when this open file description now holds the lock; false when another holds a conflicting one. */
  tryLock(fd: number, exclusive: boolean): boolean;
  unlock(fd: number): void;
}

/**
 * flock(2) from the addon; null without it (Node has none, and no portable stand-in gives the
 * same guarantee: callers fall back to something weaker and say so).
 */
export const fileLock: FileLock | null = binding
  ? { tryLock: (fd, exclusive) => binding.tryFlock(fd, exclusive), unlock: (fd) => binding.funlock(fd) }
  : null;
