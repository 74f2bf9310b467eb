/**
 * A codec worker that dies (CodecPool, src/block/pool.ts) is replaced; the requests it held are
 * retried once or fail with kind 'unavailable' (EIO at the FUSE edge); nothing waits forever.
 */
import { constants as C } from 'node:fs';
import { CodecPool } from '../../src/block/pool';
import { DEFAULT_CHUNKER } from '../../src/chunk';
import { isKind } from '../../src/errors';
import { deriveRepoKeys } from '../../src/repo/repository';
import { prng, tmpDir } from '../helpers/tmp';
import { smallRepo } from '../helpers/session';

jest.setTimeout(120_000);

const keys = deriveRepoKeys(Buffer.alloc(32, 9));
const setup = {
  idKey: keys.block.idKey,
  encKey: keys.block.encKey,
  gear: keys.gear,
  chunker: DEFAULT_CHUNKER,
  compression: { name: 'zstd' as const },
};

function shared(bytes: Buffer): SharedArrayBuffer {
  const sab = new SharedArrayBuffer(bytes.length);
  Buffer.from(sab).set(bytes);
  return sab;
}

/** Settles within ms, or rejects saying it hung. */
function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} hung`)), ms)));
  return Promise.race([p, hang]).finally(() => clearTimeout(timer));
}

describe('codec worker death', () => {
  test('encodes in flight when workers are killed complete (retried) or fail unavailable; later ones work', async () => {
    const pool = new CodecPool(setup, { workers: 2, nativeDecode: false });
    try {
      const data = shared(prng(1).bytes(4 * 1024 * 1024));
      const want = await pool.encode(data, 0, data.byteLength);
      for (let round = 0; round < 5; round++) {
        const jobs = Array.from({ length: 8 }, () =>
          pool.encode(data, 0, data.byteLength).then(
            (r) => r.id.equals(want.id),
            (e: unknown) => (isKind(e, 'unavailable') ? 'unavailable' : e),
          ),
        );
        await new Promise((r) => setTimeout(r, 5 * round));
        await pool.terminateWorker(round % 2);
        const results = await bounded(Promise.all(jobs), 60_000, 'encodes after a worker died');
        for (const r of results) expect([true, 'unavailable']).toContain(r);
      }
      expect(pool.workerDeaths).toBe(5);
      // the replacements answer
      for (let i = 0; i < 4; i++) expect((await bounded(pool.encode(data, 0, 1000), 30_000, 'encode')).length).toBeGreaterThan(0);
    } finally {
      await pool.close();
    }
  });

  test('a request that outlives requestTimeoutMs ends its worker and fails unavailable', async () => {
    const pool = new CodecPool(setup, { workers: 1, nativeDecode: false, requestTimeoutMs: 1 });
    try {
      const data = shared(prng(2).bytes(32 * 1024 * 1024));
      const err = await bounded(pool.encode(data, 0, data.byteLength), 30_000, 'a stuck encode').catch((e: unknown) => e);
      expect(isKind(err, 'unavailable')).toBe(true);
      expect(pool.workerDeaths).toBeGreaterThanOrEqual(1);
    } finally {
      await pool.close();
    }
  });

  test('a file system workload with workers killed under it completes or gets EIO, never hangs', async () => {
    const t = tmpDir();
    const s = await smallRepo(t.dir + '/repo');
    try {
      const me = { uid: 0, gid: 0 };
      const r = prng(7);
      const written = new Map<string, Buffer>();
      let failures = 0;
      const killer = setInterval(() => void s.pool.terminateWorker(0).catch(() => undefined), 150);
      try {
        for (let i = 0; i < 40; i++) {
          const name = `/f${i}`;
          const bytes = r.bytes(50_000 + r.int(200_000));
          try {
            await bounded(
              (async () => {
                const fh = await s.fs.create(name, 0o644, C.O_RDWR, me);
                try {
                  await s.fs.write(fh, 0, bytes);
                  await s.fs.flush(fh);
                } finally {
                  await s.fs.release(fh);
                }
              })(),
              60_000,
              `writing ${name}`,
            );
            written.set(name, bytes);
          } catch (e) {
            if ((e as Error).message.endsWith('hung')) throw e;
            expect(isKind(e, 'unavailable') || (e as { code?: string }).code === 'EIO').toBe(true);
            failures++;
          }
        }
      } finally {
        clearInterval(killer);
      }
      expect(s.pool.workerDeaths).toBeGreaterThan(0);
      expect(written.size + failures).toBe(40);
      for (const [name, bytes] of written) {
        const fh = await s.fs.open(name, C.O_RDONLY);
        expect((await bounded(s.fs.read(fh, 0, bytes.length + 1), 30_000, `reading ${name}`)).equals(bytes)).toBe(true);
        await s.fs.release(fh);
      }
    } finally {
      await s.close();
      t.cleanup();
    }
  });
});
