/**
 * A small pool of codec workers (one per core). Each request goes to the least busy worker.
 *
 * A worker that dies (out of memory, a bug, terminated) is replaced at once. The requests it held
 * are sent once more to a worker when their input was not handed over (chunk scans and encodes read
 * shared memory); the others, and a request that a worker dies on twice, fail with an IsgError of
 * kind 'unavailable' (EIO at the FUSE edge). A request unanswered for `requestTimeoutMs` ends its
 * worker the same way: no caller waits forever on a worker.
 */
import { availableParallelism } from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { ChunkerParams } from '../chunk';
import { binding, forcedFallback } from '../native';
import type { RestoredFileSpec } from '../native/addon';
import { BlockCorruptError, checkKind, ObjectKind } from './codec';
import { CompressionSpec } from './compression';
import { fromWire, IsgError, WireError } from '../errors';
import type { TreeBatch, TreeBatchResult } from './treelayout';

export interface CodecSetup {
  idKey: Uint8Array;
  encKey: Uint8Array;
  gear: Uint32Array;
  chunker: ChunkerParams;
  compression: CompressionSpec;
}

export type CodecRequest =
  | { op: 'cut'; segments: { sab: SharedArrayBuffer; rel: number; length: number }[]; final: boolean }
  | { op: 'encode'; buf: SharedArrayBuffer; start: number; end: number; blocksDir?: string; kind?: ObjectKind }
  | { op: 'decode'; id: Uint8Array; encoded: Uint8Array; keepIn?: string; kind?: ObjectKind }
  | { op: 'decodeFile'; id: Uint8Array; parts: FilePart[] }
  | { op: 'id'; data: Uint8Array }
  | { op: 'tree'; batch: TreeBatch; splitKey: Uint8Array };

/**
 * Bytes of a file: [offset, offset + length), or the whole file when they are absent. Or (the
 * addon only) bytes of a shard rebuilt from the same range of k other shards of a k + m code.
 */
export type FilePart =
  | { file: string; offset?: number; length?: number }
  | { rebuild: { k: number; m: number; shard: number; sources: { shard: number; file: string; offset: number }[] }; length: number };

export interface EncodedBlock {
  id: Buffer;
  /** Encoded size in bytes. */
  length: number;
  /** The encoded bytes, unless the worker wrote them to the block file itself. */
  encoded?: Buffer;
  wrote: boolean;
  madeDir?: string;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  /** A decode whose block the worker keeps after answering: its hex id. */
  keeps?: string;
  req: CodecRequest;
  /** Sent again after its worker died (or not to be: memory handed over, or it timed out). */
  retried: boolean;
  sent: number;
}

const DEFAULT_REQUEST_TIMEOUT_MS = 120_000;

interface Slot {
  worker: Worker;
  busy: number;
  pending: Map<number, Pending>;
  /** Blocks the worker answered for and is still keeping (hex ids). */
  keeping: Set<string>;
}

/** ts-jest runs sources; a worker needs JavaScript, so it always comes from the build. */
function workerScript(): string {
  if (__filename.endsWith('.js')) return path.join(__dirname, 'worker.js');
  return path.resolve(__dirname, '../../dist/src/block/worker.js');
}

/** A block file written by a worker after it answered (see `decode`'s keepIn). */
export interface KeptBlock {
  id: Buffer;
  length: number;
  wrote: boolean;
  madeDir?: string;
  error?: string;
}

/** The addon's block decoder (native/blockfile.cc). */
interface NativeBlockDecoder {
  decodeFile(id: Uint8Array, parts: FilePart[]): Promise<Buffer>;
  decode(id: Uint8Array, encoded: Uint8Array): Promise<Buffer>;
  writeFiles(files: RestoredFileSpec[]): Promise<(Error | null)[]>;
  decodeFiles(blocks: { id: Uint8Array; parts: FilePart[] }[]): Promise<(Buffer | Error)[]>;
}

