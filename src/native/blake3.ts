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

const v = new Uint32Array(16);

function g(a: number, b: number, c: number, d: number, x: number, y: number): void {
  v[a] = v[a] + v[b] + x;
  let t = v[d] ^ v[a];
  v[d] = (t >>> 16) | (t << 16);
  v[c] = v[c] + v[d];
  t = v[b] ^ v[c];
  v[b] = (t >>> 12) | (t << 20);
  v[a] = v[a] + v[b] + y;
  t = v[d] ^ v[a];
  v[d] = (t >>> 8) | (t << 24);
  v[c] = v[c] + v[d];
  t = v[b] ^ v[c];
  v[b] = (t >>> 7) | (t << 25);
}

/** The compression function, truncated to the 8-word chaining value, written into `out`. */
function compress(cv: Uint32Array, m: Uint32Array, counter: number, blockLen: number, flags: number, out: Uint32Array): void {
  for (let i = 0; i < 8; i++) v[i] = cv[i];
  v[8] = IV[0];
  v[9] = IV[1];
  v[10] = IV[2];
  v[11] = IV[3];
  v[12] = counter >>> 0;
  v[13] = Math.floor(counter / 0x100000000) >>> 0;
  v[14] = blockLen;
  v[15] = flags;
  for (let r = 0; r < 7; r++) {
    const s = r * 16;
    g(0, 4, 8, 12, m[SCHEDULE[s]], m[SCHEDULE[s + 1]]);
    g(1, 5, 9, 13, m[SCHEDULE[s + 2]], m[SCHEDULE[s + 3]]);
    g(2, 6, 10, 14, m[SCHEDULE[s + 4]], m[SCHEDULE[s + 5]]);
    g(3, 7, 11, 15, m[SCHEDULE[s + 6]], m[SCHEDULE[s + 7]]);
    g(0, 5, 10, 15, m[SCHEDULE[s + 8]], m[SCHEDULE[s + 9]]);
    g(1, 6, 11, 12, m[SCHEDULE[s + 10]], m[SCHEDULE[s + 11]]);
    g(2, 7, 8, 13, m[SCHEDULE[s + 12]], m[SCHEDULE[s + 13]]);
    g(3, 4, 9, 14, m[SCHEDULE[s + 14]], m[SCHEDULE[s + 15]]);
  }
  for (let i = 0; i < 8; i++) out[i] = v[i] ^ v[i + 8];
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
function chunkCv(key: Uint32Array, flags: number, data: Uint8Array, at: number, len: number, counter: number, rootFlag: number): Uint32Array {
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
