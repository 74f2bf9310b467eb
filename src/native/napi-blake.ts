/** BLAKE3 through @napi-rs/blake-hash (Rust, SIMD): the fast path of blake3 / blake3Keyed. */
import type { HashImpl } from './types';

interface BlakeModule {
  blake3(input: Uint8Array): Buffer;
  Blake3Hasher: { newKeyed(key: Buffer): { update(input: Uint8Array): { digestBuffer(): Buffer } } };
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

export function loadNapiBlake(): { impl: HashImpl | null; error?: string } {
  let mod: BlakeModule;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    mod = require('@napi-rs/blake-hash') as BlakeModule;
  } catch (e) {
    return { impl: null, error: `@napi-rs/blake-hash: ${(e as Error).message.split('\n')[0]}` };
  }
  return {
    impl: {
      blake3: (data) => mod.blake3(data),
      blake3Keyed(key, data) {
        if (key.length !== 32) throw new RangeError(`blake3Keyed needs a 32-byte key (got ${key.length})`);
        return mod.Blake3Hasher.newKeyed(asBuffer(key)).update(data).digestBuffer();
      },
    },
  };
}