export class CodecPool {
  /** Told of every block file written after the answer (see `decode`'s keepIn), or not written. */
  onKept?: (k: KeptBlock) => void;
  /** Workers that died and were replaced. */
  workerDeaths = 0;
  private readonly slots: Slot[] = [];
  private seq = 0;
  private closed = false;
  private readonly requestTimeoutMs: number;
  private readonly watchdog: NodeJS.Timeout;
  /** Workers the watchdog has ended (terminate() once each). */
  private readonly ending = new WeakSet<Worker>();
  /** Decodes blocks on the libuv pool, when the addon has AES-GCM; else the workers do. */
  private readonly decoder: NativeBlockDecoder | null;

  /** Whether decode and decodeFile run in the addon (else in the workers). */
  get nativeDecode(): boolean {
    return this.decoder !== null;
  }

  /**
   * `workers`: how many (one per core by default). `nativeDecode: false` has decode and decodeFile
   * use the workers even when the addon could (tests compare the two). `requestTimeoutMs`: how long
   * a request may go unanswered before its worker is ended (2 minutes by default).
   */
  constructor(setup: CodecSetup, o: { workers?: number; nativeDecode?: boolean; requestTimeoutMs?: number } = {}) {
    const Decoder = forcedFallback || o.nativeDecode === false ? undefined : binding?.BlockDecoder;
    this.decoder = Decoder ? new Decoder(setup.idKey, setup.encKey, setup.compression.name) : null;
    this.requestTimeoutMs = o.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    for (let i = 0; i < Math.max(1, o.workers ?? availableParallelism()); i++) {
      this.slots.push(this.start(setup));
    }
    this.watchdog = setInterval(() => this.endStuckWorkers(), Math.min(10_000, this.requestTimeoutMs)).unref();
  }

  /** A new worker (in `into`, else a new slot); when it dies, what it held is retried or failed and it is replaced. */
  private start(setup: CodecSetup, into?: Slot): Slot {
    const worker = new Worker(workerScript(), { workerData: setup });
    const slot: Slot = into ?? { worker, busy: 0, pending: new Map(), keeping: new Set() };
    slot.worker = worker;
    worker.on('message', (msg: { seq: number; result?: unknown; error?: WireError; kept?: KeptBlock }) => {
      if (msg.kept) {
        const id = Buffer.from(msg.kept.id);
        slot.keeping.delete(id.toString('hex'));
        this.onKept?.({ ...msg.kept, id });
        return;
      }
      const p = slot.pending.get(msg.seq);
      if (!p) return;
      slot.pending.delete(msg.seq);
      if (--slot.busy === 0) worker.unref();
      if (msg.error) {
        p.reject(fromWire(msg.error)); // a BlockCorruptError stays one
      } else {
        if (p.keeps) slot.keeping.add(p.keeps);
        p.resolve(msg.result);
      }
    });
    let ended = false;
    const died = (why: string): void => {
      if (ended) return;
      ended = true;
      if (this.closed) return this.failAll(slot, new Error('codec pool is closed'));
      this.workerDeaths++;
      const held = [...slot.pending.values()];
      slot.pending.clear();
      this.failAll(slot, new IsgError('unavailable', `codec worker died: ${why}`)); // its keeps
      this.start(setup, slot);
      for (const p of held) {
        if (p.retried) p.reject(new IsgError('unavailable', `codec worker died: ${why}`));
        else this.send({ ...p, retried: true });
      }
    };
    worker.on('error', (e: Error) => died(e.message));
    worker.on('exit', (code) => died(`exited with ${code}`));
    worker.unref();
    return slot;
  }

  /** Ends a worker that has held a request for longer than requestTimeoutMs (its requests then fail). */
  private endStuckWorkers(): void {
    const now = Date.now();
    for (const slot of this.slots) {
      const stuck = [...slot.pending.values()].filter((p) => now - p.sent > this.requestTimeoutMs);
      if (!stuck.length) continue;
      for (const p of stuck) p.retried = true; // what hung once would hang again
      if (this.ending.has(slot.worker)) continue;
      this.ending.add(slot.worker);
      void slot.worker.terminate();
    }
  }

