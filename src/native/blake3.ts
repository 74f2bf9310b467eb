/**
 * BLAKE3 (32-byte output, hash and keyed_hash modes) in TypeScript, written from the BLAKE3
 * specification. It is the portable fallback of @napi-rs/blake-hash: @noble/hashes v2 is
 * ESM-only, which jest's module loader cannot require on Node 20, and the fallback must run
 * under jest. Checked against the official test vectors in test/native.
 */
const IV = Uint32Array.of(0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19);
const CHUNK_START = 1;
const CHUNK_END = 2;
const PARENT = 4;
const ROOT = 8;
const KEYED_HASH = 16;
const BLOCK = 64;
const CHUNK = 1024;

// Message word order of each of the 7 rounds: round 0 is the identity, each next round applies the permutation.
const PERM = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
const SCHEDULE = new Uint8Array(7 * 16);
for (let i = 0; i < 16; i++) SCHEDULE[i] = i;
for (let r = 1; r < 7; r++) for (let i = 0; i < 16; i++) SCHEDULE[r * 16 + i] = SCHEDULE[(r - 1) * 16 + PERM[i]];

/** The compression function, truncated to the 8-word chaining value, written into `out`. Locals, not an array: several times faster. */
function compress(cv: Uint32Array, m: Uint32Array, counter: number, blockLen: number, flags: number, out: Uint32Array): void {
  const S = SCHEDULE;
  let v0 = cv[0] | 0,
    v1 = cv[1] | 0,
    v2 = cv[2] | 0,
    v3 = cv[3] | 0,
    v4 = cv[4] | 0,
    v5 = cv[5] | 0,
    v6 = cv[6] | 0,
    v7 = cv[7] | 0;
  let v8 = IV[0] | 0,
    v9 = IV[1] | 0,
    v10 = IV[2] | 0,
    v11 = IV[3] | 0;
  let v12 = counter | 0,
    v13 = Math.floor(counter / 0x100000000) | 0,
    v14 = blockLen | 0,
    v15 = flags | 0;
  for (let s = 0; s < 7 * 16; s += 16) {
    v0 = (v0 + v4 + m[S[s + 0]]) | 0;
    v12 ^= v0;
    v12 = (v12 >>> 16) | (v12 << 16);
    v8 = (v8 + v12) | 0;
    v4 ^= v8;
    v4 = (v4 >>> 12) | (v4 << 20);
    v0 = (v0 + v4 + m[S[s + 1]]) | 0;
    v12 ^= v0;
    v12 = (v12 >>> 8) | (v12 << 24);
    v8 = (v8 + v12) | 0;
    v4 ^= v8;
    v4 = (v4 >>> 7) | (v4 << 25);
    v1 = (v1 + v5 + m[S[s + 2]]) | 0;
    v13 ^= v1;
    v13 = (v13 >>> 16) | (v13 << 16);
    v9 = (v9 + v13) | 0;
    v5 ^= v9;
    v5 = (v5 >>> 12) | (v5 << 20);
    v1 = (v1 + v5 + m[S[s + 3]]) | 0;
    v13 ^= v1;
    v13 = (v13 >>> 8) | (v13 << 24);
    v9 = (v9 + v13) | 0;
    v5 ^= v9;
    v5 = (v5 >>> 7) | (v5 << 25);
    v2 = (v2 + v6 + m[S[s + 4]]) | 0;
    v14 ^= v2;
    v14 = (v14 >>> 16) | (v14 << 16);
    v10 = (v10 + v14) | 0;
    v6 ^= v10;
    v6 = (v6 >>> 12) | (v6 << 20);
    v2 = (v2 + v6 + m[S[s + 5]]) | 0;
    v14 ^= v2;
    v14 = (v14 >>> 8) | (v14 << 24);
    v10 = (v10 + v14) | 0;
    v6 ^= v10;
    v6 = (v6 >>> 7) | (v6 << 25);
    v3 = (v3 + v7 + m[S[s + 6]]) | 0;
    v15 ^= v3;
    v15 = (v15 >>> 16) | (v15 << 16);
    v11 = (v11 + v15) | 0;
    v7 ^= v11;
    v7 = (v7 >>> 12) | (v7 << 20);
    v3 = (v3 + v7 + m[S[s + 7]]) | 0;
    v15 ^= v3;
    v15 = (v15 >>> 8) | (v15 << 24);
    v11 = (v11 + v15) | 0;
    v7 ^= v11;
    v7 = (v7 >>> 7) | (v7 << 25);
    v0 = (v0 + v5 + m[S[s + 8]]) | 0;
    v15 ^= v0;
    v15 = (v15 >>> 16) | (v15 << 16);
    v10 = (v10 + v15) | 0;
    v5 ^= v10;
    v5 = (v5 >>> 12) | (v5 << 20);
    v0 = (v0 + v5 + m[S[s + 9]]) | 0;
    v15 ^= v0;
    v15 = (v15 >>> 8) | (v15 << 24);
    v10 = (v10 + v15) | 0;
    v5 ^= v10;
    v5 = (v5 >>> 7) | (v5 << 25);
    v1 = (v1 + v6 + m[S[s + 10]]) | 0;
    v12 ^= v1;
    v12 = (v12 >>> 16) | (v12 << 16);
    v11 = (v11 + v12) | 0;
    v6 ^= v11;
    v6 = (v6 >>> 12) | (v6 << 20);
    v1 = (v1 + v6 + m[S[s + 11]]) | 0;
    v12 ^= v1;
    v12 = (v12 >>> 8) | (v12 << 24);
    v11 = (v11 + v12) | 0;
    v6 ^= v11;
    v6 = (v6 >>> 7) | (v6 << 25);
    v2 = (v2 + v7 + m[S[s + 12]]) | 0;
    v13 ^= v2;
    v13 = (v13 >>> 16) | (v13 << 16);
    v8 = (v8 + v13) | 0;
    v7 ^= v8;
    v7 = (v7 >>> 12) | (v7 << 20);
    v2 = (v2 + v7 + m[S[s + 13]]) | 0;
    v13 ^= v2;
    v13 = (v13 >>> 8) | (v13 << 24);
    v8 = (v8 + v13) | 0;
    v7 ^= v8;
    v7 = (v7 >>> 7) | (v7 << 25);
    v3 = (v3 + v4 + m[S[s + 14]]) | 0;
    v14 ^= v3;
    v14 = (v14 >>> 16) | (v14 << 16);
    v9 = (v9 + v14) | 0;
    v4 ^= v9;
    v4 = (v4 >>> 12) | (v4 << 20);
    v3 = (v3 + v4 + m[S[s + 15]]) | 0;
    v14 ^= v3;
    v14 = (v14 >>> 8) | (v14 << 24);
    v9 = (v9 + v14) | 0;
    v4 ^= v9;
    v4 = (v4 >>> 7) | (v4 << 25);
  }
  out[0] = v0 ^ v8;
  out[1] = v1 ^ v9;
  out[2] = v2 ^ v10;
  out[3] = v3 ^ v11;
  out[4] = v4 ^ v12;
  out[5] = v5 ^ v13;
  out[6] = v6 ^ v14;
  out[7] = v7 ^ v15;
}

