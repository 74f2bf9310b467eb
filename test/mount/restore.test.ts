/**
 * `isg restore`: a real tree written through the mount (a few thousand files of this project's
 * node_modules, hard links, symlinks, xattrs, a sparse 1 GiB file with data at both ends, and a
 * large incompressible file), flushed, unmounted, restored from the backends (local tier
 * dropped) and compared: `diff -r` and every entry's metadata. A restore killed with SIGKILL
 * halfway is run again: it completes and rewrites none of the files that were complete. With a
 * pack's shards lost beyond the erasure code, the rest is restored, the file is named, and the
 * exit status is 1.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { ISG, isg, mount, mountDirs, sh, umount } from '../helpers/mount';
import { treeListing } from '../helpers/listing';
import { prng } from '../helpers/tmp';

jest.setTimeout(900_000);

/** Regular files under `root`: relative path -> [ino, ctime ns, size, mtime ns]. */
const INODES = `
import os, sys, json
root = sys.argv[1]
out = {}
for d, dirs, files in os.walk(root):
    for n in files:
        p = os.path.join(d, n)
        st = os.lstat(p)
        if os.path.isfile(p) and not os.path.islink(p):
            out[os.path.relpath(p, root)] = [st.st_ino, st.st_ctime_ns, st.st_size, st.st_mtime_ns]
json.dump(out, sys.stdout)
`;

type Summary = { resumed: boolean; files: number; filesKept: number; bytesWritten: number; bytesKept: number; failed: { path: string }[] };

