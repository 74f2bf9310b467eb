/**
 * Codec worker: the CPU-heavy stages (chunk scanning, hashing, compression, encryption) run here,
 * never on the thread that answers FUSE. Inputs arrive in SharedArrayBuffers (no copy); outputs
 * are transferred back.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { StreamChunker } from '../chunk';
import { blockId, decodeBlock, encodeBlock } from './codec';
import { compressionFor } from './compression';
import type { CodecRequest, CodecSetup } from './pool';

const setup = workerData as CodecSetup;
const keys = { idKey: Buffer.from(setup.idKey), encKey: Buffer.from(setup.encKey) };
const compression = compressionFor(setup.compression);
const gear = new Uint32Array(setup.gear);
const madeDirs = new Set<string>();

/** Writes a block file into the local tier unless it is there; synchronous I/O is fine off the main thread. */
function storeBlock(blocksDir: string, hex: string, encoded: Uint8Array): { wrote: boolean; madeDir?: string } {
  const dir = path.join(blocksDir, hex.slice(0, 2));
  const file = path.join(dir, hex);
  if (fs.existsSync(file)) return { wrote: false };
  let madeDir: string | undefined;
  if (!madeDirs.has(dir)) {
    if (!fs.existsSync(dir)) {
      fs.mkdirSync(dir, { recursive: true });
      madeDir = dir;
    }
    madeDirs.add(dir);
  }
  fs.writeFileSync(file, encoded);
  return { wrote: true, madeDir };
}

function handle(req: CodecRequest): { result: unknown; transfer: ArrayBuffer[] } {
  switch (req.op) {
    case 'cut': {
      const data = new Uint8Array(req.buf, 0, req.length);
      const chunker = new StreamChunker(setup.chunker, gear);
      const cuts = chunker.push(data);
      if (req.final) cuts.push(...chunker.finish());
      return { result: cuts, transfer: [] };
    }
    case 'encode': {
      const plain = new Uint8Array(req.buf, req.start, req.end - req.start);
      const id = blockId(keys, plain);
      const encoded = encodeBlock(keys, compression, id, plain);
      const out = new Uint8Array(encoded.length);
      out.set(encoded);
      const stored = req.blocksDir ? storeBlock(req.blocksDir, id.toString('hex'), out) : { wrote: false };
      return { result: { id: new Uint8Array(id), encoded: out, ...stored }, transfer: [out.buffer] };
    }
    case 'decode': {
      const plain = decodeBlock(keys, compression, Buffer.from(req.id), req.encoded);
      const out = new Uint8Array(plain.length);
      out.set(plain);
      return { result: out, transfer: [out.buffer] };
    }
  }
}

parentPort!.on('message', (msg: { seq: number; req: CodecRequest }) => {
  try {
    const { result, transfer } = handle(msg.req);
    parentPort!.postMessage({ seq: msg.seq, result }, transfer);
  } catch (e) {
    const err = e as Error & { code?: string };
    parentPort!.postMessage({ seq: msg.seq, error: { message: err.message, code: err.code, name: err.name } });
  }
});
