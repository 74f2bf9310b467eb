/** BLAKE3 through @napi-rs/blake-hash (Rust, SIMD): the fast path of blake3 / blake3Keyed. */
import type { HashImpl } from './types';

interface BlakeModule {
  blake3(input: Uint8Array): Buffer;
  Blake3Hasher: { newKeyed(key: Buffer): KeyedHasher };
}

interface KeyedHasher {
  reset(): void;
  update(input: Uint8Array): KeyedHasher;
  digestBuffer(): Buffer;
}

/** Keyed hashers for the last few keys, reset before each use: creating one costs as much as hashing 4 KiB. */
const MAX_KEYS = 8;

export function loadNapiBlake(): { impl: HashImpl | null; error?: string } {
  let mod: BlakeModule;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    mod = require('@napi-rs/blake-hash') as BlakeModule;
  } catch (e) {
    return { impl: null, error: `@napi-rs/blake-hash: ${(e as Error).message.split('\n')[0]}` };
  }
  const hashers: { key: Buffer; hasher: KeyedHasher }[] = [];
  const keyed = (key: Uint8Array): KeyedHasher => {
    for (const e of hashers) {
      if (e.key.equals(key)) {
        e.hasher.reset();
        return e.hasher;
      }
    }
    const e = { key: Buffer.from(key), hasher: mod.Blake3Hasher.newKeyed(Buffer.from(key)) };
    if (hashers.length >= MAX_KEYS) hashers.pop();
    hashers.unshift(e);
    return e.hasher;
  };
  return {
    impl: {
      blake3: (data) => mod.blake3(data),
      blake3Keyed(key, data) {
        if (key.length !== 32) throw new RangeError(`blake3Keyed needs a 32-byte key (got ${key.length})`);
        return keyed(key).update(data).digestBuffer();
      },
    },
  };
}
