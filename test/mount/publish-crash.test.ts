/**
 * kill -9 during a publish: the head before it stays the newest valid one, and `isg connect`
 * from the backends gives the tree as that head published it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isg, kill9, mount, mountDirs, sh, umount } from '../helpers/mount';
import { prng } from '../helpers/tmp';

jest.setTimeout(300_000);

describe('kill -9 during a publish', () => {
  const { t, data, mnt } = mountDirs();
  const disk = (i: number) => path.join(t.dir, `disk${i}`);
  const specs = [0, 1, 2, 3, 4, 5].map((i) => `disk${i}=local:${disk(i)}`);
  const pw = () => ['--password-file', path.join(t.dir, 'pw')];
  /** Files under `sub` of a local backend (recursively). */
  const count = (dir: string): number =>
    fs.existsSync(dir) ? fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length : 0;
  const heads = () => fs.readdirSync(path.join(disk(0), 'isgfs', 'heads')).sort();
  const listing = (dir: string) =>
    sh(`cd ${dir} && find . -print0 | sort -z | xargs -0 stat -c '%n %a %s %Y %h' && find . -type f -print0 | sort -z | xargs -0 md5sum`);

  test('the previous head stays valid, and connect gives its tree', async () => {
    fs.writeFileSync(path.join(t.dir, 'pw'), 'publish crash\n');
    const r = await isg(['init', data, '--ec', '4+2', ...pw(), ...specs.flatMap((s) => ['--backend', s])]);
    if (r.code !== 0) throw new Error(r.stderr);
    const m = await mount(data, mnt, [...pw(), '--publish-interval', '1h']);
    fs.mkdirSync(`${mnt}/a/b`, { recursive: true });
    for (let i = 0; i < 50; i++) fs.writeFileSync(`${mnt}/a/b/f${i}`, prng(i).bytes(1000 + i * 100));
    fs.linkSync(`${mnt}/a/b/f1`, `${mnt}/a/hard`);
    const f1 = await isg(['flush', data]);
    if (f1.code !== 0) throw new Error(f1.stderr);
    const published = await listing(mnt);
    expect(heads()).toHaveLength(1);

    // A second publish with enough to upload that it is killed on its way, after its first shard.
    fs.mkdirSync(`${mnt}/later`);
    fs.writeFileSync(`${mnt}/later/big`, prng(99).bytes(48_000_000));
    fs.renameSync(`${mnt}/a/b/f2`, `${mnt}/later/f2`);
    fs.unlinkSync(`${mnt}/a/b/f3`);
    // fsync: what the crashed directory must keep, whatever the publish was doing.
    await sh(
      `python3 -c 'import os\nfor p in ["${mnt}/later/big", "${mnt}/later", "${mnt}/a/b"]:\n  fd = os.open(p, os.O_RDONLY); os.fsync(fd); os.close(fd)'`,
    );
    const shardsBefore = count(path.join(disk(0), 'shards')) + count(path.join(disk(1), 'shards'));
    const flushing = isg(['flush', data]);
    for (let waited = 0; count(path.join(disk(0), 'shards')) + count(path.join(disk(1), 'shards')) === shardsBefore; waited += 5) {
      if (waited > 60_000) throw new Error('no shard was stored within a minute');
      await new Promise((res) => setTimeout(res, 5));
    }
    await kill9(m);
    await flushing;
    expect(heads()).toHaveLength(1); // killed before its head

    // Connect from the backends (the dead daemon's lease is taken over): head 1's tree.
    const fresh = path.join(t.dir, 'fresh');
    const c = await isg(['connect', fresh, '--take-over', ...pw(), ...specs.flatMap((s) => ['--backend', s])]);
    if (c.code !== 0) throw new Error(c.stderr);
    expect(c.stdout + c.stderr).not.toMatch(/ignored|refused/i);
    const m2 = await mount(fresh, mnt, [...pw(), '--read-only']);
    try {
      expect(await listing(mnt)).toBe(published);
    } finally {
      expect(await umount(m2)).toBe(0);
    }
    expect((await isg(['check', fresh, ...pw()])).code).toBe(0);

    // The crashed data directory itself mounts again with everything fsynced.
    const m3 = await mount(data, mnt, [...pw(), '--take-over']);
    try {
      expect(fs.readFileSync(`${mnt}/later/big`).equals(prng(99).bytes(48_000_000))).toBe(true);
      expect(fs.existsSync(`${mnt}/a/b/f3`)).toBe(false);
    } finally {
      expect(await umount(m3)).toBe(0);
    }
    expect((await isg(['check', data, ...pw()])).code).toBe(0);
  });
});
