/**
 * Published trees as filesystems: `isg mount --snapshot <ref>` (read-only, beside the live mount
 * of the same data directory) and `isg clone` (a subtree grafted into the live filesystem, its
 * blocks shared), on real mounts.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isg, mount, mountDirs, Mounted, sh, umount } from '../helpers/mount';

jest.setTimeout(600_000);

/**
 * Every entry under dir with what identifies it: type, mode, size, mtime, the sha256 of a file's
 * bytes, a symlink's target, xattrs, and which names are one inode (hard links).
 */
function fingerprint(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const inodes = new Map<number, string>();
  const walk = (rel: string) => {
    const abs = path.join(dir, rel);
    const st = fs.lstatSync(abs);
    const common = `${(st.mode & 0o7777).toString(8)} ${st.mtimeMs}`;
    if (st.isDirectory()) {
      out[rel + '/'] = `dir ${common}`;
      for (const name of fs.readdirSync(abs).sort()) walk(path.join(rel, name));
    } else if (st.isSymbolicLink()) out[rel] = `link ${fs.readlinkSync(abs)}`;
    else {
      const first = inodes.get(st.ino) ?? rel;
      inodes.set(st.ino, first);
      const hash = createHash('sha256').update(fs.readFileSync(abs)).digest('hex');
      out[rel] = `file ${common} ${st.size} ${st.nlink} ${hash} same-inode-as ${first}`;
    }
  };
  walk('.');
  return out;
}

/** The user xattrs of a file, by python (no attr tools on the machine). */
const xattrs = (file: string) =>
  sh(`python3 -c 'import os,sys; f=sys.argv[1]; print(sorted((n, os.getxattr(f, n).hex()) for n in os.listxattr(f)))' ${file}`);

const status = async (data: string) => JSON.parse((await isg(['status', data, '--json'])).stdout) as Record<string, number>;

