import { constants as C } from 'node:fs';
import { Session } from '../../src/repo/session';
import { checkRepository } from '../../src/repair/check';
import { repoStatus } from '../../src/repo/status';
import { prng, tmpDir } from '../helpers/tmp';
import { smallRepo } from '../helpers/session';

const me = { uid: 0, gid: 0 };

async function expectErr(p: Promise<unknown> | (() => unknown), code: string) {
  const run = typeof p === 'function' ? Promise.resolve().then(p) : p;
  await expect(run).rejects.toMatchObject({ code });
}

describe('filesystem core (no FUSE)', () => {
  let t: ReturnType<typeof tmpDir>;
  let s: Session;

  beforeEach(async () => {
    t = tmpDir();
    s = await smallRepo(t.dir + '/repo');
  });
  afterEach(async () => {
    await s.close();
    t.cleanup();
  });

  test('random writes, truncates and reads agree with a flat model, across flushes and reopen', async () => {
    const fs = s.fs;
    const fh = await fs.create('/f', 0o644, C.O_RDWR, me);
    const r = prng(42);
    let model = Buffer.alloc(0);
    for (let step = 0; step < 1500; step++) {
      const op = r.int(100);
      if (op < 55) {
        const off = r.int(model.length + 20_000);
        const d = r.bytes(1 + r.int(op < 10 ? 60_000 : 5000));
        await fs.write(fh, off, d);
        if (off + d.length > model.length) model = Buffer.concat([model, Buffer.alloc(off + d.length - model.length)]);
        d.copy(model, off);
      } else if (op < 65) {
        const size = r.int(model.length + 30_000);
        await fs.ftruncate(fh, size);
        model = size <= model.length ? Buffer.from(model.subarray(0, size)) : Buffer.concat([model, Buffer.alloc(size - model.length)]);
      } else if (op < 75) {
        await fs.flush(fh);
      } else {
        const off = r.int(model.length + 100);
        const len = r.int(40_000);
        const got = await fs.read(fh, off, len);
        expect(got.equals(model.subarray(off, off + len))).toBe(true);
      }
      expect(fs.fgetattr(fh).size).toBe(model.length);
    }
    await fs.release(fh);
    const whole = await (async () => {
      const h = await fs.open('/f', C.O_RDONLY);
      const b = await fs.read(h, 0, model.length + 10);
      await fs.release(h);
      return b;
    })();
    expect(whole.equals(model)).toBe(true);
    await fs.flushAll(); // close is write-behind: wait for it before looking at the metadata
    const report = await checkRepository(s.meta, s.store);
    expect(report.problems).toEqual([]);

    await s.close();
    s = await Session.open(t.dir + '/repo');
    const h = await s.fs.open('/f', C.O_RDONLY);
    expect((await s.fs.read(h, 0, model.length)).equals(model)).toBe(true);
    await s.fs.release(h);
  });

  test('a rewrite in the middle of a large file re-chunks only the neighbourhood', async () => {
    const fs = s.fs;
    const data = prng(5).bytes(1024 * 1024);
    let fh = await fs.create('/big', 0o644, C.O_RDWR, me);
    await fs.write(fh, 0, data);
    await fs.release(fh);
    await fs.flushAll();
    const before = new Set([...s.meta.extentsOf(2)].map((e) => e.id.toString('hex')));
    fh = await fs.open('/big', C.O_RDWR);
    await fs.write(fh, 500_000, Buffer.from('a small edit'));
    await fs.release(fh);
    await fs.flushAll();
    const after = [...s.meta.extentsOf(2)].map((e) => e.id.toString('hex'));
    const fresh = after.filter((id) => !before.has(id));
    expect(fresh.length).toBeGreaterThan(0);
    expect(fresh.length).toBeLessThanOrEqual(4);
    expect(after.length).toBeGreaterThan(100);
  });

  test('chunks do not depend on how the data was flushed: one 40 MiB flush (cut in pieces) = 40 small ones', async () => {
    // Default chunk sizes (min 256 KiB, avg 1 MiB), so one flush spans several cut steps.
    await s.close();
    t.cleanup();
    t = tmpDir();
    s = await smallRepo(t.dir + '/repo', {
      chunker: { minSize: 256 * 1024, avgSize: 1024 * 1024, maxSize: 4 * 1024 * 1024 },
      dirtyCap: 256 * 1024 * 1024,
    });
    const data = prng(9).bytes(40 * 1024 * 1024);
    const whole = await s.fs.create('/whole', 0o644, C.O_RDWR, me);
    await s.fs.write(whole, 0, data);
    await s.fs.fsync(whole);
    const pieces = await s.fs.create('/pieces', 0o644, C.O_RDWR, me);
    for (let off = 0; off < data.length; off += 1024 * 1024) {
      await s.fs.write(pieces, off, data.subarray(off, off + 1024 * 1024));
      await s.fs.fsync(pieces);
    }
    const chunksOf = (p: string) => s.meta.extentsOf(s.fs.getattr(p).ino).map((e) => [e.offset, e.length, e.id.toString('hex')]);
    expect(chunksOf('/pieces')).toEqual(chunksOf('/whole'));
    expect(chunksOf('/whole').length).toBeGreaterThan(20);
    expect((await s.fs.read(whole, 0, data.length)).equals(data)).toBe(true);
    await s.fs.release(whole);
    await s.fs.release(pieces);
  });

  test('identical data is stored once; freed when the last reference goes', async () => {
    const fs = s.fs;
    const data = prng(9).bytes(300_000);
    for (const name of ['/a', '/b', '/c']) {
      const fh = await fs.create(name, 0o644, C.O_WRONLY, me);
      await fs.write(fh, 0, data);
      await fs.release(fh);
    }
    await fs.flushAll();
    const st = await repoStatus(t.dir + '/repo', s.meta);
    expect(st.files).toBe(3);
    expect(st.referencedBytes).toBe(3 * data.length);
    expect(st.uniqueBytes).toBe(data.length);
    for (const name of ['/a', '/b', '/c']) fs.unlink(name);
    expect(await s.store.sweep()).toBeGreaterThan(0);
    const st2 = await repoStatus(t.dir + '/repo', s.meta);
    expect(st2.uniqueBlocks).toBe(0);
    expect((await checkRepository(s.meta, s.store)).problems).toEqual([]);
  });

  test('namespace: errors as Linux gives them', async () => {
    const fs = s.fs;
    fs.mkdir('/d', 0o755, me);
    fs.mkdir('/d/e', 0o755, me);
    const fh = await fs.create('/d/e/f', 0o600, C.O_WRONLY, me);
    await fs.release(fh);
    await expectErr(() => fs.mkdir('/d', 0o755, me), 'EEXIST');
    await expectErr(() => fs.rmdir('/d'), 'ENOTEMPTY');
    await expectErr(() => fs.rename('/d', '/d/e/x'), 'EINVAL');
    await expectErr(() => fs.getattr('/nope'), 'ENOENT');
    await expectErr(() => fs.getattr('/d/e/f/x'), 'ENOTDIR');
    await expectErr(() => fs.mkdir('/' + 'x'.repeat(256), 0o755, me), 'ENAMETOOLONG');
    await expectErr(() => fs.link('/d', '/d2'), 'EPERM');
    await expectErr(() => fs.unlink('/d'), 'EISDIR');
    await expectErr(() => fs.create('/d/e/f', 0o600, C.O_WRONLY | C.O_CREAT | C.O_EXCL, me), 'EEXIST');
    fs.mkdir('/full', 0o755, me);
    fs.mkdir('/full/x', 0o755, me);
    fs.mkdir('/empty', 0o755, me);
    await expectErr(() => fs.rename('/empty', '/full'), 'ENOTEMPTY');
    await expectErr(() => fs.rename('/full/x', '/empty', { noReplace: true }), 'EEXIST');
    fs.rename('/full/x', '/empty'); // over an empty directory
    expect(fs.readdir('/full')).toEqual(['.', '..']);
    expect(fs.getattr('/').nlink).toBe(2 + 3); // d, full, empty
  });

  test('hard links, rename over, open-unlinked files', async () => {
    const fs = s.fs;
    let fh = await fs.create('/a', 0o644, C.O_WRONLY, me);
    await fs.write(fh, 0, Buffer.from('hello'));
    await fs.release(fh);
    fs.link('/a', '/b');
    expect(fs.getattr('/a').nlink).toBe(2);
    fs.chmod('/b', 0o600);
    expect(fs.getattr('/a').mode & 0o777).toBe(0o600);
    fh = await fs.create('/c', 0o644, C.O_WRONLY, me);
    await fs.write(fh, 0, Buffer.from('other'));
    await fs.release(fh);
    fs.rename('/c', '/a'); // replaces one name of the linked file
    expect(fs.getattr('/b').nlink).toBe(1);
    const rd = await fs.open('/a', C.O_RDONLY);
    expect((await fs.read(rd, 0, 100)).toString()).toBe('other');
    fs.unlink('/a');
    // still readable and writable through the open handle
    expect((await fs.read(rd, 0, 100)).toString()).toBe('other');
    await fs.release(rd);
    await fs.flushAll();
    const rw = await fs.open('/b', C.O_RDWR);
    fs.unlink('/b');
    await fs.write(rw, 5, Buffer.from(' world'));
    await fs.flush(rw);
    expect((await fs.read(rw, 0, 100)).toString()).toBe('hello world');
    expect(s.meta.orphanList().length).toBe(1);
    await fs.release(rw);
    await fs.flushAll();
    expect(s.meta.orphanList().length).toBe(0);
    expect(fs.readdir('/')).toEqual(['.', '..']);
    await s.store.sweep();
    expect((await repoStatus(t.dir + '/repo', s.meta)).uniqueBlocks).toBe(0);
  });

  test('xattrs: create/replace flags, ENODATA, list, remove', async () => {
    const fs = s.fs;
    const fh = await fs.create('/x', 0o644, C.O_WRONLY, me);
    await fs.release(fh);
    fs.setxattr('/x', 'user.a', Buffer.from('1'), 0);
    await expectErr(() => fs.setxattr('/x', 'user.a', Buffer.from('2'), 1), 'EEXIST');
    await expectErr(() => fs.setxattr('/x', 'user.b', Buffer.from('2'), 2), 'ENODATA');
    fs.setxattr('/x', 'user.a', Buffer.from('22'), 2);
    expect(fs.getxattr('/x', 'user.a').toString()).toBe('22');
    await expectErr(() => fs.getxattr('/x', 'user.nope'), 'ENODATA');
    expect(fs.listxattr('/x')).toEqual(['user.a']);
    fs.removexattr('/x', 'user.a');
    await expectErr(() => fs.removexattr('/x', 'user.a'), 'ENODATA');
  });

  test('xattrAnswerForAll: what getxattr answers for every file alike (the binding answers those itself)', async () => {
    const fs = s.fs;
    expect(fs.xattrAnswerForAll('system.posix_acl_access')).toBe('EOPNOTSUPP');
    expect(fs.xattrAnswerForAll('security.selinux')).toBe('ENODATA');
    const fh = await fs.create('/y', 0o644, C.O_WRONLY, me);
    await fs.release(fh);
    fs.setxattr('/y', 'security.selinux', Buffer.from('ctx'), 0);
    expect(fs.xattrAnswerForAll('security.selinux')).toBeNull();
    expect(fs.xattrAnswerForAll('security.capability')).toBe('ENODATA');
    fs.removexattr('/y', 'security.selinux');
    expect(fs.xattrAnswerForAll('security.selinux')).toBe('ENODATA');
  });

  test('st_blocks does not move while a flush runs (the binding may keep the answer): dense, overwritten, sparse, after close', async () => {
    const fs = s.fs;
    const fh = await fs.create('/b', 0o644, C.O_RDWR, me);
    const r = prng(5);
    await fs.write(fh, 0, r.bytes(3 << 20));
    await fs.write(fh, 10 << 20, r.bytes(100 << 10)); // beyond a hole
    const want = Math.ceil(((3 << 20) + (100 << 10)) / 512);
    const sampledDuring = async (flush: Promise<void>) => {
      let done = false;
      void flush.finally(() => {
        done = true;
      });
      const seen = new Set<number>();
      while (!done) {
        seen.add(fs.fgetattr(fh).blocks);
        await new Promise((res) => setImmediate(res));
      }
      await flush;
      seen.add(fs.fgetattr(fh).blocks);
      return [...seen];
    };
    expect(fs.fgetattr(fh).blocks).toBe(want);
    expect(await sampledDuring(fs.flush(fh))).toEqual([want]);
    await fs.write(fh, 500 << 10, r.bytes(700 << 10)); // over committed data
    expect(await sampledDuring(fs.flush(fh))).toEqual([want]);
    await fs.release(fh);
    await fs.flushAll();
    expect(fs.getattr('/b').blocks).toBe(want);
  });

  test('sparse file: holes read as zeros and cost nothing', async () => {
    const fs = s.fs;
    const fh = await fs.create('/sparse', 0o644, C.O_RDWR, me);
    const G = 1024 ** 3;
    await fs.write(fh, 5 * G, Buffer.from('middle'));
    await fs.write(fh, 10 * G - 3, Buffer.from('end'));
    await fs.release(fh);
    expect(fs.getattr('/sparse').size).toBe(10 * G);
    const rd = await fs.open('/sparse', C.O_RDONLY);
    expect((await fs.read(rd, 5 * G - 2, 10)).equals(Buffer.from('\0\0middle\0\0'))).toBe(true);
    expect((await fs.read(rd, 10 * G - 5, 10)).equals(Buffer.from('\0\0end'))).toBe(true);
    expect((await fs.read(rd, 3 * G, 4)).equals(Buffer.alloc(4))).toBe(true);
    await fs.release(rd);
    await fs.flushAll();
    expect((await repoStatus(t.dir + '/repo', s.meta)).referencedBytes).toBe(9);
  });
});