describe('isg restore', () => {
  const { t, data, mnt } = mountDirs();
  const listing = treeListing;
  const inodes = async (dir: string) =>
    JSON.parse(await sh(`python3 -c '${INODES}' ${dir}`)) as Record<string, [number, number, number, number]>;
  const src = () => path.join(t.dir, 'src');
  let before: string;

  beforeAll(async () => {
    const r = await isg(['init', data]);
    if (r.code !== 0) throw new Error(r.stderr);
    fs.mkdirSync(src());
    const s = src();
    const nm = path.resolve(__dirname, '../../node_modules');
    await sh(`cp -a ${nm}/{lmdb,commander,winston,lru-cache,hash-wasm,@babel,eslint,@typescript-eslint} ${s}/`);
    await sh(
      `truncate -s 1G ${s}/sparse && printf head | dd of=${s}/sparse conv=notrunc status=none && printf tail | dd of=${s}/sparse bs=1 seek=$((1024*1024*1024-4)) conv=notrunc status=none`,
    );
    fs.writeFileSync(`${s}/big`, prng(7).bytes(96 * 1024 * 1024));
    fs.writeFileSync(`${s}/linked`, 'one inode, three names\n');
    fs.linkSync(`${s}/linked`, `${s}/commander/also-linked`);
    fs.linkSync(`${s}/linked`, `${s}/lmdb/third-name`);
    fs.symlinkSync('../linked', `${s}/lmdb/to-linked`);
    fs.symlinkSync('/nowhere/at/all', `${s}/dangling`);
    await sh(
      `python3 -c 'import os; os.setxattr("${s}/linked", "user.colour", b"blue"); os.setxattr("${s}/lmdb", "user.dir", b"\\x00\\x01")'`,
    );
    fs.chmodSync(`${s}/linked`, 0o640);
    fs.mkdirSync(`${s}/readonly-dir`);
    fs.writeFileSync(`${s}/readonly-dir/inside`, 'in a directory of mode 0555\n');
    fs.chmodSync(`${s}/readonly-dir`, 0o555);

    const m = await mount(data, mnt);
    await sh(`cp -a ${s}/. ${mnt}/`);
    await sh(`chown -h 1234:5678 ${mnt}/dangling ${mnt}/winston`);
    before = await listing(mnt);
    const f = await isg(['flush', data]);
    if (f.code !== 0) throw new Error(f.stderr);
    // While the filesystem is mounted: a subtree.
    const sub = path.join(t.dir, 'sub');
    const r2 = await isg(['restore', data, 'latest:/winston', sub]);
    expect(r2.stderr).toBe('');
    expect(r2.code).toBe(0);
    await sh(`diff -r --no-dereference ${s}/winston ${sub}`);
    expect(await umount(m)).toBe(0);
    expect(JSON.parse(before).length).toBeGreaterThan(2500);
  });

  test('restore of latest compares clean: contents, modes, owners, times, link counts, xattrs, holes', async () => {
    expect((await isg(['cache', 'drop', data])).code).toBe(0);
    const out = path.join(t.dir, 'out');
    const r = await isg(['restore', data, 'latest', out, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const sum = JSON.parse(r.stdout) as Summary;
    expect(sum.failed).toEqual([]);
    expect(sum.resumed).toBe(false);
    await sh(`diff -r --no-dereference ${src()} ${out}`);
    expect(await listing(out)).toBe(before);
    expect(fs.existsSync(path.join(out, '.isg-restore-in-progress'))).toBe(false);
    // The holes stay holes: the 1 GiB file takes a few blocks of disk.
    expect(Number((await sh(`stat -c %b ${out}/sparse`)).trim()) * 512).toBeLessThan(1024 * 1024);
    expect((await sh(`stat -c %i ${out}/linked ${out}/commander/also-linked ${out}/lmdb/third-name | uniq | wc -l`)).trim()).toBe('1');
  });

  test('bad input: an unknown ref or path, a destination in use', async () => {
    const fresh = path.join(t.dir, 'never');
    const unknown = await isg(['restore', data, 'nosuchsnapshot', fresh]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no snapshot "nosuchsnapshot"/);
    const noPath = await isg(['restore', data, 'latest:/lmdb/no/such', fresh]);
    expect(noPath.code).toBe(1);
    expect(noPath.stderr).toMatch(/no "no" in \/lmdb/);
    expect(fs.existsSync(fresh)).toBe(false);
    const used = path.join(t.dir, 'used');
    fs.mkdirSync(used);
    fs.writeFileSync(path.join(used, 'mine'), 'keep me');
    const refused = await isg(['restore', data, 'latest:/commander', used]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/exists and is not empty; give --overwrite/);
    const over = await isg(['restore', data, 'latest:/commander', used, '--overwrite']);
    expect(over.code).toBe(0);
    await sh(`diff -r ${src()}/commander ${used} -x mine`);
    expect(fs.readFileSync(path.join(used, 'mine'), 'utf8')).toBe('keep me');
    // A file path: the file alone.
    const one = path.join(t.dir, 'one-file');
    expect((await isg(['restore', data, 'latest:/linked', one])).code).toBe(0);
    expect(fs.readFileSync(one, 'utf8')).toBe('one inode, three names\n');
  });

  test('killed halfway and run again: completes, rewrites nothing already complete', async () => {
    expect((await isg(['cache', 'drop', data])).code).toBe(0);
    const out = path.join(t.dir, 'killed');
    const child = spawn(process.execPath, [ISG, 'restore', data, 'latest', out, '--parallel', '2'], { stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    // Halfway: once the large file is partly written (its extents are read from the backends).
    for (;;) {
      const st = fs.statSync(path.join(out, 'big'), { throwIfNoEntry: false });
      if (st && st.size >= 24 * 1024 * 1024) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    child.kill('SIGKILL');
    await exited;
    expect(fs.existsSync(path.join(out, '.isg-restore-in-progress'))).toBe(true);
    const wanted = await inodes(src());
    const atKill = await inodes(out);
    const complete = Object.keys(atKill).filter((p) => {
      const [, , size, mtime] = atKill[p];
      return wanted[p] && wanted[p][2] === size && wanted[p][3] === mtime;
    });
    expect(complete.length).toBeGreaterThan(0);
    expect(complete.length).toBeLessThan(Object.keys(wanted).length);

    const again = await isg(['restore', data, 'latest', out, '--json']);
    expect(again.stderr).toBe('');
    expect(again.code).toBe(0);
    const sum = JSON.parse(again.stdout) as Summary;
    expect(sum.resumed).toBe(true);
    expect(sum.filesKept).toBeGreaterThanOrEqual(new Set(complete.map((p) => atKill[p][0])).size); // inodes, not names
    expect(sum.bytesKept).toBeGreaterThan(0);
    await sh(`diff -r --no-dereference ${src()} ${out}`);
    expect(await listing(out)).toBe(before);
    const after = await inodes(out);
    for (const p of complete) expect([p, after[p][0], after[p][1]]).toEqual([p, atKill[p][0], atKill[p][1]]);
  });

  test('shards lost beyond the erasure code: the rest is restored, the file named, exit 1', async () => {
    const data2 = path.join(t.dir, 'data2');
    const mnt2 = path.join(t.dir, 'mnt2');
    expect((await isg(['init', data2])).code).toBe(0);
    const shards = () => sh(`cd ${data2}/backends && find . -path '*/shards/*' -type f | sort`).then((s) => s.split('\n').filter(Boolean));
    const m = await mount(data2, mnt2);
    fs.writeFileSync(path.join(mnt2, 'victim'), prng(9).bytes(6 * 1024 * 1024));
    expect((await isg(['flush', data2])).code).toBe(0);
    const first = await shards();
    await sh(`cp -a ${src()}/commander ${src()}/winston ${mnt2}/`);
    fs.writeFileSync(path.join(mnt2, 'after'), 'written after the victim\n');
    expect((await isg(['flush', data2])).code).toBe(0);
    expect(await umount(m)).toBe(0);
    // Every pack of the first flush loses three of its six shards (m = 2).
    const packs = new Map<string, string[]>();
    for (const f of first) {
      const id = path.basename(f).split('.')[0];
      packs.set(id, [...(packs.get(id) ?? []), f]);
    }
    expect(packs.size).toBeGreaterThan(0);
    for (const files of packs.values()) for (const f of files.slice(0, 3)) fs.rmSync(path.join(data2, 'backends', f));
    expect((await isg(['cache', 'drop', data2])).code).toBe(0);

    const out = path.join(t.dir, 'damaged');
    const r = await isg(['restore', data2, 'latest', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`NOT restored: ${path.join(out, 'victim')}`);
    expect(r.stderr).toMatch(/1 path\(s\) could not be restored/);
    await sh(`diff -r ${src()}/commander ${out}/commander && diff -r ${src()}/winston ${out}/winston`);
    expect(fs.readFileSync(path.join(out, 'after'), 'utf8')).toBe('written after the victim\n');
  });
});