describe('mount --snapshot and clone', () => {
  const { t, data, mnt } = mountDirs();
  const snap1 = path.join(t.dir, 'snap1');
  const snap2 = path.join(t.dir, 'snap2');
  let live: Mounted;
  let snap: Mounted;
  let published: Record<string, string>;
  const tree = () => path.join(mnt, 'tree');

  beforeAll(async () => {
    // No background publish: tree objects are blocks too, and one between two readings of
    // storedBytes would count as the clone's.
    live = await mount(data, mnt, ['--publish-interval', '1h']);
    await sh(
      `mkdir -p ${tree()}/sub/deep ${tree()}/small && head -c 4194304 /dev/urandom > ${tree()}/big && ` +
        `for i in $(seq 0 99); do head -c $((100 + i * 37)) /dev/urandom > ${tree()}/small/$i; done && ` +
        `echo hello > ${tree()}/sub/a && ln ${tree()}/sub/a ${tree()}/sub/deep/hl && ln -s ../big ${tree()}/sub/sl && ` +
        `chmod 640 ${tree()}/sub/a && touch -d 2020-01-02 ${tree()}/small/7 && ` +
        `python3 -c 'import os; os.setxattr("${tree()}/sub/a", "user.tag", b"v1")'`,
    );
    await sh(`echo outside > ${mnt}/outside`);
    const r = await isg(['flush', data]);
    if (r.code !== 0) throw new Error(r.stderr);
    published = fingerprint(tree());
  });

  test('mount --snapshot latest beside the live mount: the same tree, read-only', async () => {
    // No memory cache to speak of: every read goes to the local tier or the packs.
    snap = await mount(data, snap1, ['--snapshot', 'latest', '--cache-size', '4K']);
    expect(fingerprint(path.join(snap1, 'tree'))).toEqual(published);
    expect(await xattrs(path.join(snap1, 'tree/sub/a'))).toBe(await xattrs(path.join(tree(), 'sub/a')));
    expect(fs.readFileSync(path.join(snap1, 'outside'), 'utf8')).toBe('outside\n');
    for (const write of [
      `touch ${snap1}/new`,
      `echo x >> ${snap1}/tree/sub/a`,
      `mkdir ${snap1}/d`,
      `rm ${snap1}/outside`,
      `mv ${snap1}/outside ${snap1}/o2`,
      `python3 -c 'import os; os.setxattr("${snap1}/tree/sub/a", "user.tag", b"v2")'`,
    ]) {
      await expect(sh(write)).rejects.toThrow(/Read-only file system/);
    }
    expect(fingerprint(path.join(snap1, 'tree'))).toEqual(published);
    // The view was materialised once, complete.
    const views = fs.readdirSync(path.join(data, 'views'));
    expect(views).toHaveLength(1);
    expect(fs.existsSync(path.join(data, 'views', views[0], 'complete'))).toBe(true);
  });

  test('a file overwritten and published after the snapshot mount still reads its old contents there', async () => {
    await sh(`head -c 4194304 /dev/urandom > ${tree()}/big && echo changed > ${tree()}/sub/a && sync -f ${tree()}`);
    expect((await isg(['flush', data])).code).toBe(0);
    // The old blocks' files leave the local tier (the live daemon's sweep may also have dropped
    // their rows and locations meanwhile): the snapshot mount reads them from their packs.
    expect((await isg(['cache', 'drop', data])).code).toBe(0);
    expect(fingerprint(path.join(snap1, 'tree'))).toEqual(published);
    expect(fs.readFileSync(path.join(snap1, 'tree/sub/deep/hl'), 'utf8')).toBe('hello\n');
    // A new mount of `latest` is the new tree, in a view of its own.
    const second = await mount(data, snap2, ['--snapshot', 'latest']);
    expect(fingerprint(path.join(snap2, 'tree'))).toEqual(fingerprint(tree()));
    expect(fs.readFileSync(path.join(snap2, 'tree/sub/a'), 'utf8')).toBe('changed\n');
    expect(fs.readdirSync(path.join(data, 'views'))).toHaveLength(2);
    expect(await umount(second)).toBe(0);
  });

  test('clone a subtree of latest: same contents, hard links kept, no data stored', async () => {
    const want = fingerprint(tree());
    await sh(`sync -f ${mnt}`);
    const before = await status(data);
    const r = await isg(['clone', data, 'latest:/tree', path.join(mnt, 'copy')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/cloned latest:\/tree .*: 1\d\d entries/);
    const copy = path.join(mnt, 'copy');
    expect(fingerprint(copy)).toEqual(want);
    expect(await xattrs(path.join(copy, 'sub/a'))).toBe(await xattrs(path.join(tree(), 'sub/a')));
    const [a, hl, orig] = [path.join(copy, 'sub/a'), path.join(copy, 'sub/deep/hl'), path.join(tree(), 'sub/a')].map((p) => fs.statSync(p));
    expect(a.ino).toBe(hl.ino);
    expect(a.ino).not.toBe(orig.ino);
    await sh(`sync -f ${mnt}`);
    const after = await status(data);
    expect(after.uniqueBytes).toBe(before.uniqueBytes);
    expect(after.storedBytes).toBe(before.storedBytes);
  });

  test('modifying the clone: the original and the published tree are unchanged, stored bytes grow by the change only', async () => {
    const copy = path.join(mnt, 'copy');
    const original = fingerprint(tree());
    const before = await status(data);
    await sh(
      `head -c 262144 /dev/urandom > ${copy}/new && head -c 1000 /dev/urandom > ${copy}/small/5 && ` +
        `echo appended >> ${copy}/sub/deep/hl && rm ${copy}/small/9 && sync ${copy}/new ${copy}/small/5 ${copy}/sub/a ${copy}`,
    );
    const after = await status(data);
    const changed = 262144 + 1000 + 'hello\nappended\n'.length;
    expect(after.uniqueBytes - before.uniqueBytes).toBeGreaterThanOrEqual(changed);
    expect(after.uniqueBytes - before.uniqueBytes).toBeLessThanOrEqual(changed + 1024);
    expect(after.storedBytes - before.storedBytes).toBeLessThan(changed * 1.05 + 4096);
    expect(fs.readFileSync(path.join(copy, 'sub/a'), 'utf8')).toBe('changed\nappended\n');
    expect(fingerprint(tree())).toEqual(original);
    expect(fingerprint(path.join(snap1, 'tree'))).toEqual(published);
    // Published: the clone is in the next tree, with its changes, and the original beside it.
    expect((await isg(['flush', data])).code).toBe(0);
    const third = await mount(data, snap2, ['--snapshot', 'latest']);
    expect(fingerprint(path.join(snap2, 'tree'))).toEqual(original);
    expect(fingerprint(path.join(snap2, 'copy'))).toEqual(fingerprint(copy));
    expect(await umount(third)).toBe(0);
  });

  test('bad input: an existing destination, an unknown path or ref, a destination outside the mount', async () => {
    const cases: [string[], RegExp][] = [
      [['latest:/tree', path.join(mnt, 'copy')], /\/copy exists/],
      [['latest:/tree/nope', path.join(mnt, 'c2')], /no \/tree\/nope in tree latest/],
      [['latest:/tree/big/x', path.join(mnt, 'c2')], /\/tree\/big in tree latest is not a directory/],
      [['nosuch:/tree', path.join(mnt, 'c2')], /no snapshot "nosuch"/],
      [['latest:/tree', path.join(t.dir, 'elsewhere')], /is not inside the filesystem mounted on/],
      [['latest:/tree', path.join(mnt, 'nodir/c2')], /the directory \/nodir of \/nodir\/c2 does not exist/],
    ];
    for (const [args, message] of cases) {
      const r = await isg(['clone', data, ...args]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(message);
    }
    expect(fs.existsSync(path.join(mnt, 'c2'))).toBe(false);
    const bad = await isg(['mount', data, snap2, '--snapshot', 'nosuch']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/no snapshot "nosuch"/);
  });

  test('unmounted: clone opens the repository itself; the snapshot mount keeps serving', async () => {
    expect(await umount(live)).toBe(0);
    const r = await isg(['clone', data, 'latest:/tree/sub', '/sub2']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((await isg(['clone', data, 'latest:/tree/sub', 'relative'])).stderr).toMatch(/a path from the filesystem's root/);
    live = await mount(data, mnt, ['--publish-interval', '1h']);
    expect(fingerprint(path.join(mnt, 'sub2'))).toEqual(fingerprint(path.join(mnt, 'tree/sub')));
    expect(fingerprint(path.join(snap1, 'tree'))).toEqual(published);
    expect(await umount(snap)).toBe(0);
    expect(await umount(live)).toBe(0);
    const check = await isg(['check', data]);
    expect(check.stderr).toBe('');
    expect(check.code).toBe(0);
  });
});
