/** Both implementations of src/native, loaded directly, so every test runs on each of them in one run. */
import { existsSync } from 'node:fs';
import { addonChunk, addonErasure, loadBinding } from '../../src/native/addon';
import { fallbackChunk, fallbackErasure, fallbackHash } from '../../src/native/fallback';
import { loadNapiBlake } from '../../src/native/napi-blake';
import type { ChunkImpl, ErasureImpl, HashImpl } from '../../src/native/types';

export const forced = ['1', 'true', 'yes'].includes((process.env.ISGFS_NO_NATIVE ?? '').toLowerCase());
/** Where ISA-L is installed, setup builds the addon, so its absence is a failure, not a skip. */
export const addonExpected = existsSync('/usr/include/isa-l/erasure_code.h') || existsSync('/usr/local/include/isa-l/erasure_code.h');

export const loaded = loadBinding();
export const binding = loaded.binding;
const blake = loadNapiBlake();

export const erasureImpls: [string, ErasureImpl][] = [['fallback', fallbackErasure]];
export const chunkImpls: [string, ChunkImpl][] = [['fallback', fallbackChunk]];
export const hashImpls: [string, HashImpl][] = [['fallback', fallbackHash]];
if (binding) {
  erasureImpls.push(['native', addonErasure(binding)]);
  chunkImpls.push(['native', addonChunk(binding)]);
}
if (blake.impl) hashImpls.push(['napi-rs', blake.impl]);
export const napiBlake = blake;

/** Deterministic bytes (xorshift32), so a failure can be reproduced. */
export function prngBytes(seed: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

export function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n: number) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

/** Every subset of {0..n-1} with 1..max elements. */
export function subsets(n: number, max: number): number[][] {
  const out: number[][] = [];
  const rec = (start: number, cur: number[]) => {
    if (cur.length) out.push([...cur]);
    if (cur.length === max) return;
    for (let i = start; i < n; i++) rec(i + 1, [...cur, i]);
  };
  rec(0, []);
  return out;
}
