/**
 * Loader and typed wrapper of the N-API addon (native/, built by node-gyp into build/Release).
 * Arguments are checked here with the fallback's messages; large Reed-Solomon jobs are split
 * into pieces that run in parallel on the libuv pool.
 */
import { availableParallelism } from 'node:os';
import * as path from 'node:path';
import { ChunkerParams, checkGear, chunkMasks, validateChunkerParams } from './fastcdc';
import { checkEncode, checksumEach, outputBuffers, reconstructWith } from './checks';
import type { AeadImpl, ByteRange, CdcStreamLike, ChunkImpl, ErasureImpl, RsOptions } from './types';

type ChunkerArgs = [number, number, number, number, number, Uint32Array];

/** Bytes of a file for BlockDecoder.decodeFile (the same shape as FilePart in src/block/pool.ts). */
export type BlockFilePart =
  | { file: string; offset?: number; length?: number }
  | { rebuild: { k: number; m: number; shard: number; sources: { shard: number; file: string; offset: number }[] }; length: number };

/** A block decoder of the addon (native/blockfile_glue.cc): its jobs run on the libuv pool. */
/** Attributes of a file made anew (writeFileAttrs, BlockDecoder.writeFiles): times only when mtimeNs is given. */
export interface FileAttrs {
  size: number;
  mode: number;
  uid?: number;
  gid?: number;
  xattrs?: { name: string; value: Uint8Array }[];
  atimeNs?: bigint;
  mtimeNs?: bigint;
}

/** A file for BlockDecoder.writeFiles: its extents' blocks, where their encoded bytes lie. */
export interface RestoredFileSpec extends FileAttrs {
  path: string;
  extents: { id: Uint8Array; parts: BlockFilePart[]; offset: number; length: number }[];
}

export interface BlockDecoder {
  /**
   * The plaintext of block `id` from parts that hold its encoded bytes one after the other: a part
   * without offset and length is its whole file; a `rebuild` part is a shard rebuilt from k others.
   * Rejects with Node's fs errors, or an error with code 'EIO' and `corrupt: true`.
   */
  decodeFile(id: Uint8Array, parts: BlockFilePart[]): Promise<Buffer>;
  /** The same from encoded bytes in memory (only read). */
  decode(id: Uint8Array, encoded: Uint8Array): Promise<Buffer>;
  /**
   * Files made anew, many in one trip to the libuv pool: each one's blocks decoded from their
   * parts, then written with its attributes as writeFileAttrs does. One outcome per file: null,
   * or its error (Node's fs errors, or code 'EIO' and `corrupt: true`).
   */
  writeFiles(files: RestoredFileSpec[]): Promise<(Error | null)[]>;
  /** decodeFile of each block, many in one trip to the libuv pool: its plaintext or its error. */
  decodeFiles(blocks: { id: Uint8Array; parts: BlockFilePart[] }[]): Promise<(Buffer | Error)[]>;
}

/** Test and benchmark hooks of the addon (binding.testing), apart from what isgfs calls. */
export interface BindingTesting {
  /** The generator matrix, (k + m) x k row-major (native/rs.cc). */
  rsMatrix(k: number, m: number): Buffer;
  /** ISA-L's own gf_gen_cauchy1_matrix, to show the documented matrix is the same. */
  isalCauchy1(k: number, m: number): Buffer;
  /** Seconds for `iters` calls of ec_encode_data on `len`-byte shards, timed in C (the benchmark's baseline). */
  isalEncodeBench(k: number, m: number, len: number, iters: number): number;
}

/** Every export of the addon (native/addon.cc and native/*_glue.cc). */
export interface Binding {
  /** Outputs (shards outIdx) from k sources (shards srcIdx) over [srcOff, srcOff + len) into [dstOff, dstOff + len), on the libuv pool. */
  rsApply(
    k: number,
    m: number,
    srcIdx: number[],
    srcs: Uint8Array[],
    outIdx: number[],
    outs: Uint8Array[],
    srcOff: number,
    dstOff: number,
    len: number,
  ): Promise<void>;
  /** CRC-64/XZ, 8 bytes little-endian. */
  crc64(data: Uint8Array): Buffer;
  /** crc64 of each `segment`-byte piece of data into out (8 bytes each), on the libuv pool. */
  crc64Segments(data: Uint8Array, segment: number, out: Uint8Array): Promise<void>;
  cdcCutPoints(data: Uint8Array, ...p: ChunkerArgs): Float64Array;
  CdcStream: new (...p: ChunkerArgs) => { push(piece: Uint8Array): Float64Array; finish(): Float64Array };
  /** Reads the file's bytes from offset into out (open, pread until full or end of file, close); the count read. */
  preadFile(file: string, offset: number, out: Uint8Array): Promise<number>;
  /** Present when this Node exports its OpenSSL (native/aead.cc). */
  aesGcmSeal?: AeadImpl['aesGcmSeal'];
  aesGcmOpen?: AeadImpl['aesGcmOpen'];
  /** Present with aesGcmSeal and aesGcmOpen: blocks are sealed with AES-256-GCM. */
  BlockDecoder?: new (idKey: Uint8Array, encKey: Uint8Array, compression: 'zstd' | 'none') => BlockDecoder;
  /** flock(fd, LOCK_EX or LOCK_SH | LOCK_NB): true when locked, false when held elsewhere (native/lock_glue.cc). */
  tryFlock(fd: number, exclusive: boolean): boolean;
  /** flock(fd, LOCK_UN). */
  funlock(fd: number): void;
  /** lsetxattr(2): sets an extended attribute, never following a symlink (native/xattr_glue.cc). */
  lsetxattr(file: string, name: string, value: Uint8Array): void;
  /** utimensat(2) with AT_SYMLINK_NOFOLLOW, times in nanoseconds since the epoch (native/xattr_glue.cc). */
  lutimesNs(file: string, atimeNs: bigint, mtimeNs: bigint): void;
  /**
   * A file made anew (O_TRUNC, never following a symlink) in one trip to the libuv pool: `writes`
   * at their offsets, truncated to `size`, fchown (with uid), fchmod, fsetxattr, futimens (with
   * mtimeNs) and close; errors as Node's fs errors (native/writefile_glue.cc).
   */
  writeFileAttrs(file: string, writes: { data: Uint8Array; offset: number }[], attrs: FileAttrs): Promise<void>;
  testing: BindingTesting;
}