  /** Tests: ends worker i, as a crash would (its requests are retried or fail, a new one replaces it). */
  terminateWorker(i: number): Promise<number> {
    return this.slots[i].worker.terminate();
  }

  private failAll(slot: Slot, e: Error): void {
    for (const p of slot.pending.values()) p.reject(e);
    slot.pending.clear();
    slot.busy = 0;
    // Every keep gets its report, so that whoever counts them is not left waiting.
    for (const hex of slot.keeping) this.onKept?.({ id: Buffer.from(hex, 'hex'), length: 0, wrote: false, error: e.message });
    slot.keeping.clear();
  }

  private run<T>(req: CodecRequest, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.closed) return Promise.reject(new Error('codec pool is closed'));
    const keeps = req.op === 'decode' && req.keepIn ? Buffer.from(req.id).toString('hex') : undefined;
    return new Promise<T>((resolve, reject) => {
      // Memory handed over is gone with a worker that dies: such a request is not sent again.
      this.send({ resolve: resolve as (v: unknown) => void, reject, keeps, req, retried: transfer.length > 0, sent: 0 }, transfer);
    });
  }

  private send(p: Pending, transfer: ArrayBuffer[] = []): void {
    let slot = this.slots[0];
    for (const s of this.slots) if (s.busy < slot.busy) slot = s;
    const seq = ++this.seq;
    // An idle worker must not keep the process alive; a busy one must (a CLI awaiting it).
    if (slot.busy++ === 0) slot.worker.ref();
    slot.pending.set(seq, { ...p, sent: Date.now() });
    slot.worker.postMessage({ seq, req: p.req }, transfer);
  }

  /** Cut points of the concatenated segments (decided cuts only unless final). */
  cut(segments: { sab: SharedArrayBuffer; rel: number; length: number }[], final: boolean): Promise<number[]> {
    return this.run<number[]>({ op: 'cut', segments, final });
  }

  /**
   * Tree objects of a batch of directories and the ids of its raw objects (./treelayout.ts), in a
   * worker: the keyed hashing of a publish runs off this thread. Input is shared memory, so a
   * request whose worker dies is sent once more.
   */
  tree(batch: TreeBatch, splitKey: Uint8Array): Promise<TreeBatchResult> {
    return this.run<TreeBatchResult>({ op: 'tree', batch, splitKey });
  }

  /**
   * Id and encoding of buf[start, end). With blocksDir, the worker also writes the block file
   * there unless it exists (`wrote`; `madeDir` when it had to create the directory). `kind`: the
   * object kind its header names (data by default).
   */
  async encode(buf: SharedArrayBuffer, start: number, end: number, blocksDir?: string, kind?: ObjectKind): Promise<EncodedBlock> {
    const r = await this.run<{ id: Uint8Array; length: number; encoded?: Uint8Array; wrote: boolean; madeDir?: string }>({
      op: 'encode',
      buf,
      start,
      end,
      blocksDir,
      kind,
    });
    return {
      id: Buffer.from(r.id.buffer, r.id.byteOffset, r.id.length),
      length: r.length,
      encoded: r.encoded && Buffer.from(r.encoded.buffer, r.encoded.byteOffset, r.encoded.length),
      wrote: r.wrote,
      madeDir: r.madeDir,
    };
  }

  /**
   * The block id plaintext `data` would have (its keyed hash), computed by a worker, which takes
   * the memory under `data` over (the caller gives it up) unless it is a slab of Node's pool.
   */
  async idOf(data: Buffer): Promise<Buffer> {
    const mem = data.buffer;
    const handOver = !(mem instanceof SharedArrayBuffer) && mem.byteLength > Buffer.poolSize;
    const r = await this.run<Uint8Array>({ op: 'id', data }, handOver ? [mem as ArrayBuffer] : []);
    return Buffer.from(r.buffer, r.byteOffset, r.length);
  }

  /**
   * Plaintext of an encoded block (verified): in the addon on the libuv pool (which only reads
   * `encoded`), else by a worker, which takes the memory under `encoded` over instead of copying
   * it (unless it is a slab of Node's small-buffer pool): the caller gives it up, or says it is
   * `shared` (others read it too; a worker then gets a copy). With keepIn, always a worker, which
   * then also writes the block file there (after answering) and reports it through onKept. With
   * `kind`, a block of another kind is refused (BlockCorruptError); without, any kind decodes.
   */
  async decode(id: Buffer, encoded: Buffer, o: { keepIn?: string; shared?: boolean; kind?: ObjectKind } = {}): Promise<Buffer> {
    checkKind(id, encoded, o.kind); // the header is authenticated by the decode that follows
    const decoder = this.decoder;
    const keepIn = o.keepIn;
    if (decoder && !keepIn) return this.native(id, () => decoder.decode(id, encoded));
    if (o.shared) encoded = Buffer.from(encoded);
    const mem = encoded.buffer;
    const handOver = !(mem instanceof SharedArrayBuffer) && mem.byteLength > Buffer.poolSize;
    const r = await this.run<Uint8Array>({ op: 'decode', id, encoded, keepIn, kind: o.kind }, handOver ? [mem as ArrayBuffer] : []);
    return Buffer.from(r.buffer, r.byteOffset, r.length);
  }

  /**
   * Plaintext of block `id` stored encoded in files, the parts one after the other: a block file
   * of the local tier, or a block's bytes in the data shard(s) on local backends. Read and decoded
   * in one job of the addon on the libuv pool, else by a worker; nothing passes through this
   * thread but the plaintext. Rejects with a file's fs error (ENOENT, ...) or a BlockCorruptError.
   * Any object kind decodes (the header never reaches this thread): the id binds the plaintext, so
   * an object of another kind can only stand for identical bytes. Typed objects are read with
   * `decode` and a kind.
   */
  async decodeFile(id: Buffer, parts: FilePart[]): Promise<Buffer> {
    if (!this.decoder) {
      const r = await this.run<Uint8Array>({ op: 'decodeFile', id, parts });
      return Buffer.from(r.buffer, r.byteOffset, r.length);
    }
    const decoder = this.decoder;
    return this.native(id, () => decoder.decodeFile(id, parts));
  }

  /** Whether writeFiles can be used (the addon decodes blocks). */
  get canWriteFiles(): boolean {
    return this.decoder !== null;
  }

  /**
   * Files made anew from their blocks' parts, many in one trip to the libuv pool (the addon's
   * BlockDecoder.writeFiles): one outcome per file, null or its error; a caller reads the blocks
   * of a failed one the usual way (a damaged block read again with every shard range checked).
   */
  writeFiles(files: RestoredFileSpec[]): Promise<(Error | null)[]> {
    if (this.closed) return Promise.reject(new Error('codec pool is closed'));
    if (!this.decoder) return Promise.reject(new Error('writeFiles needs the native addon'));
    return this.decoder.writeFiles(files);
  }

  /**
   * decodeFile of many blocks in one trip to the libuv pool (the addon only): each its plaintext
   * or its error (not wrapped as BlockCorruptError: a caller reads a failed one the usual way).
   */
  decodeFiles(blocks: { id: Uint8Array; parts: FilePart[] }[]): Promise<(Buffer | Error)[]> {
    if (this.closed) return Promise.reject(new Error('codec pool is closed'));
    if (!this.decoder) return Promise.reject(new Error('decodeFiles needs the native addon'));
    return this.decoder.decodeFiles(blocks);
  }

  /**
   * A decode of the addon's, its damage reported as a BlockCorruptError (the addon marks damage
   * `corrupt`; its other errors are fs errors with their codes, and pass as they are).
   */
  private async native(id: Buffer, decode: () => Promise<Buffer>): Promise<Buffer> {
    if (this.closed) throw new Error('codec pool is closed');
    try {
      return await decode();
    } catch (e) {
      if ((e as { corrupt?: boolean }).corrupt) throw new BlockCorruptError(id.toString('hex'), (e as Error).message);
      throw e;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.watchdog);
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
