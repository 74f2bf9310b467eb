/**
 * CRC-64/XZ in TypeScript: the ECMA-182 polynomial, reflected, init and xorout all ones -- the
 * value of ISA-L's crc64_ecma_refl(0, ...) -- written as 8 bytes little-endian. Slicing by 8,
 * with the 64-bit state held as two 32-bit halves.
 */
const POLY_LO = 0xd7870f42; // 0xC96C5795D7870F42, reflected ECMA-182
const POLY_HI = 0xc96c5795;
const TL = new Uint32Array(8 * 256);
const TH = new Uint32Array(8 * 256);
for (let i = 0; i < 256; i++) {
  let lo = i;
  let hi = 0;
  for (let b = 0; b < 8; b++) {
    const lsb = lo & 1;
    lo = ((lo >>> 1) | (hi << 31)) >>> 0;
    hi >>>= 1;
    if (lsb) {
      lo = (lo ^ POLY_LO) >>> 0;
      hi = (hi ^ POLY_HI) >>> 0;
    }
  }
  TL[i] = lo;
  TH[i] = hi;
}
for (let t = 1; t < 8; t++) {
  for (let i = 0; i < 256; i++) {
    const plo = TL[(t - 1) * 256 + i];
    const phi = TH[(t - 1) * 256 + i];
    const idx = plo & 0xff;
    TL[t * 256 + i] = (((plo >>> 8) | (phi << 24)) ^ TL[idx]) >>> 0;
    TH[t * 256 + i] = ((phi >>> 8) ^ TH[idx]) >>> 0;
  }
}

export function crc64(data: Uint8Array): Buffer {
  let lo = 0xffffffff;
  let hi = 0xffffffff;
  const n = data.length;
  let i = 0;
  for (const end8 = n - (n % 8); i < end8; i += 8) {
    const a = (lo ^ (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24))) >>> 0;
    const b = (hi ^ (data[i + 4] | (data[i + 5] << 8) | (data[i + 6] << 16) | (data[i + 7] << 24))) >>> 0;
    const i7 = 7 * 256 + (a & 0xff),
      i6 = 6 * 256 + ((a >>> 8) & 0xff),
      i5 = 5 * 256 + ((a >>> 16) & 0xff),
      i4 = 4 * 256 + (a >>> 24);
    const i3 = 3 * 256 + (b & 0xff),
      i2 = 2 * 256 + ((b >>> 8) & 0xff),
      i1 = 256 + ((b >>> 16) & 0xff),
      i0 = b >>> 24;
    lo = TL[i7] ^ TL[i6] ^ TL[i5] ^ TL[i4] ^ TL[i3] ^ TL[i2] ^ TL[i1] ^ TL[i0];
    hi = TH[i7] ^ TH[i6] ^ TH[i5] ^ TH[i4] ^ TH[i3] ^ TH[i2] ^ TH[i1] ^ TH[i0];
  }
  for (; i < n; i++) {
    const idx = (lo ^ data[i]) & 0xff;
    lo = ((lo >>> 8) | (hi << 24)) ^ TL[idx];
    hi = (hi >>> 8) ^ TH[idx];
  }
  const out = Buffer.allocUnsafe(8);
  out.writeUInt32LE(~lo >>> 0, 0);
  out.writeUInt32LE(~hi >>> 0, 4);
  return out;
}