const ADDON = 'isgfs_native.node';

/** The addon from build/Release of the package (src/native under ts-jest, dist/src/native when built). */
export function loadBinding(): { binding: Binding | null; error?: string } {
  const errors: string[] = [];
  for (const up of ['../..', '../../..']) {
    const file = path.resolve(__dirname, up, 'build', 'Release', ADDON);
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      return { binding: require(file) as Binding };
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code !== 'MODULE_NOT_FOUND') errors.push(`${file}: ${err.message}`);
    }
  }
  return { binding: null, error: errors.length ? errors.join('; ') : `${ADDON} not built (run npm run setup)` };
}

const MIN_PIECE = 128 * 1024;
const SYNC_CHECKSUM_BYTES = 128 * 1024;
const DEFAULT_THREADS = Math.max(1, Math.min(4, availableParallelism()));

/** [offset, length] pieces of [0, len): at most `threads`, each at least MIN_PIECE, cut on 64-byte boundaries. */
function pieces(len: number, threads = DEFAULT_THREADS): [number, number][] {
  const n = Math.max(1, Math.min(Math.floor(threads), Math.floor(len / MIN_PIECE)));
  const out: [number, number][] = [];
  let at = 0;
  for (let i = 1; i <= n; i++) {
    const end = i === n ? len : Math.ceil((len * i) / n / 64) * 64;
    if (end > at) out.push([at, end - at]);
    at = end;
  }
  return out.length ? out : [[0, 0]];
}

function chunkerArgs(p: ChunkerParams, gear: Uint32Array): ChunkerArgs {
  validateChunkerParams(p);
  checkGear(gear);
  const { maskS, maskL } = chunkMasks(p.avgSize);
  return [p.minSize, p.avgSize, p.maxSize, maskS, maskL, gear];
}

export function addonErasure(b: Binding): ErasureImpl {
  return {
    async rsEncode(k: number, m: number, data: Buffer[], opts?: RsOptions): Promise<Buffer[]> {
      const len = checkEncode(k, m, data);
      const parity = outputBuffers(m, len, opts?.into, 'rsEncode');
      if (m === 0) return parity; // k+0 (no redundancy) is a valid setup: nothing to compute
      const src = [...Array(k).keys()];
      const out = Array.from({ length: m }, (_, i) => k + i);
      await Promise.all(pieces(len, opts?.threads).map(([o, l]) => b.rsApply(k, m, src, data, out, parity, o, o, l)));
      return parity;
    },
    rsReconstruct(k: number, m: number, shards: (Buffer | null)[], range?: ByteRange, opts?: RsOptions): Promise<Buffer[]> {
      return reconstructWith(k, m, shards, range, opts?.into, async (plan, outs) => {
        const srcs = plan.sources.map((i) => shards[i] as Buffer);
        await Promise.all(
          pieces(plan.length, opts?.threads).map(([o, l]) =>
            b.rsApply(k, m, plan.sources, srcs, plan.missing, outs, plan.offset + o, o, l),
          ),
        );
      });
    },
    shardChecksum: (data: Uint8Array) => b.crc64(data),
    async segmentChecksums(data: Uint8Array, segment: number): Promise<Buffer> {
      // A few segments cost less than the trip to the libuv pool and back.
      if (data.length <= SYNC_CHECKSUM_BYTES) return checksumEach(b.crc64, data, segment);
      const out = Buffer.allocUnsafe(8 * Math.ceil(data.length / segment));
      await b.crc64Segments(data, segment, out);
      return out;
    },
  };
}

export function addonChunk(b: Binding): ChunkImpl {
  return {
    cdcCutPoints: (data, p, gear) => Array.from(b.cdcCutPoints(data, ...chunkerArgs(p, gear))),
    newCdcStream(p: ChunkerParams, gear: Uint32Array): CdcStreamLike {
      const s = new b.CdcStream(...chunkerArgs(p, gear));
      return { push: (piece) => Array.from(s.push(piece)), finish: () => Array.from(s.finish()) };
    },
  };
}

/** The addon's AES-256-GCM, when this Node exports the OpenSSL it carries. */
export function addonAead(b: Binding): AeadImpl | null {
  const { aesGcmSeal, aesGcmOpen } = b;
  return aesGcmSeal && aesGcmOpen ? { aesGcmSeal, aesGcmOpen } : null;
}
