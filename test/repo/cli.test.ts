/** The built command line (`node bin/isg`, from dist/: run `npx tsc -p tsconfig.json` first) on repositories made here. */
import { constants as C } from 'node:fs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isg } from '../helpers/mount';
import { smallRepo } from '../helpers/session';
import { prng, tmpDir } from '../helpers/tmp';

jest.setTimeout(120_000);

const me = { uid: 0, gid: 0 };
const t = tmpDir('isgfs-cli-');
afterAll(() => t.cleanup());

test('isg init without a password says the key is stored in plain and how to set one', async () => {
  const plain = await isg(['init', path.join(t.dir, 'plain')]);
  expect(plain.code).toBe(0);
  expect(plain.stdout).toMatch(/no password: the master key is stored in plain/);
  expect(plain.stdout).toMatch(/--password-file/);
  fs.writeFileSync(path.join(t.dir, 'pw'), 'secret\n');
  const prot = await isg(['init', path.join(t.dir, 'prot'), '--password-file', path.join(t.dir, 'pw')]);
  expect(prot.code).toBe(0);
  expect(prot.stdout).toMatch(/password-protected/);
  expect(prot.stdout).not.toMatch(/no password/);
});

describe('isg check on a damaged metadata database reports it and exits non-zero, never with a stack trace', () => {
  const base = path.join(t.dir, 'base');
  beforeAll(async () => {
    const s = await smallRepo(base);
    for (let i = 0; i < 150; i++) {
      const fh = await s.fs.create(`/f${i}`, 0o644, C.O_RDWR, me);
      await s.fs.write(fh, 0, prng(i + 1).bytes(20_000));
      await s.fs.release(fh);
    }
    await s.fs.flushAll();
    await s.close();
  });

  let n = 0;
  const damaged = (damage: (mdb: string) => void): string => {
    const dir = path.join(t.dir, `r${n++}`);
    fs.cpSync(base, dir, { recursive: true });
    damage(path.join(dir, 'meta', 'data.mdb'));
    return dir;
  };
  const overwrite = (file: string, at: number, data: Buffer) => {
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, data, 0, data.length, at);
    fs.closeSync(fd);
  };
  const noStack = (r: { stdout: string; stderr: string }) => {
    expect(r.stdout + r.stderr).not.toMatch(/\n\s+at .+[(:]\d+/);
    expect(r.stderr).not.toMatch(/node:internal|Uncaught|TypeError/);
  };

  test('the undamaged copy passes', async () => {
    const r = await isg(['check', damaged(() => undefined)]);
    expect(r.stdout).toMatch(/checked 151 inodes, .* no problems/);
    expect(r.code).toBe(0);
  });

  test.each<[string, (f: string) => void, RegExp]>([
    [
      'truncated in the middle',
      (f) => fs.truncateSync(f, Math.floor(fs.statSync(f).size / 3)),
      /data\.mdb is truncated: \d+ bytes, but its last page \d+ ends at byte \d+/,
    ],
    ['truncated to one page', (f) => fs.truncateSync(f, 4096), /data\.mdb is truncated: 4096 bytes, less than its two meta pages/],
    ['emptied', (f) => fs.truncateSync(f, 0), /data\.mdb is empty/],
    ['removed', (f) => fs.rmSync(f), /data\.mdb: cannot open \(ENOENT\)/],
    ['both meta pages overwritten with garbage', (f) => overwrite(f, 0, prng(7).bytes(8192)), /meta page 0 /],
    ['the second meta page overwritten with garbage', (f) => overwrite(f, 4096, prng(8).bytes(4096)), /meta page 1 /],
    // LMDB reports this one as MDB_CORRUPTED or aborts, depending on which pages the repository's
    // layout put there: either is reported as damage.
    ['pages in the middle zeroed', (f) => overwrite(f, 2 * 4096, Buffer.alloc(40 * 4096)), /metadata database (is damaged|.*MDB_)/],
    ['pages in the middle overwritten with garbage', (f) => overwrite(f, 20 * 4096, prng(9).bytes(20 * 4096)), /metadata database/],
  ])('%s', async (_what, damage, says) => {
    const r = await isg(['check', damaged(damage)]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^problem: /m);
    expect(r.stdout).toMatch(says);
    expect(r.stdout.split('\n').filter(Boolean).length).toBeLessThanOrEqual(3);
    noStack(r);
  });
});
