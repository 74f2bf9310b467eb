/**
 * Codec worker: the CPU-heavy stages (chunk scanning, hashing, compression, encryption) run here,
 * never on the thread that answers FUSE. Inputs arrive in SharedArrayBuffers (no copy); outputs
 * are transferred back.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { StreamChunker } from '../chunk';
import { blockId, decodeBlock, encodeBlock } from './codec';
import { compressionFor } from './compression';
import type { CodecRequest, CodecSetup } from './pool';

const setup = workerData as CodecSetup;
const keys = { idKey: Buffer.from(setup.idKey), encKey: Buffer.from(setup.encKey) };
const compression = compressionFor(setup.compression);
const gear = new Uint32Array(setup.gear);

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
      return { result: { id: new Uint8Array(id), encoded: out }, transfer: [out.buffer] };
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
