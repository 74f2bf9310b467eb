/** Inode numbers past 2^32 through a real mount: stat(2) shows them whole. */
import * as fs from 'node:fs';
import { initRepository, openRepository, repoPaths } from '../../src/repo/repository';
import { Meta } from '../../src/meta/meta';
import { mount, mountDirs, sh, umount } from '../helpers/mount';

jest.setTimeout(120_000);

describe('64-bit inode numbers in the mount', () => {
  const { data, mnt } = mountDirs();

  test('a counter near 2^32 gives 2^32 and 2^32 + 1, and stat shows them', async () => {
    await initRepository(data);
    const meta = await Meta.open(repoPaths(data).meta, (await openRepository(data, undefined)).keys.meta);
    meta.setNextIno(2 ** 32 - 1);
    await meta.sync();
    await meta.close();

    let m = await mount(data, mnt);
    fs.writeFileSync(`${mnt}/a`, 'a');
    fs.mkdirSync(`${mnt}/b`);
    fs.writeFileSync(`${mnt}/b/c`, 'c');
    const want = { a: 2 ** 32 - 1, b: 2 ** 32, 'b/c': 2 ** 32 + 1 };
    const got = () => Object.fromEntries(Object.keys(want).map((n) => [n, Number(fs.statSync(`${mnt}/${n}`, { bigint: true }).ino)]));
    expect(got()).toEqual(want);
    expect((await sh(`stat -c %i ${mnt}/b/c`)).trim()).toBe(String(2 ** 32 + 1));
    expect(await umount(m)).toBe(0);

    m = await mount(data, mnt);
    expect(got()).toEqual(want);
    expect(fs.readFileSync(`${mnt}/b/c`, 'utf8')).toBe('c');
    expect(await umount(m)).toBe(0);
  });
});
