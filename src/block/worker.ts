/**
 * Codec worker: the CPU-heavy stages (chunk scanning, hashing, compression, encryption) run here,
 * never on the thread that answers FUSE. Inputs arrive in SharedArrayBuffers (no copy); outputs
 * are transferred back.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import * as path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { StreamChunker } from '../chunk';
import { preadFile } from '../native';
import { BlockCorruptError, blockId, decodeBlock, encodeBlock } from './codec';
import { compressionFor } from './compression';
import { blockFile, blockTmpDir } from './layout';
import { layoutBatch } from './treelayout';
import type { CodecRequest, CodecSetup } from './pool';
import { toWire } from '../errors';

/**
 * Codec workers run 5 nice levels below the thread that answers FUSE (on Linux a thread's
 * priority is its own): on two cores the bulk work of read-ahead and encoding then waits for
 * the CPU rather than the request someone is waiting on. Measured, cold read of 1 GiB from
 * local backends with the shards in the page cache: 2.2-2.3 s against 2.25-2.6 s.
 */
const NICER_BY = 5;
try {
  setPriority(Math.min(19, getPriority() + NICER_BY));
} catch {
  /* not allowed here: same priority, same results */
}

const setup = workerData as CodecSetup;
const keys = { idKey: Buffer.from(setup.idKey), encKey: Buffer.from(setup.encKey) };
const compression = compressionFor(setup.compression);
const gear = new Uint32Array(setup.gear);

/**
 * Writes a block file into the local tier unless it is there. Asynchronous, so that the worker
 * encodes the next block while the file system creates this one (creating a file costs about as
 * much as encrypting a MiB here). Durability comes from the batched sync of the next fsync or
 * sync timer (fdatasync per large block as it went was measured slower: 6.4 s against 5.3 s for
 * a 1 GiB `dd conv=fsync`).
 *
 * The file is written under a temporary name and renamed into place, so a block file is whole or
 * absent. One that exists counts only with the right length: every encoding of a block has the
 * same length (compression is deterministic, the nonce has a fixed size), and a file of another
 * length (a power loss between rename and writeback, or an older isgfs killed mid-write) is
 * replaced.
 */
async function storeBlock(blocksDir: string, hex: string, encoded: Uint8Array): Promise<{ wrote: boolean; madeDir?: string }> {
  const file = blockFile(blocksDir, hex);
  try {
    if ((await fs.promises.stat(file)).size === encoded.length) return { wrote: false };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const tmpDir = blockTmpDir(blocksDir);
  const tmp = path.join(tmpDir, `${hex}.${randomBytes(6).toString('hex')}`);
  try {
    await fs.promises.writeFile(tmp, encoded, { flag: 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    await fs.promises.mkdir(tmpDir, { recursive: true });
    await fs.promises.writeFile(tmp, encoded, { flag: 'wx' });
  }
  let madeDir: string | undefined;
  for (;;) {
    try {
      await fs.promises.rename(tmp, file);
      return { wrote: true, madeDir };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || madeDir) {
        await fs.promises.rm(tmp, { force: true });
        throw e;
      }
      madeDir = path.dirname(file);
      await fs.promises.mkdir(madeDir, { recursive: true });
    }
  }
}

/** Writes a fetched block into the local tier after the reader has its plaintext; reports how it went. */
function keep(blocksDir: string, id: Uint8Array, encoded: Uint8Array): void {
  const hex = Buffer.from(id).toString('hex');
  storeBlock(blocksDir, hex, encoded).then(
    (r) => parentPort!.postMessage({ seq: 0, kept: { id, length: encoded.length, ...r } }),
    (e: Error) => parentPort!.postMessage({ seq: 0, kept: { id, length: encoded.length, wrote: false, error: e.message } }),
  );
}

async function handle(req: CodecRequest): Promise<{ result: unknown; transfer: ArrayBuffer[] }> {
  switch (req.op) {
    case 'cut': {
      const chunker = new StreamChunker(setup.chunker, gear);
      const cuts: number[] = [];
      for (const s of req.segments) cuts.push(...chunker.push(new Uint8Array(s.sab, s.rel, s.length)));
      if (req.final) cuts.push(...chunker.finish());
      return { result: cuts, transfer: [] };
    }
    case 'encode': {
      const plain = new Uint8Array(req.buf, req.start, req.end - req.start);
      const id = blockId(keys, plain);
      const encoded = encodeBlock(keys, compression, id, plain, req.kind);
      const stored = req.blocksDir ? await storeBlock(req.blocksDir, id.toString('hex'), encoded) : { wrote: false };
      // The bytes go back only when the caller may still need them (it did not get a file).
      if (stored.wrote) return { result: { id: new Uint8Array(id), length: encoded.length, ...stored }, transfer: [] };
      const out = transferable(encoded);
      return { result: { id: new Uint8Array(id), length: encoded.length, encoded: out, ...stored }, transfer: [out.buffer as ArrayBuffer] };
    }
    case 'id': {
      const id = blockId(keys, req.data);
      return { result: new Uint8Array(id), transfer: [] };
    }
    case 'decode': {
      const plain = transferable(decodeBlock(keys, compression, Buffer.from(req.id), req.encoded, req.kind));
      if (req.keepIn) keep(req.keepIn, req.id, req.encoded);
      return { result: plain, transfer: [plain.buffer as ArrayBuffer] };
    }
    case 'tree':
      return { result: layoutBatch(req.batch, req.splitKey, (p) => blockId(keys, p)), transfer: [] };
    case 'decodeFile': {
      const pieces = await Promise.all(
        req.parts.map((p) => {
          if ('rebuild' in p) throw new Error('rebuilding a piece of a block needs the native addon');
          return p.length === undefined ? fs.promises.readFile(p.file) : preadFile(p.file, p.offset ?? 0, p.length);
        }),
      );
      // A part that ends early is damage, as in the addon (native/blockfile.cc).
      if (req.parts.some((p, i) => p.length !== undefined && pieces[i].length !== p.length)) {
        throw new BlockCorruptError(Buffer.from(req.id).toString('hex'), 'truncated');
      }
      const encoded = pieces.length === 1 ? pieces[0] : Buffer.concat(pieces);
      const plain = transferable(decodeBlock(keys, compression, Buffer.from(req.id), encoded));
      return { result: plain, transfer: [plain.buffer as ArrayBuffer] };
    }
  }
}

/** bytes itself when it owns its whole ArrayBuffer (large buffers do), else a copy that does. */
function transferable(bytes: Uint8Array): Uint8Array {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer) return bytes;
  const out = new Uint8Array(bytes.length);
  out.set(bytes);
  return out;
}

parentPort!.on('message', (msg: { seq: number; req: CodecRequest }) => {
  handle(msg.req).then(
    ({ result, transfer }) => parentPort!.postMessage({ seq: msg.seq, result }, transfer),
    (e: unknown) => parentPort!.postMessage({ seq: msg.seq, error: toWire(e) }),
  );
});
