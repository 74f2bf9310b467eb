/**
 * The backends are the store of record: a real tree written through the mount to six backends
 * outside the data directory (four local disks, two S3 buckets), flushed; the data directory and
 * two backends are lost; `isg connect` builds a new data directory from the rest, and the mount
 * shows the same tree: contents, modes, owners, times, link counts, xattrs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { S3rverProcess, S3RVER_KEY } from '../backend/s3rver';
import { isg, mount, mountDirs, sh, umount } from '../helpers/mount';
import { treeListing } from '../helpers/listing';

jest.setTimeout(600_000);

describe('recovery on a new machine (isg connect)', () => {
  let s3: S3rverProcess;
  const { t, data, mnt } = mountDirs(() => s3.close());
  const disk = (i: number) => path.join(t.dir, `disk${i}`);
  let specs: string[];
  const listing = treeListing;

  beforeAll(async () => {
    s3 = await S3rverProcess.start('isgrec');
    specs = [0, 1, 2, 3].map((i) => `disk${i}=local:${disk(i)}`);
    for (const n of [0, 1]) specs.push(`s3${n}=s3:${s3.endpoint}/isgrec/b${n}?accessKeyId=${S3RVER_KEY}&secretAccessKey=${S3RVER_KEY}`);
    fs.writeFileSync(path.join(t.dir, 'pw'), 'recovery horse\n');
    const r = await isg([
      'init',
      data,
      '--ec',
      '4+2',
      '--password-file',
      path.join(t.dir, 'pw'),
      ...specs.flatMap((s) => ['--backend', s]),
    ]);
    if (r.code !== 0) throw new Error(r.stderr);
  });

  test('node_modules, a sparse 1 GiB file, hard links, symlinks and xattrs come back whole', async () => {
    const pw = ['--password-file', path.join(t.dir, 'pw')];
    const src = path.join(t.dir, 'src');
    fs.mkdirSync(src);
    // A real tree: some of this project's node_modules (thousands of small files).
    await sh(
      `cp -a ${path.resolve(__dirname, '../../node_modules')}/{lmdb,commander,winston,lru-cache,hash-wasm} ${src}/ 2>/dev/null || true`,
    );
    await sh(
      `truncate -s 1G ${src}/sparse && printf head | dd of=${src}/sparse conv=notrunc status=none && printf tail | dd of=${src}/sparse bs=1 seek=$((1024*1024*1024-4)) conv=notrunc status=none`,
    );
    fs.writeFileSync(`${src}/linked`, 'one inode, two names\n');
    fs.linkSync(`${src}/linked`, `${src}/commander/also-linked`);
    fs.symlinkSync('../linked', `${src}/lmdb/to-linked`);
    fs.symlinkSync('/nowhere/at/all', `${src}/dangling`);
    await sh(
      `python3 -c 'import os; os.setxattr("${src}/linked", "user.colour", b"blue"); os.setxattr("${src}/lmdb", "user.dir", b"\\x00\\x01")'`,
    );
    fs.chmodSync(`${src}/linked`, 0o640);
    fs.lchownSync(`${src}/dangling`, 1234, 5678);

    const m = await mount(data, mnt, pw);
    await sh(`cp -a ${src}/. ${mnt}/`);
    await sh(`chown -h 1234:5678 ${mnt}/dangling`);
    const before = await listing(mnt);
    expect((JSON.parse(before) as unknown[]).length).toBeGreaterThan(300);
    const f = await isg(['flush', data, ...pw]);
    if (f.code !== 0) throw new Error(f.stderr);
    expect(await umount(m)).toBe(0);
    const st = JSON.parse((await isg(['status', data, '--json', ...pw])).stdout) as {
      publishedHead: number | null;
      unpublishedChanges: number;
    };
    expect(st.publishedHead).toBeGreaterThan(0);
    expect(st.unpublishedChanges).toBe(0);

    // The machine is lost, and two of the six backends with it (replaced by empty ones).
    fs.rmSync(data, { recursive: true, force: true });
    for (const i of [1, 3]) {
      fs.rmSync(disk(i), { recursive: true, force: true });
      fs.mkdirSync(disk(i));
    }
    const fresh = path.join(t.dir, 'fresh');
    const c = await isg(['connect', fresh, ...specs.flatMap((s) => ['--backend', s]), ...pw]);
    if (c.code !== 0) throw new Error(c.stderr);

    const again = await mount(fresh, mnt, pw);
    try {
      await sh(`diff -r --no-dereference ${src} ${mnt}`);
      expect(await listing(mnt)).toBe(before);
      expect((await sh(`stat -c %i ${mnt}/linked ${mnt}/commander/also-linked | uniq | wc -l`)).trim()).toBe('1');
    } finally {
      expect(await umount(again)).toBe(0);
    }
    const check = await isg(['check', fresh, ...pw]);
    expect(check.code).toBe(0);
  });
});
