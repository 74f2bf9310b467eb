/**
 * AES-256-GCM of src/native: the addon's (Node's own OpenSSL, into given memory) and node:crypto's,
 * checked against each other, against a published test vector, and against tampering.
 */
import { createCipheriv } from 'node:crypto';
import * as api from '../../src/native';
import { addonAead } from '../../src/native/addon';
import { fallbackAead } from '../../src/native/fallback';
import type { AeadImpl } from '../../src/native/types';
import { addonExpected, binding, forced, prngBytes, rng } from './impls';

const impls: [string, AeadImpl][] = [['node:crypto', fallbackAead]];
const nativeImpl = binding && addonAead(binding);
if (nativeImpl) impls.push(['native', nativeImpl]);

test('the addon brings AES-256-GCM wherever it is built (this Node exports its OpenSSL)', () => {
  if (addonExpected && !forced) expect(nativeImpl).not.toBeNull();
  expect(api.nativeAead).toBe(nativeImpl !== null && !forced);
});

describe.each(impls)('AES-256-GCM (%s)', (_name, aead) => {
  test('known answer: NIST GCM test case 16 (AES-256, 60-byte plaintext, 20-byte AAD)', () => {
    const key = Buffer.from('feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308', 'hex');
    const nonce = Buffer.from('cafebabefacedbaddecaf888', 'hex');
    const plain = Buffer.from(
      'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39',
      'hex',
    );
    const aad = Buffer.from('feedfacedeadbeeffeedfacedeadbeefabaddad2', 'hex');
    const out = Buffer.alloc(plain.length + 16);
    aead.aesGcmSeal(key, nonce, aad, plain, out);
    expect(out.subarray(0, plain.length).toString('hex')).toBe(
      '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662',
    );
    expect(out.subarray(plain.length).toString('hex')).toBe('76fc6ece0f4e1768cddf8853bb2d551b');
    const back = Buffer.alloc(plain.length);
    expect(aead.aesGcmOpen(key, nonce, aad, out.subarray(0, plain.length), out.subarray(plain.length), back)).toBe(true);
    expect(back.equals(plain)).toBe(true);
  });

  test('agrees with node:crypto at every size, and rejects any flipped bit, a wrong key, nonce or AAD', () => {
    const r = rng(11);
    for (const len of [0, 1, 15, 16, 17, 4096, 32 * 1024 + 3, 1 << 20, (1 << 20) + 77]) {
      const key = prngBytes(len + 2, 32);
      const nonce = prngBytes(len + 3, 12);
      const aad = prngBytes(len + 4, 35);
      const plain = prngBytes(len + 5, len);
      const c = createCipheriv('aes-256-gcm', key, nonce);
      c.setAAD(aad);
      const want = Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
      const out = Buffer.alloc(len + 16);
      aead.aesGcmSeal(key, nonce, aad, plain, out);
      expect(out.equals(want)).toBe(true);
      const ct = out.subarray(0, len);
      const tag = out.subarray(len);
      const back = Buffer.alloc(len);
      expect(aead.aesGcmOpen(key, nonce, aad, ct, tag, back)).toBe(true);
      expect(back.equals(plain)).toBe(true);
      const flipped = Buffer.from(out);
      flipped[r(flipped.length)] ^= 1 << r(8);
      expect(aead.aesGcmOpen(key, nonce, aad, flipped.subarray(0, len), flipped.subarray(len), back)).toBe(false);
      const other = (b: Buffer) => {
        const x = Buffer.from(b);
        x[r(x.length)] ^= 1;
        return x;
      };
      expect(aead.aesGcmOpen(other(key), nonce, aad, ct, tag, back)).toBe(false);
      expect(aead.aesGcmOpen(key, other(nonce), aad, ct, tag, back)).toBe(false);
      expect(aead.aesGcmOpen(key, nonce, other(aad), ct, tag, back)).toBe(false);
    }
  });

  test('a too-small output is refused, not overrun', () => {
    const key = Buffer.alloc(32, 1);
    const nonce = Buffer.alloc(12, 2);
    expect(() => aead.aesGcmSeal(key, nonce, Buffer.alloc(0), Buffer.alloc(100), Buffer.alloc(115))).toThrow(
      /out must hold the ciphertext and the tag/,
    );
    expect(() => aead.aesGcmOpen(key, nonce, Buffer.alloc(0), Buffer.alloc(100), Buffer.alloc(16), Buffer.alloc(99))).toThrow(
      /out is shorter than the ciphertext/,
    );
  });
});
