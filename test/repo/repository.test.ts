import * as fs from 'node:fs';
import * as path from 'node:path';
import { initRepository, openRepository, repoPaths } from '../../src/repo/repository';
import { KeyFileError } from '../../src/crypto/keys';
import { tmpDir } from '../helpers/tmp';

const mode = (f: string) => fs.statSync(f).mode & 0o777;

let t: ReturnType<typeof tmpDir>;
beforeEach(() => {
  t = tmpDir('isgfs-repo-');
});
afterEach(() => t.cleanup());

describe('a new repository is private', () => {
  test.each([
    ['with the usual umask 022', 0o022, undefined],
    ['with umask 0 (nothing masked)', 0, undefined],
    ['with a password', 0o022, 'pw'],
  ])('%s: data directory 0700, config and key 0600', async (_what, umask, password) => {
    const old = process.umask(umask);
    try {
      const root = path.join(t.dir, 'a', 'repo');
      await initRepository(root, { password });
      const p = repoPaths(root);
      expect(mode(p.root)).toBe(0o700);
      expect(mode(p.config)).toBe(0o600);
      expect(mode(p.key)).toBe(0o600);
      // No temporary file of the atomic write is left behind.
      expect(fs.readdirSync(p.root).filter((n) => n.includes('.tmp-'))).toEqual([]);
      // Parents the init had to create are not made private: only the data directory is.
      expect(mode(path.join(t.dir, 'a'))).toBe(0o777 & ~umask);
    } finally {
      process.umask(old);
    }
  });

  test('an existing empty directory given to init is made 0700', async () => {
    const root = path.join(t.dir, 'repo');
    fs.mkdirSync(root, { mode: 0o755 });
    fs.chmodSync(root, 0o755);
    await initRepository(root);
    expect(mode(root)).toBe(0o700);
    expect(mode(repoPaths(root).config)).toBe(0o600);
  });
});

describe('openRepository and the key file', () => {
  test('a hostile key file is refused with KeyFileError naming the field and the file', async () => {
    const root = path.join(t.dir, 'repo');
    await initRepository(root);
    const p = repoPaths(root);
    fs.writeFileSync(
      p.key,
      JSON.stringify({
        version: 1,
        kdf: 'argon2id',
        params: { memoryKiB: 100 * 1024 * 1024, iterations: 3, parallelism: 4 },
        salt: 'AAAAAAAAAAAAAAAAAAAAAA==',
        nonce: 'AAAAAAAAAAAAAAAA',
        wrapped: Buffer.alloc(32).toString('base64'),
        tag: 'AAAAAAAAAAAAAAAAAAAAAA==',
      }),
    );
    const t0 = Date.now();
    const err = await openRepository(root, 'pw').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeyFileError);
    expect((err as KeyFileError).field).toBe('params.memoryKiB');
    expect((err as Error).message).toContain(p.key);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  test('a truncated key file is refused as damaged JSON', async () => {
    const root = path.join(t.dir, 'repo');
    await initRepository(root);
    const p = repoPaths(root);
    fs.writeFileSync(p.key, fs.readFileSync(p.key, 'utf8').slice(0, 30));
    await expect(openRepository(root, undefined)).rejects.toThrow(/key: JSON is damaged/);
  });

  test('a key file too large to be one is refused before it is read', async () => {
    const root = path.join(t.dir, 'repo');
    await initRepository(root);
    const p = repoPaths(root);
    fs.truncateSync(p.key, 1 << 30); // sparse: 1 GiB of zeros
    await expect(openRepository(root, undefined)).rejects.toThrow(/is 1073741824 bytes/);
  });

  test('the repository opens with the key it was created with', async () => {
    const root = path.join(t.dir, 'repo');
    await initRepository(root);
    const a = await openRepository(root, undefined);
    const b = await openRepository(root, undefined);
    expect(a.keys.master).toEqual(b.keys.master);
  });
});