const block = new Uint32Array(16);

/** Loads up to 64 bytes at `at` into `block`, zero padded. */
function loadBlock(data: Uint8Array, at: number, len: number): void {
  if (len === BLOCK) {
    for (let w = 0, p = at; w < 16; w++, p += 4) block[w] = data[p] | (data[p + 1] << 8) | (data[p + 2] << 16) | (data[p + 3] << 24);
    return;
  }
  block.fill(0);
  for (let i = 0; i < len; i++) block[i >> 2] |= data[at + i] << (8 * (i & 3));
}

/** Chaining value (or, with ROOT in `rootFlag`, the root output) of one chunk. */
function chunkCv(
  key: Uint32Array,
  flags: number,
  data: Uint8Array,
  at: number,
  len: number,
  counter: number,
  rootFlag: number,
): Uint32Array {
  const cv = Uint32Array.from(key);
  const blocks = Math.max(1, Math.ceil(len / BLOCK));
  for (let b = 0; b < blocks; b++) {
    const blen = Math.min(BLOCK, len - b * BLOCK);
    loadBlock(data, at + b * BLOCK, blen);
    const last = b === blocks - 1;
    const f = flags | (b === 0 ? CHUNK_START : 0) | (last ? CHUNK_END | rootFlag : 0);
    compress(cv, block, counter, blen, f, cv);
  }
  return cv;
}

function parentCv(key: Uint32Array, flags: number, left: Uint32Array, right: Uint32Array, rootFlag: number): Uint32Array {
  block.set(left, 0);
  block.set(right, 8);
  const out = new Uint32Array(8);
  compress(key, block, 0, BLOCK, flags | PARENT | rootFlag, out);
  return out;
}

function hashWith(key: Uint32Array, flags: number, data: Uint8Array): Buffer {
  const chunks = Math.max(1, Math.ceil(data.length / CHUNK));
  const stack: Uint32Array[] = [];
  for (let c = 0; c < chunks - 1; c++) {
    let cv = chunkCv(key, flags, data, c * CHUNK, CHUNK, c, 0);
    // Merge completed subtrees: as many as there are trailing zero bits in the chunk count.
    for (let total = c + 1; total % 2 === 0; total /= 2) cv = parentCv(key, flags, stack.pop() as Uint32Array, cv, 0);
    stack.push(cv);
  }
  const at = (chunks - 1) * CHUNK;
  let out: Uint32Array;
  if (stack.length === 0) {
    out = chunkCv(key, flags, data, at, data.length - at, chunks - 1, ROOT);
  } else {
    out = chunkCv(key, flags, data, at, data.length - at, chunks - 1, 0);
    while (stack.length > 1) out = parentCv(key, flags, stack.pop() as Uint32Array, out, 0);
    out = parentCv(key, flags, stack.pop() as Uint32Array, out, ROOT);
  }
  const digest = Buffer.allocUnsafe(32);
  for (let i = 0; i < 8; i++) digest.writeUInt32LE(out[i], 4 * i);
  return digest;
}

export function blake3(data: Uint8Array): Buffer {
  return hashWith(IV, 0, data);
}

export function blake3Keyed(key: Uint8Array, data: Uint8Array): Buffer {
  if (key.length !== 32) throw new RangeError(`blake3Keyed needs a 32-byte key (got ${key.length})`);
  const k = new Uint32Array(8);
  for (let i = 0; i < 8; i++) k[i] = key[4 * i] | (key[4 * i + 1] << 8) | (key[4 * i + 2] << 16) | (key[4 * i + 3] << 24);
  return hashWith(k, KEYED_HASH, data);
}
