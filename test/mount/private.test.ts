/**
 * Private at rest: with a password, nothing in the data directory names a file, a symlink's
 * target, an xattr, or shows a file's content, while mounted (after fsync) or after unmount.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isg, mount, mountDirs, sh, umount } from '../helpers/mount';

jest.setTimeout(180_000);

const NAME = 'qzx-private-name-31337';
const DIR = 'qzx-private-dir-2718';
const TARGET = 'qzx-private-target/../somewhere-1414';
const CONTENT = 'qzx-private-content-1618 ';
const XATTR = 'user.qzx-private-attr';
const XVALUE = 'qzx-private-value-5772';

describe('private at rest', () => {
  const { t, data, mnt } = mountDirs();

  /** The strings the data directory must not hold, with the files that hold them (grep -r -a). */
  async function leaks(): Promise<string> {
    const found: string[] = [];
    for (const s of [NAME, DIR, TARGET, CONTENT.trim(), XATTR.slice(5), XVALUE]) {
      const out = (await sh(`grep -r -a -l -F -e '${s}' ${data} || true`)).trim();
      if (out) found.push(`${s}: ${out}`);
    }
    return found.join('\n');
  }

  test('names, targets, xattrs and content are nowhere in the data directory', async () => {
    const pw = path.join(t.dir, 'pw');
    fs.writeFileSync(pw, 'correct horse battery\n');
    expect((await isg(['init', data, '--password-file', pw])).code).toBe(0);
    const m = await mount(data, mnt, ['--password-file', pw]);
    fs.mkdirSync(`${mnt}/${DIR}`);
    fs.writeFileSync(`${mnt}/${DIR}/${NAME}`, CONTENT.repeat(100_000)); // compressible, 2.5 MB
    fs.symlinkSync(TARGET, `${mnt}/${DIR}/link`);
    await sh(`python3 -c 'import os; os.setxattr("${mnt}/${DIR}/${NAME}", "${XATTR}", b"${XVALUE}")'`);
    await sh(`sync ${mnt}/${DIR}/${NAME} && sync -f ${mnt}/${DIR}`);
    expect(fs.readlinkSync(`${mnt}/${DIR}/link`)).toBe(TARGET);
    // The grep finds what is there, or an empty answer proves nothing.
    fs.writeFileSync(path.join(t.dir, 'canary'), NAME);
    expect((await sh(`grep -r -a -l -F -e '${NAME}' ${t.dir}/canary`)).trim()).toBe(path.join(t.dir, 'canary'));
    expect(await leaks()).toBe('');
    expect(await umount(m)).toBe(0);
    expect(await leaks()).toBe('');
  });

  test('isg status unmounted needs the password, and counts with it', async () => {
    const none = await isg(['status', data, '--json']);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/password-protected/);
    const withPw = await isg(['status', data, '--json', '--password-file', path.join(t.dir, 'pw')]);
    expect(withPw.code).toBe(0);
    const s = JSON.parse(withPw.stdout) as { files: number; directories: number; symlinks: number; logicalBytes: number };
    expect([s.files, s.directories, s.symlinks, s.logicalBytes]).toEqual([1, 2, 1, CONTENT.length * 100_000]);
  });
});
