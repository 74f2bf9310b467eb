/** Mount lifecycle: remount, kill -9 after fsync, and the command line's errors. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isg, isMounted, kill9, mount, mountDirs, sh, umount } from '../helpers/mount';
import { prng } from '../helpers/tmp';

jest.setTimeout(300_000);

describe('mount lifecycle', () => {
  const { t, data, mnt } = mountDirs();

  test('unmount, remount: everything is still there', async () => {
    let m = await mount(data, mnt);
    fs.mkdirSync(`${mnt}/dir/sub`, { recursive: true });
    const blob = prng(1).bytes(5_000_000);
    fs.writeFileSync(`${mnt}/dir/sub/blob`, blob);
    fs.symlinkSync('sub/blob', `${mnt}/dir/ln`);
    fs.chmodSync(`${mnt}/dir/sub/blob`, 0o640);
    const before = await sh(`cd ${mnt} && find . -print0 | sort -z | xargs -0 stat -c '%n %a %s %Y %h'`);
    expect(await umount(m)).toBe(0);
    expect(isMounted(mnt)).toBe(false);
    m = await mount(data, mnt);
    expect(await sh(`cd ${mnt} && find . -print0 | sort -z | xargs -0 stat -c '%n %a %s %Y %h'`)).toBe(before);
    expect(fs.readFileSync(`${mnt}/dir/ln`).equals(blob)).toBe(true);
    expect(await umount(m)).toBe(0);
  });

  test('kill -9 after fsync: remount shows the data bit for bit and isg check is clean', async () => {
    const m = await mount(data, mnt);
    const blob = prng(2).bytes(20_000_000);
    const fd = fs.openSync(`${mnt}/durable`, 'w');
    fs.writeSync(fd, blob);
    fs.fsyncSync(fd);
    // kill while the file is still open: only fsync stands between the data and the crash
    await kill9(m);
    try {
      fs.closeSync(fd);
    } catch {
      /* the mount is gone */
    }
    expect((await isg(['check', data])).code).toBe(0);
    const m2 = await mount(data, mnt);
    expect(fs.readFileSync(`${mnt}/durable`).equals(blob)).toBe(true);
    expect(await umount(m2)).toBe(0);
    const check = await isg(['check', data]);
    expect(check.stdout).toMatch(/no problems/);
    expect(check.code).toBe(0);
  });

  test('isg check names a corrupt block and exits non-zero', async () => {
    const blocks = path.join(data, 'cache/blocks');
    const dir = fs.readdirSync(blocks).find((d) => fs.readdirSync(path.join(blocks, d)).length > 0)!;
    const file = path.join(blocks, dir, fs.readdirSync(path.join(blocks, dir))[0]);
    const saved = fs.readFileSync(file);
    const bad = Buffer.from(saved);
    bad[bad.length >> 1] ^= 1;
    fs.writeFileSync(file, bad);
    const r = await isg(['check', data]);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toContain(path.basename(file));
    fs.writeFileSync(file, saved);
    expect((await isg(['check', data])).code).toBe(0);
  });

  test('errors are one clear line with a non-zero exit', async () => {
    const missing = await isg(['mount', data, path.join(t.dir, 'no-such-dir')]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/^isg: mountpoint .* does not exist/);

    const m = await mount(data, mnt);
    const busy = await isg(['mount', path.join(t.dir, 'other'), mnt]);
    expect(busy.stderr).toMatch(/busy/);
    fs.mkdirSync(path.join(t.dir, 'mnt2'));
    const twice = await isg(['mount', data, path.join(t.dir, 'mnt2')]);
    expect(twice.code).not.toBe(0);
    expect(twice.stderr).toMatch(/already in use by pid \d+/);
    // status works while mounted
    const st = JSON.parse((await isg(['status', data, '--json'])).stdout);
    expect(st.files).toBeGreaterThan(0);
    expect(await umount(m)).toBe(0);

    const notRepo = await isg(['status', path.join(t.dir, 'nothing')]);
    expect(notRepo.code).not.toBe(0);
    expect(notRepo.stderr).toMatch(/holds no repository/);
    const badUmount = await isg(['umount', path.join(t.dir, 'mnt2')]);
    expect(badUmount.stderr).toMatch(/is not mounted/);
  });

  test('a password-protected repository refuses a wrong password and touches nothing', async () => {
    const pdata = path.join(t.dir, 'pdata');
    fs.writeFileSync(path.join(t.dir, 'pw'), 'correct horse\n');
    fs.writeFileSync(path.join(t.dir, 'bad'), 'wrong\n');
    expect((await isg(['init', pdata, '--password-file', path.join(t.dir, 'pw')])).code).toBe(0);
    const keyBefore = fs.readFileSync(path.join(pdata, 'key'));
    expect(JSON.parse(keyBefore.toString()).kdf).toBe('argon2id');
    const wrong = await isg(['mount', pdata, mnt, '--password-file', path.join(t.dir, 'bad')]);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/wrong password/);
    expect(fs.existsSync(path.join(pdata, 'lock'))).toBe(false);
    expect(fs.readFileSync(path.join(pdata, 'key')).equals(keyBefore)).toBe(true);
    const none = await isg(['mount', pdata, mnt]);
    expect(none.stderr).toMatch(/password-protected/);
    const m = await mount(pdata, mnt, ['--password-file', path.join(t.dir, 'pw')]);
    fs.writeFileSync(`${mnt}/secret`, 'hidden text that must not appear in plain');
    expect(await umount(m)).toBe(0);
    expect((await sh(`grep -r 'hidden text' ${pdata} || true`)).trim()).toBe('');
    expect((await sh(`grep -r 'secret' ${pdata}/cache || true`)).trim()).toBe('');
  });
});
