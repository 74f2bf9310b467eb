import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** A fresh directory under the system temp dir; removed by the returned cleanup. */
export function tmpDir(prefix = 'isgfs-'): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
export function prng(seed: number): { bytes(n: number): Buffer; int(n: number): number } {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  return {
    bytes(n: number) {
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i += 4) {
        const v = next();
        b[i] = v & 255;
        if (i + 1 < n) b[i + 1] = (v >>> 8) & 255;
        if (i + 2 < n) b[i + 2] = (v >>> 16) & 255;
        if (i + 3 < n) b[i + 3] = v >>> 24;
      }
      return b;
    },
    int(n: number) {
      return next() % n;
    },
  };
}
