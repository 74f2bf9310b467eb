/**
 * `isg mount --read-only` over S3 backends (warm and cold tiers) with a cold cache: every block is
 * fetched from S3, and nothing of the data directory changes, not one byte.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isg, mount, mountDirs, Mounted, sh, umount } from '../helpers/mount';
import { S3rverProcess, S3RVER_KEY } from '../backend/s3rver';

jest.setTimeout(600_000);

/**
 * Every entry under dir (files, directories, symlinks) with what identifies its content: the
 * sha256 of a file's bytes, a symlink's target, a directory's mode. Nothing is excluded.
 */
function fingerprint(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    const abs = path.join(dir, rel);
    const st = fs.lstatSync(abs);
    if (st.isDirectory()) {
      out[rel + '/'] = `dir ${(st.mode & 0o7777).toString(8)}`;
      for (const name of fs.readdirSync(abs).sort()) walk(path.join(rel, name));
    } else if (st.isSymbolicLink()) out[rel] = `link ${fs.readlinkSync(abs)}`;
    else if (st.isFile()) {
      out[rel] = `file ${(st.mode & 0o7777).toString(8)} ${st.size} ${createHash('sha256').update(fs.readFileSync(abs)).digest('hex')}`;
    } else out[rel] = `other ${st.mode.toString(8)}`;
  };
  walk('.');
  return out;
}

/** Runs a python3 snippet; its stdout. */
const py = (code: string) => sh(`python3 -c '${code.replace(/'/g, `'"'"'`)}'`);

describe('a read-only mount over S3 with a cold cache', () => {
  let s3: S3rverProcess;
  const { t, data, mnt } = mountDirs(() => s3.close());
  let m: Mounted | undefined;
  const src = () => path.join(t.dir, 'src');

  beforeAll(async () => {
    s3 = await S3rverProcess.start('isgro');
    const spec = (n: number, tier: string) =>
      `s3${n}=s3:${s3.endpoint}/isgro/b${n}?accessKeyId=${S3RVER_KEY}&secretAccessKey=${S3RVER_KEY}&tier=${tier}`;
    const r = await isg([
      'init',
      data,
      '--ec',
      '2+1',
      '--backend',
      spec(0, 'warm'),
      '--backend',
      spec(1, 'warm'),
      '--backend',
      spec(2, 'cold'),
    ]);
    if (r.code !== 0) throw new Error(r.stderr);
    fs.mkdirSync(path.join(src(), 'tree/sub'), { recursive: true });
    await sh(`head -c 12000000 /dev/urandom > ${src()}/big.bin`);
    for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(src(), 'tree/sub', `f${i}.txt`), `file ${i}\n`.repeat(100 + i * 50));
    fs.symlinkSync('sub/f1.txt', path.join(src(), 'tree/link'));
    const w = await mount(data, mnt);
    await sh(`cp -a ${src()}/. ${mnt}/`);
    expect(await umount(w)).toBe(0);
    const f = await isg(['flush', data]);
    if (f.code !== 0) throw new Error(f.stderr);
    const d = await isg(['cache', 'drop', data]);
    if (d.code !== 0) throw new Error(d.stderr);
  });

  test('reads are bit for bit, fsync returns 0, writes fail with EROFS, unmount exits 0, the data directory is unchanged', async () => {
    const st = JSON.parse((await isg(['status', data, '--json'])).stdout);
    expect(st.localBytes).toBe(0); // cold: every block comes from S3
    expect(st.pendingUploadBlocks).toBe(0);
    const before = fingerprint(data);

    m = await mount(data, mnt, ['--read-only']);
    expect(JSON.parse((await isg(['status', data, '--json'])).stdout)).toMatchObject({ mounted: true, mountpoint: mnt });
    await sh(`diff -r --no-dereference ${src()} ${mnt} && cmp ${src()}/big.bin ${mnt}/big.bin`);
    // fsync and fdatasync of a file and of a directory: 0 (nothing can be dirty).
    expect(
      await py(
        `import os\nfor p in ["${mnt}/big.bin", "${mnt}/tree"]:\n  fd = os.open(p, os.O_RDONLY)\n  os.fsync(fd); os.fdatasync(fd); os.close(fd)\nprint("ok")`,
      ),
    ).toBe('ok\n');
    // Every kind of change: EROFS.
    const errno = await py(
      [
        'import os, errno',
        'def e(f):',
        '  try: f(); return "ok"',
        '  except OSError as x: return errno.errorcode[x.errno]',
        `M = "${mnt}"`,
        'print(" ".join([',
        '  e(lambda: open(M + "/new", "w")),',
        '  e(lambda: open(M + "/big.bin", "r+b")),',
        '  e(lambda: os.mkdir(M + "/d")),',
        '  e(lambda: os.unlink(M + "/big.bin")),',
        '  e(lambda: os.rename(M + "/big.bin", M + "/b2")),',
        '  e(lambda: os.utime(M + "/big.bin")),',
        '  e(lambda: os.chmod(M + "/big.bin", 0o600)),',
        '  e(lambda: os.setxattr(M + "/big.bin", "user.x", b"1")),',
        ']))',
      ].join('\n'),
    );
    expect(errno.trim().split(' ')).toEqual(Array(8).fill('EROFS'));
    // Once more after the first reads (the memory cache, not the local tier, serves them).
    await sh(`cmp ${src()}/big.bin ${mnt}/big.bin`);

    const daemon = m;
    m = undefined;
    expect(await umount(daemon)).toBe(0);
    expect(daemon.stderr()).not.toMatch(/\berror\b/);

    const after = fingerprint(data);
    // LMDB's lock file (meta/lock.mdb) is the one file a reader writes: its reader table records
    // the read transactions of every process that has the database open, and it is what keeps a
    // writer (a read-write mount of the same repository) from reusing pages a reader still sees.
    // It holds no data, is rebuilt by LMDB whenever no process has the database open, and a
    // read-only mount that skipped it could read pages a concurrent writer is overwriting.
    const lock = Object.keys(before).filter((k) => k.endsWith('lock.mdb'));
    for (const k of lock) {
      expect(after[k]).toBeDefined();
      delete before[k];
      delete after[k];
    }
    expect(after).toEqual(before);
  });

  afterAll(async () => {
    if (m) await umount(m).catch(() => undefined);
  });
});
