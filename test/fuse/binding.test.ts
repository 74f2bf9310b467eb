/**
 * The patched fuse-native binding, through mount/fuse.ts, against a real mount of the in-memory
 * test filesystem (test/fuse/memfs.ts) in a child process: times in nanoseconds and one at a time,
 * 1 MiB writes (libfuse 3), getxattr of absent and unsupported names answered in C, getattr
 * answered in C while nothing changed, 64-bit offsets and sizes, xattr size semantics and flags, hard links without
 * stale attributes, open-but-unlinked files, create modes and flags, 64-bit statfs, several
 * requests in flight.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { py, Server, sh, startServer, stopAllServers, tmpdir } from './harness';
import { findMount } from '../../mount/teardown';

const GiB = 2 ** 30;
let work: string;
let srv: Server;
let mnt: string;

beforeAll(async () => {
  work = tmpdir('binding');
  mnt = path.join(work, 'mnt');
  srv = await startServer('test/fuse/memfs.ts', mnt);
});

afterAll(async () => {
  try {
    const code = await srv.stop();
    expect(code).toBe(0); // SIGTERM: clean unmount, exit 0
    expect(findMount(mnt)).toBeUndefined();
  } finally {
    await stopAllServers();
    fs.rmSync(work, { recursive: true, force: true });
  }
});

describe('times', () => {
  test('touch -a sets only atime, to the nanosecond', async () => {
    await sh(`touch ${mnt}/t1 && touch -m -d @1500000000.5 ${mnt}/t1`);
    await sh(`touch -a -d @1600000000.123456789 ${mnt}/t1`);
    expect((await sh(`stat -c '%x|%y' ${mnt}/t1`)).trim()).toBe('2020-09-13 12:26:40.123456789 +0000|2017-07-14 02:40:00.500000000 +0000');
    const st = await srv.stats();
    expect(st.lastUtimens).toEqual({ path: '/t1', atimeNs: '1600000000123456789', mtimeNs: null });
  });

  test('touch -m sets only mtime, to the nanosecond', async () => {
    await sh(`touch -m -d @1600000001.987654321 ${mnt}/t1`);
    expect((await sh(`stat -c '%x|%y' ${mnt}/t1`)).trim()).toBe('2020-09-13 12:26:40.123456789 +0000|2020-09-13 12:26:41.987654321 +0000');
    expect((await srv.stats()).lastUtimens).toEqual({ path: '/t1', atimeNs: null, mtimeNs: '1600000001987654321' });
  });

  test('times before 1970 and the UTIME_NOW of a plain touch', async () => {
    await sh(`touch -d @-1.25 ${mnt}/t1`);
    expect((await sh(`stat -c '%X %x|%Y %y' ${mnt}/t1`)).trim()).toBe(
      '-2 1969-12-31 23:59:58.750000000 +0000|-2 1969-12-31 23:59:58.750000000 +0000',
    );
    const before = Date.now();
    await sh(`touch ${mnt}/t1`); // utimensat(NULL): UTIME_NOW for both
    const [a, m] = (await sh(`stat -c '%X %Y' ${mnt}/t1`)).trim().split(' ').map(Number);
    expect(Math.abs(a * 1000 - before)).toBeLessThan(5000);
    expect(m).toBe(a);
  });
});

describe('data path', () => {
  test('dd bs=1M reaches the filesystem in writes of 1 MiB', async () => {
    const before = (await srv.stats()).writes;
    await sh(`dd if=/dev/zero of=${mnt}/big bs=1M count=16 conv=fsync status=none`);
    const st = await srv.stats();
    expect(st.maxWrite).toBe(1024 * 1024);
    expect(st.writes - before).toBeLessThanOrEqual(16); // 16 MiB in 1 MiB pieces, not 128 of 128 KiB (libfuse 2)
    expect((await sh(`stat -c %s ${mnt}/big`)).trim()).toBe(String(16 * 2 ** 20));
  });

  test('a write at 6 GiB lands at 6 GiB (not at 6 GiB mod 4 GiB)', async () => {
    const r = await py<{ size: number; at6: string; at2: string }>(
      `import os, sys, json
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR, 0o644)
os.pwrite(fd, b'HELLO', 6 * 2**30)
os.close(fd)
fd = os.open(sys.argv[1], os.O_RDONLY)
print(json.dumps({'size': os.fstat(fd).st_size, 'at6': os.pread(fd, 5, 6 * 2**30).hex(), 'at2': os.pread(fd, 5, 2 * 2**30).hex()}))`,
      `${mnt}/sparse`,
    );
    expect(r).toEqual({ size: 6 * GiB + 5, at6: Buffer.from('HELLO').toString('hex'), at2: '0000000000' });
    expect((await srv.stats()).writeOffsets).toContain(6 * GiB);
  });

  test('truncate (by path) and ftruncate (by handle) carry sizes above 4 GiB', async () => {
    await py(`import os, sys; os.truncate(sys.argv[1], 5 * 2**30 + 7); print(1)`, `${mnt}/sparse`);
    expect((await sh(`stat -c %s ${mnt}/sparse`)).trim()).toBe(String(5 * GiB + 7));
    await sh(`truncate -s 4294967301 ${mnt}/sparse`); // coreutils: open + ftruncate(fd)
    expect((await sh(`stat -c %s ${mnt}/sparse`)).trim()).toBe('4294967301');
    const st = await srv.stats();
    expect(st.truncates).toContainEqual({ path: '/sparse', size: 5 * GiB + 7 });
    const ft = st.ftruncates.find((t) => t.size === 4294967301);
    expect(ft).toBeDefined();
    expect(ft!.fh).toBeGreaterThan(0);
  });

  test('several requests are in flight at once (multithreaded loop)', async () => {
    await sh(`for i in 1 2 3 4; do echo data$i > ${mnt}/par$i; done`);
    await srv.request({ cmd: 'slow', ms: 400 });
    try {
      const t0 = Date.now();
      const out = await sh(`for i in 1 2 3 4; do cat ${mnt}/par$i > ${mnt}/../out$i & done; wait; cat ${mnt}/../out*`);
      const elapsed = Date.now() - t0;
      expect(out).toBe('data1\ndata2\ndata3\ndata4\n');
      expect(elapsed).toBeLessThan(1400); // one after the other would take 1600 ms or more
    } finally {
      await srv.request({ cmd: 'slow', ms: 0 });
    }
  });
});

describe('xattrs', () => {
  const code = `import os, sys, json, ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
p = sys.argv[1]
out = {}
def err(f):
    try:
        f(); return 0
    except OSError as e:
        return e.errno
os.setxattr(p, 'user.color', b'blue-green')
os.setxattr(p, 'user.empty', b'')
out['get'] = os.getxattr(p, 'user.color').decode()
out['empty'] = os.getxattr(p, 'user.empty').decode()
out['list'] = sorted(os.listxattr(p))
out['missing'] = err(lambda: os.getxattr(p, 'user.nope'))
out['probe'] = libc.getxattr(p.encode(), b'user.color', None, 0)
buf = ctypes.create_string_buffer(4)
r = libc.getxattr(p.encode(), b'user.color', buf, 4)
out['small'] = [r, ctypes.get_errno()]
buf = ctypes.create_string_buffer(10)
out['exact'] = [libc.getxattr(p.encode(), b'user.color', buf, 10), buf.raw.decode()]
out['listprobe'] = libc.listxattr(p.encode(), None, 0)
buf = ctypes.create_string_buffer(5)
r = libc.listxattr(p.encode(), buf, 5)
out['listsmall'] = [r, ctypes.get_errno()]
out['create_existing'] = err(lambda: os.setxattr(p, 'user.color', b'x', os.XATTR_CREATE))
out['replace_missing'] = err(lambda: os.setxattr(p, 'user.new', b'x', os.XATTR_REPLACE))
os.setxattr(p, 'user.color', b'red', os.XATTR_REPLACE)
out['replaced'] = os.getxattr(p, 'user.color').decode()
os.removexattr(p, 'user.empty')
out['remove_missing'] = err(lambda: os.removexattr(p, 'user.empty'))
out['after'] = sorted(os.listxattr(p))
print(json.dumps(out))`;

  test('round trip, ENODATA, size probes, ERANGE, XATTR_CREATE/REPLACE', async () => {
    await sh(`echo x > ${mnt}/xa`);
    const r = await py<Record<string, unknown>>(code, `${mnt}/xa`);
    expect(r).toEqual({
      get: 'blue-green',
      empty: '',
      list: ['user.color', 'user.empty'],
      missing: 61, // ENODATA
      probe: 10,
      small: [-1, 34], // ERANGE
      exact: [10, 'blue-green'],
      listprobe: 'user.color\0user.empty\0'.length,
      listsmall: [-1, 34],
      create_existing: 17, // EEXIST, decided by the filesystem: the flag reached it
      replace_missing: 61,
      replaced: 'red',
      remove_missing: 61,
      after: ['user.color'],
    });
    expect((await srv.stats()).lastSetxattr).toEqual({ name: 'user.color', flags: 2, size: 3 });
  });
});

describe('xattr shortcuts', () => {
  // The kernel asks for security.capability before every write, to drop it as a write must.
  const capability = `import os, sys, struct, json
f = sys.argv[1]
out = {}
try:
    os.getxattr(f, 'security.capability')
except OSError as e:
    out['before'] = e.errno
# VFS_CAP_REVISION_2, permitted CAP_NET_BIND_SERVICE
os.setxattr(f, 'security.capability', struct.pack('<5I', 0x02000000, 1 << 10, 0, 0, 0))
out['set'] = 'security.capability' in os.listxattr(f)
with open(f, 'r+b') as w:
    w.write(b'x')
out['afterWrite'] = 'security.capability' in os.listxattr(f)
print(json.dumps(out))`;

  const gets = async (s: Server, name: string) => (await s.stats()).xattrGets[name] ?? 0;

  test('without shortcuts every write and every ls -l entry asks the filesystem', async () => {
    const before = await gets(srv, 'security.capability');
    await sh(`dd if=/dev/zero of=${mnt}/capw bs=1M count=4 conv=fsync status=none`);
    expect((await gets(srv, 'security.capability')) - before).toBeGreaterThanOrEqual(4);
    const acl = await gets(srv, 'system.posix_acl_access');
    await sh(`ls -l ${mnt} > /dev/null && ls -l ${mnt} > /dev/null`);
    expect(await gets(srv, 'system.posix_acl_access')).toBeGreaterThan(acl);
  });

  test('an absent name is answered ENODATA by the binding until it is set; a write then drops the capability', async () => {
    const cap = await startServer('test/fuse/memfs.ts', path.join(work, 'cap'), [
      JSON.stringify({ absentXattrs: ['security.capability'] }),
    ]);
    try {
      await sh(`dd if=/dev/zero of=${cap.mnt}/f bs=1M count=4 conv=fsync status=none`);
      expect(await gets(cap, 'security.capability')).toBe(0);
      const r = await py<Record<string, unknown>>(capability, `${cap.mnt}/f`);
      // ENODATA (61) first; once set, the kernel finds it before the write and removes it.
      expect(r).toEqual({ before: 61, set: true, afterWrite: false });
      expect(await gets(cap, 'security.capability')).toBeGreaterThan(0);
    } finally {
      expect(await cap.stop()).toBe(0);
    }
  });

  test('an unsupported name is answered EOPNOTSUPP by the binding, always', async () => {
    const acl = await startServer('test/fuse/memfs.ts', path.join(work, 'acl'), [
      JSON.stringify({ unsupportedXattrs: ['system.posix_acl_access'] }),
    ]);
    try {
      await sh(`touch ${acl.mnt}/f && ls -l ${acl.mnt} > /dev/null`);
      const r = await py<number[]>(
        `import os, sys, json
out = []
for name in ('system.posix_acl_access', 'user.other'):
    try:
        os.getxattr(sys.argv[1], name); out.append(0)
    except OSError as e:
        out.append(e.errno)
print(json.dumps(out))`,
        `${acl.mnt}/f`,
      );
      expect(r).toEqual([95, 61]); // EOPNOTSUPP from the binding; ENODATA from the filesystem
      expect(await gets(acl, 'system.posix_acl_access')).toBe(0);
      expect(await gets(acl, 'user.other')).toBe(1);
    } finally {
      expect(await acl.stop()).toBe(0);
    }
  });
});

describe('attribute cache', () => {
  const asked = async (s: Server) => {
    const st = await s.stats();
    return st.getattrs + st.fgetattrs;
  };
  // Five stats, then eight 1 MiB reads of an open file (the kernel checks the attributes before
  // each read: auto_inval_data with attr_timeout 0).
  const statsAndReads = `import os, sys
f = sys.argv[1]
for _ in range(5): os.stat(f)
fd = os.open(f, os.O_RDONLY)
for i in range(8): os.pread(fd, 1 << 20, i << 20)
os.close(fd)
print(1)`;

  test('an unchanged file is answered by the binding: stats and reads ask the filesystem at most twice', async () => {
    const f = `${mnt}/cached`;
    await sh(`head -c 8388608 /dev/zero > ${f} && stat ${f} > /dev/null`);
    const before = await asked(srv);
    await py(statsAndReads, f);
    // The open counts as a change: its first getattr asks once, the rest come from the binding.
    expect((await asked(srv)) - before).toBeLessThanOrEqual(2);
  });

  test('without it, each of them asks', async () => {
    const nc = await startServer('test/fuse/memfs.ts', path.join(work, 'nocache'), [JSON.stringify({ attrCache: false })]);
    try {
      const f = `${nc.mnt}/f`;
      await sh(`head -c 8388608 /dev/zero > ${f} && stat ${f} > /dev/null`);
      const before = await asked(nc);
      await py(statsAndReads, f);
      expect((await asked(nc)) - before).toBeGreaterThanOrEqual(13);
    } finally {
      expect(await nc.stop()).toBe(0);
    }
  });

  test('any change empties it: a write, a chmod through another name, a rename, a change elsewhere', async () => {
    const d = `${mnt}/ac`;
    const out = await sh(
      `mkdir ${d} && cd ${d} && echo abc > f && ln f g && stat -c '%s %a %h' f g && ` +
        `echo abcdef >> g && stat -c '%s' f && chmod 600 g && stat -c '%a' f && ` +
        `mv g h && stat -c '%h' f && touch other && stat -c '%s %h' f && rm h && stat -c '%h' f`,
    );
    expect(out.trim().split('\n')).toEqual(['4 644 2', '4 644 2', '11', '600', '2', '11 2', '1']);
    const before = (await srv.stats()).getattrs;
    await sh(`touch ${d}/elsewhere && stat ${d}/f > /dev/null`);
    expect((await srv.stats()).getattrs).toBeGreaterThan(before); // asked again after a change
  });
});

describe('names', () => {
  test('hard links: a chmod through one name shows through the other at once, nlink 2, one inode', async () => {
    await sh(`echo data > ${mnt}/a`);
    await sh(`stat ${mnt}/a > /dev/null`); // prime every cache there is
    const out = await sh(
      `cd ${mnt} && ln a b && chmod 600 b && stat -c '%a %h %i' a && stat -c '%a %h %i' b && ` +
        `chmod 640 a && stat -c '%a' b && rm b && stat -c '%h' a`,
    );
    const [la, lb, mb, nl] = out.trim().split('\n');
    const [modeA, nlinkA, inoA] = la.split(' ');
    expect([modeA, nlinkA]).toEqual(['600', '2']);
    expect(lb.split(' ')).toEqual(['600', '2', inoA]);
    expect(mb).toBe('640');
    expect(nl).toBe('1');
  });

  test('an open file that was unlinked stays usable; fstat says nlink 0 (libfuse hides it until release)', async () => {
    const before = (await srv.stats()).fgetattrs;
    const r = await py<Record<string, unknown>>(
      `import os, sys, json
d = sys.argv[1]
fd = os.open(d + '/gone', os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, b'still here')
os.unlink(d + '/gone')
st = os.fstat(fd)
out = {'exists': os.path.exists(d + '/gone'), 'size': st.st_size, 'nlink': st.st_nlink}
out['end'] = os.lseek(fd, 0, os.SEEK_END)
os.ftruncate(fd, 5)
out['size2'] = os.fstat(fd).st_size
out['data'] = os.pread(fd, 100, 0).decode()
out['hidden_while_open'] = len([n for n in os.listdir(d) if n.startswith('.fuse_hidden')])
os.close(fd)
import time
for _ in range(100):  # the kernel sends RELEASE after close(2) returns
    out['hidden_after'] = len([n for n in os.listdir(d) if n.startswith('.fuse_hidden')])
    if out['hidden_after'] == 0: break
    time.sleep(0.02)
print(json.dumps(out))`,
      mnt,
    );
    expect(r).toEqual({
      exists: false,
      size: 10,
      nlink: 0,
      end: 10,
      size2: 5,
      data: 'still',
      hidden_while_open: 1,
      hidden_after: 0,
    });
    expect((await srv.stats()).fgetattrs).toBeGreaterThan(before); // lseek(SEEK_END) asks by handle
  });

  test('with hardRemove, an unlinked open file has no name at all and works by handle (path "")', async () => {
    const hr = await startServer('test/fuse/memfs.ts', path.join(work, 'hr'), [JSON.stringify({ hardRemove: true })]);
    try {
      const r = await py<Record<string, unknown>>(
        `import os, sys, json
d = sys.argv[1]
fd = os.open(d + '/gone', os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, b'still here')
os.unlink(d + '/gone')
out = {'names': os.listdir(d)}
os.pwrite(fd, b'HERE', 6)
os.ftruncate(fd, 8)
out['end'] = os.lseek(fd, 0, os.SEEK_END)
out['data'] = os.pread(fd, 100, 0).decode()
os.close(fd)
os.mkdir(d + '/dir')
fd = os.open(d + '/dir/f', os.O_CREAT | os.O_RDWR, 0o644)
os.unlink(d + '/dir/f')
os.rmdir(d + '/dir')
os.close(fd)
out['after'] = os.listdir(d)
print(json.dumps(out))`,
        hr.mnt,
      );
      expect(r).toEqual({ names: [], end: 8, data: 'still HE', after: [] });
      const st = await hr.stats();
      expect(st.ftruncates).toContainEqual(expect.objectContaining({ path: '', size: 8 }));
      expect(st.fgetattrs).toBeGreaterThan(0);
    } finally {
      expect(await hr.stop()).toBe(0);
    }
  });

  test('create gets the mode, the open flags and the caller', async () => {
    const r = await py<{ mode: number }>(
      `import os, sys, json
os.umask(0)
fd = os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_APPEND, 0o640)
os.close(fd)
print(json.dumps({'mode': os.stat(sys.argv[1]).st_mode & 0o7777}))`,
      `${mnt}/created`,
    );
    expect(r.mode).toBe(0o640);
    const c = (await srv.stats()).lastCreate!;
    expect(c.path).toBe('/created');
    expect(c.mode & 0o7777).toBe(0o640);
    expect(c.flags & 3).toBe(fs.constants.O_WRONLY);
    expect(c.flags & fs.constants.O_APPEND).toBe(fs.constants.O_APPEND);
    expect([c.uid, c.gid]).toEqual([0, 0]);
    // Another user, through allow_other (memfs checks no permissions): its uid and gid arrive.
    fs.chmodSync(work, 0o755); // mkdtemp's 0700 would stop the other user on the way in
    const other = await startServer('test/fuse/memfs.ts', path.join(work, 'other'), [JSON.stringify({ allowOther: true })]);
    try {
      await sh(`setpriv --reuid=65534 --regid=65533 --clear-groups touch ${other.mnt}/mine`);
      expect((await other.stats()).lastCreate).toEqual(expect.objectContaining({ path: '/mine', uid: 65534, gid: 65533 }));
    } finally {
      expect(await other.stop()).toBe(0);
    }
  });

  test('a chmod that answers with the new attributes costs no getattr; a utimens that does not costs one', async () => {
    // The calls come from this process, back to back: a python started per call took over a second
    // on a loaded machine, the kernel's entry for the name (1 s) expired, and the new lookup costs a
    // getattr of its own.
    const f = `${mnt}/ch`;
    fs.writeFileSync(f, '');
    fs.statSync(f);
    const before = (await srv.stats()).getattrs;
    fs.chmodSync(f, 0o600); // the name is looked up already
    const afterChmod = (await srv.stats()).getattrs;
    expect(afterChmod - before).toBe(0); // memfs's chmod answers with the attributes
    fs.utimesSync(f, 1, 2);
    expect((await srv.stats()).getattrs - afterChmod).toBe(1); // its utimens does not: libfuse asks
    expect((await sh(`stat -c '%a %Y' ${f}`)).trim()).toBe('600 2');
  });

  test('chown of the group only leaves the owner (-1 reaches the filesystem)', async () => {
    await sh(`touch ${mnt}/own && chown 123:456 ${mnt}/own && chown :789 ${mnt}/own`);
    expect((await sh(`stat -c '%u %g' ${mnt}/own`)).trim()).toBe('123 789');
    expect((await srv.stats()).lastChown).toEqual({ uid: -1, gid: 789 });
  });

  test('mkdir, rename, symlink, readlink, mknod, readdir, rmdir', async () => {
    const out = await sh(
      `cd ${mnt} && mkdir -m 750 d && stat -c %a d && echo hi > d/f && mv d/f d/g && ` +
        `ln -s d/g sl && readlink sl && cat sl && mkfifo d/fifo && stat -c %F d/fifo && echo $(ls d) && ` +
        `(rmdir d 2>&1 || true) && rm d/g d/fifo && rmdir d && ls`,
    );
    const lines = out.trim().split('\n');
    expect(lines.slice(0, 5)).toEqual(['750', 'd/g', 'hi', 'fifo', 'fifo g']);
    expect(lines[5]).toMatch(/not empty/i);
    expect(lines).not.toContain('d');
  });

  test('statfs passes 64-bit block and inode counts', async () => {
    expect((await sh(`stat -f -c '%S %b %a %c %d %l' ${mnt}`)).trim()).toBe(
      `4096 ${2 ** 33} ${2 ** 33 - 7} ${2 ** 32 + 5} ${2 ** 32 + 1} 255`,
    );
  });
});
