/** POSIX behaviour through the kernel: links, renames, open-unlinked files, sparse files, random I/O. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mount, mountDirs, sh, umount } from '../helpers/mount';
import { prng } from '../helpers/tmp';

jest.setTimeout(300_000);

describe('POSIX semantics in the mount', () => {
  const { t, data, mnt } = mountDirs();
  const shadowDir = path.join(t.dir, 'shadow');

  beforeAll(async () => {
    fs.mkdirSync(shadowDir);
    await mount(data, mnt);
  });

  test('hard links: nlink and mode through the other name, at once', async () => {
    fs.writeFileSync(`${mnt}/a`, 'linked');
    fs.linkSync(`${mnt}/a`, `${mnt}/b`);
    expect(fs.statSync(`${mnt}/a`).nlink).toBe(2);
    fs.chmodSync(`${mnt}/b`, 0o600);
    expect(fs.statSync(`${mnt}/a`).mode & 0o777).toBe(0o600);
    expect(fs.statSync(`${mnt}/a`).ino).toBe(fs.statSync(`${mnt}/b`).ino);
    fs.unlinkSync(`${mnt}/a`);
    expect(fs.statSync(`${mnt}/b`).nlink).toBe(1);
    expect(fs.readFileSync(`${mnt}/b`, 'utf8')).toBe('linked');
  });

  test('rename: over a file, across directories, directory into itself, over a non-empty directory', () => {
    fs.mkdirSync(`${mnt}/r1/sub`, { recursive: true });
    fs.mkdirSync(`${mnt}/r2`);
    fs.writeFileSync(`${mnt}/r1/x`, 'x');
    fs.writeFileSync(`${mnt}/r2/y`, 'y');
    fs.renameSync(`${mnt}/r1/x`, `${mnt}/r2/y`);
    expect(fs.readFileSync(`${mnt}/r2/y`, 'utf8')).toBe('x');
    expect(fs.existsSync(`${mnt}/r1/x`)).toBe(false);
    expect(() => fs.renameSync(`${mnt}/r1`, `${mnt}/r1/sub/inside`)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    fs.mkdirSync(`${mnt}/r3`);
    expect(() => fs.renameSync(`${mnt}/r3`, `${mnt}/r1`)).toThrow(expect.objectContaining({ code: 'ENOTEMPTY' }));
    fs.renameSync(`${mnt}/r1/sub`, `${mnt}/r3`);
    expect(fs.statSync(`${mnt}/r3`).isDirectory()).toBe(true);
    expect(fs.readdirSync(`${mnt}/r1`)).toEqual([]);
  });

  test('renameat2: RENAME_NOREPLACE refuses an existing target and moves otherwise; RENAME_EXCHANGE is EINVAL', async () => {
    fs.writeFileSync(`${mnt}/nr-a`, 'a');
    fs.writeFileSync(`${mnt}/nr-b`, 'b');
    fs.writeFileSync(
      `${shadowDir}/renameat2.py`,
      `import ctypes, json, sys
libc = ctypes.CDLL(None, use_errno=True)
def r2(a, b, flags):
    rc = libc.renameat2(-100, a.encode(), -100, b.encode(), flags)
    return 0 if rc == 0 else ctypes.get_errno()
d = sys.argv[1]
print(json.dumps([r2(d + '/nr-a', d + '/nr-b', 1), r2(d + '/nr-a', d + '/nr-c', 1), r2(d + '/nr-c', d + '/nr-b', 2)]))
`,
    );
    const out = await sh(`python3 ${shadowDir}/renameat2.py ${mnt}`);
    expect(JSON.parse(out)).toEqual([17, 0, 22]); // EEXIST, moved, EINVAL
    expect(fs.readFileSync(`${mnt}/nr-b`, 'utf8')).toBe('b');
    expect(fs.readFileSync(`${mnt}/nr-c`, 'utf8')).toBe('a');
    expect(fs.existsSync(`${mnt}/nr-a`)).toBe(false);
  });

  test('an unlinked file stays readable and writable through open handles until release', () => {
    fs.writeFileSync(`${mnt}/gone`, 'before');
    const fd = fs.openSync(`${mnt}/gone`, 'r+');
    fs.unlinkSync(`${mnt}/gone`);
    expect(fs.existsSync(`${mnt}/gone`)).toBe(false);
    fs.writeSync(fd, ' and after', 6);
    const buf = Buffer.alloc(64);
    const n = fs.readSync(fd, buf, 0, 64, 0);
    expect(buf.subarray(0, n).toString()).toBe('before and after');
    expect(fs.fstatSync(fd).nlink).toBe(0);
    fs.closeSync(fd);
  });

  test('O_APPEND, O_EXCL, O_TRUNC, ftruncate up and down', () => {
    const f = `${mnt}/flags`;
    fs.writeFileSync(f, 'abc');
    fs.appendFileSync(f, 'def');
    expect(fs.readFileSync(f, 'utf8')).toBe('abcdef');
    expect(() => fs.openSync(f, 'wx')).toThrow(expect.objectContaining({ code: 'EEXIST' }));
    fs.writeFileSync(f, 'xy');
    expect(fs.readFileSync(f, 'utf8')).toBe('xy');
    const fd = fs.openSync(f, 'r+');
    fs.ftruncateSync(fd, 5);
    expect(fs.readFileSync(f)).toEqual(Buffer.from('xy\0\0\0'));
    fs.ftruncateSync(fd, 1);
    fs.closeSync(fd);
    expect(fs.readFileSync(f, 'utf8')).toBe('x');
  });

  test('symlinks, names over 255 bytes, statfs', async () => {
    fs.symlinkSync('target/path', `${mnt}/ln`);
    expect(fs.readlinkSync(`${mnt}/ln`)).toBe('target/path');
    expect(fs.lstatSync(`${mnt}/ln`).isSymbolicLink()).toBe(true);
    expect(() => fs.writeFileSync(`${mnt}/${'n'.repeat(256)}`, '')).toThrow(expect.objectContaining({ code: 'ENAMETOOLONG' }));
    fs.writeFileSync(`${mnt}/${'n'.repeat(255)}`, 'ok');
    const df = (await sh(`stat -f -c '%S %b %a %c %l' ${mnt}`)).trim().split(' ').map(Number);
    expect(df[0]).toBeGreaterThan(0);
    expect(df[1]).toBeGreaterThan(df[2] / 2); // total >= free-ish
    expect(df[4]).toBe(255);
  });

  test('touch -a / -m change one time each, with nanoseconds; utimens round trip', async () => {
    const f = `${mnt}/times`;
    fs.writeFileSync(f, '');
    await sh(`touch -d @1600000000.123456789 ${f}`);
    await sh(`touch -a -d @1700000000.987654321 ${f}`);
    expect((await sh(`stat -c '%X.%x|%Y.%y' ${f}`)).trim()).toMatch(/^1700000000\..*\.987654321 .*\|1600000000\..*\.123456789 /);
    await sh(`touch -m -d @1500000000.5 ${f}`);
    expect((await sh(`stat -c '%X|%Y' ${f}`)).trim()).toBe('1700000000|1500000000');
  });

  test('extended attributes as Linux does them: ENODATA, ERANGE, list, remove', async () => {
    const f = `${mnt}/xa`;
    fs.writeFileSync(f, '');
    const py = `
import os, errno
f = ${JSON.stringify(f)}
os.setxattr(f, 'user.k', b'value123')
assert os.getxattr(f, 'user.k') == b'value123'
assert 'user.k' in os.listxattr(f)
try:
    os.getxattr(f, 'user.missing'); raise SystemExit('no ENODATA')
except OSError as e:
    assert e.errno == errno.ENODATA, e
try:
    os.setxattr(f, 'user.k', b'x', os.XATTR_CREATE); raise SystemExit('no EEXIST')
except OSError as e:
    assert e.errno == errno.EEXIST, e
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(3)
r = libc.getxattr(f.encode(), b'user.k', buf, 3)
assert r == -1 and ctypes.get_errno() == errno.ERANGE, (r, ctypes.get_errno())
assert libc.getxattr(f.encode(), b'user.k', None, 0) == 8
os.removexattr(f, 'user.k')
assert os.listxattr(f) == []
print('ok')`;
    fs.writeFileSync(`${shadowDir}/xattr.py`, py);
    expect((await sh(`python3 ${shadowDir}/xattr.py`)).trim()).toBe('ok');
  });

  test('security.capability: kept across a remount, and a write drops it (the kernel asks before each write)', async () => {
    const own = path.join(t.dir, 'cap');
    const ownMnt = path.join(own, 'mnt');
    const f = `${ownMnt}/tool`;
    const py = (code: string) => sh(`python3 -c ${JSON.stringify(`import os, struct; f = ${JSON.stringify(f)}; ${code}`)}`);
    let m = await mount(path.join(own, 'data'), ownMnt);
    await sh(`head -c 3000000 /dev/urandom > ${f}`);
    // VFS_CAP_REVISION_2 with CAP_NET_BIND_SERVICE permitted
    await py(`os.setxattr(f, 'security.capability', struct.pack('<5I', 0x02000000, 1 << 10, 0, 0, 0))`);
    expect(await umount(m)).toBe(0);
    m = await mount(path.join(own, 'data'), ownMnt);
    expect((await py(`print(os.getxattr(f, 'security.capability').hex())`)).trim()).toBe('0000000200040000000000000000000000000000');
    await py(`open(f, 'r+b').write(b'x')`);
    expect((await py(`print('security.capability' in os.listxattr(f))`)).trim()).toBe('False');
    expect(await umount(m)).toBe(0);
  });

  test('--allow-other: what another user creates is theirs, and the kernel checks permissions', async () => {
    const own = path.join(t.dir, 'other');
    const ownMnt = path.join(own, 'mnt');
    fs.mkdirSync(own);
    fs.chmodSync(t.dir, 0o755); // mkdtemp's 0700 would stop the other user on the way in
    fs.chmodSync(own, 0o755);
    const m = await mount(path.join(own, 'data'), ownMnt, ['--allow-other']);
    const as = (cmd: string) => sh(`setpriv --reuid=65534 --regid=65533 --clear-groups sh -c ${JSON.stringify(cmd)}`);
    await sh(`mkdir -m 1777 ${ownMnt}/pub && echo root > ${ownMnt}/pub/roots`);
    await as(`cd ${ownMnt}/pub && echo one > f && mkdir d && ln -s f l && mknod p p && echo two >> f`);
    expect((await sh(`cd ${ownMnt}/pub && stat -c '%n %u:%g' f d l p roots`)).trim().split('\n')).toEqual([
      'f 65534:65533',
      'd 65534:65533',
      'l 65534:65533',
      'p 65534:65533',
      'roots 0:0',
    ]);
    expect(fs.readFileSync(`${ownMnt}/pub/f`, 'utf8')).toBe('one\ntwo\n');
    await expect(as(`echo no >> ${ownMnt}/pub/roots`)).rejects.toThrow(/Permission denied/);
    expect(await umount(m)).toBe(0);
  });

  test('a sparse 10 GiB file with a few written ranges', async () => {
    const f = `${mnt}/sparse`;
    const fd = fs.openSync(f, 'w');
    const G = 1024 ** 3;
    const pieces: [number, Buffer][] = [
      [0, Buffer.from('start')],
      [3 * G + 17, prng(1).bytes(300_000)],
      [10 * G - 4, Buffer.from('end!')],
    ];
    for (const [off, d] of pieces) fs.writeSync(fd, d, 0, d.length, off);
    fs.closeSync(fd);
    expect(fs.statSync(f).size).toBe(10 * G);
    const rd = fs.openSync(f, 'r');
    for (const [off, d] of pieces) {
      const b = Buffer.alloc(d.length + 20);
      fs.readSync(rd, b, 0, b.length, off - 10 < 0 ? 0 : off - 10);
      if (off >= 10) expect(b.subarray(10, 10 + d.length).equals(d)).toBe(true);
      if (off >= 10) expect(b.subarray(0, 10).equals(Buffer.alloc(10))).toBe(true);
    }
    const hole = Buffer.alloc(1 << 20, 1);
    fs.readSync(rd, hole, 0, hole.length, 7 * G);
    expect(hole.equals(Buffer.alloc(1 << 20))).toBe(true);
    fs.closeSync(rd);
    expect(Number((await sh(`du -k ${f}`)).split('\t')[0])).toBeLessThan(10_000);
  });

  test('thousands of random writes, truncates and reads match a shadow file after every step', () => {
    const r = prng(2024);
    const f = `${mnt}/random`;
    const s = `${shadowDir}/random`;
    const fd = fs.openSync(f, 'w+');
    const sd = fs.openSync(s, 'w+');
    let size = 0;
    for (let step = 0; step < 3000; step++) {
      const op = r.int(100);
      if (op < 50) {
        const off = r.int(size + 100_000);
        const d = r.bytes(1 + r.int(op < 5 ? 400_000 : 20_000));
        fs.writeSync(fd, d, 0, d.length, off);
        fs.writeSync(sd, d, 0, d.length, off);
        size = Math.max(size, off + d.length);
      } else if (op < 58) {
        const n = r.int(size + 50_000);
        fs.ftruncateSync(fd, n);
        fs.ftruncateSync(sd, n);
        size = n;
      } else if (op < 62) {
        fs.fsyncSync(fd);
      } else {
        const off = r.int(size + 10);
        const len = r.int(200_000);
        const a = Buffer.alloc(len);
        const b = Buffer.alloc(len);
        const na = fs.readSync(fd, a, 0, len, off);
        const nb = fs.readSync(sd, b, 0, len, off);
        expect(na).toBe(nb);
        if (!a.equals(b)) throw new Error(`step ${step}: read ${off}+${len} differs`);
      }
      expect(fs.fstatSync(fd).size).toBe(size);
    }
    fs.closeSync(fd);
    fs.closeSync(sd);
    expect(fs.readFileSync(f).equals(fs.readFileSync(s))).toBe(true);
  });

  test('two writers to different files at once', async () => {
    await Promise.all(
      [1, 2].map((i) =>
        sh(`head -c 150000000 /dev/urandom > ${shadowDir}/w${i} && dd if=${shadowDir}/w${i} of=${mnt}/w${i} bs=1M status=none`),
      ),
    );
    await sh(`cmp ${shadowDir}/w1 ${mnt}/w1 && cmp ${shadowDir}/w2 ${mnt}/w2`);
  });
});
