/**
 * GF(2^8) with the polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d, generator 2) -- the field of
 * Intel ISA-L -- and the systematic Reed-Solomon generator matrix of docs/formats.md:
 * identity on top, then G[k + i][j] = 1 / ((k + i) XOR j), a Cauchy matrix, so any k of the
 * k + m rows are invertible. The addon builds the same matrix in native/rs.cc.
 */
export const GF_EXP = new Uint8Array(512);
export const GF_LOG = new Uint8Array(256);
{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    GF_EXP[i] = GF_EXP[i + 255] = x;
    GF_LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= 0x11d;
  }
}

export function gfMul(a: number, b: number): number {
  return a === 0 || b === 0 ? 0 : GF_EXP[GF_LOG[a] + GF_LOG[b]];
}

export function gfInv(a: number): number {
  if (a === 0) throw new RangeError('0 has no inverse in GF(2^8)');
  return GF_EXP[255 - GF_LOG[a]];
}

/** MUL[c * 256 + x] = c * x: one 256-byte row per coefficient. */
export const GF_MUL_TABLE = new Uint8Array(65536);
for (let c = 0; c < 256; c++) for (let x = 0; x < 256; x++) GF_MUL_TABLE[c * 256 + x] = gfMul(c, x);

/** The (k + m) x k generator matrix, row-major. */
export function generatorMatrix(k: number, m: number): Uint8Array {
  const g = new Uint8Array((k + m) * k);
  for (let r = 0; r < k + m; r++) for (let c = 0; c < k; c++) g[r * k + c] = r < k ? (r === c ? 1 : 0) : gfInv(r ^ c);
  return g;
}

/** Inverse of an n x n matrix (Gauss-Jordan); throws if singular. */
export function invertMatrix(src: Uint8Array, n: number): Uint8Array {
  const a = Uint8Array.from(src);
  const out = new Uint8Array(n * n);
  for (let i = 0; i < n; i++) out[i * n + i] = 1;
  for (let c = 0; c < n; c++) {
    let piv = c;
    while (piv < n && a[piv * n + c] === 0) piv++;
    if (piv === n) throw new Error('singular matrix');
    if (piv !== c) {
      for (let j = 0; j < n; j++) {
        [a[piv * n + j], a[c * n + j]] = [a[c * n + j], a[piv * n + j]];
        [out[piv * n + j], out[c * n + j]] = [out[c * n + j], out[piv * n + j]];
      }
    }
    const f = gfInv(a[c * n + c]);
    for (let j = 0; j < n; j++) {
      a[c * n + j] = gfMul(a[c * n + j], f);
      out[c * n + j] = gfMul(out[c * n + j], f);
    }
    for (let r = 0; r < n; r++) {
      const e = a[r * n + c];
      if (r === c || e === 0) continue;
      for (let j = 0; j < n; j++) {
        a[r * n + j] ^= gfMul(e, a[c * n + j]);
        out[r * n + j] ^= gfMul(e, out[c * n + j]);
      }
    }
  }
  return out;
}

/**
 * Rows that compute shards `outIdx` from the k shards `srcIdx`: invert the source rows of G
 * (giving the data shards), then multiply by the wanted rows of G. rows.length = outIdx.length * k.
 */
export function codingMatrix(k: number, m: number, srcIdx: number[], outIdx: number[]): Uint8Array {
  const g = generatorMatrix(k, m);
  const b = new Uint8Array(k * k);
  srcIdx.forEach((s, r) => b.set(g.subarray(s * k, s * k + k), r * k));
  const inv = invertMatrix(b, k);
  const rows = new Uint8Array(outIdx.length * k);
  outIdx.forEach((o, r) => {
    for (let c = 0; c < k; c++) {
      let s = 0;
      for (let l = 0; l < k; l++) s ^= gfMul(g[o * k + l], inv[l * k + c]);
      rows[r * k + c] = s;
    }
  });
  return rows;
}
