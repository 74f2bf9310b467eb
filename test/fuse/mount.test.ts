/**
 * mountFuse's contract: clear errors before anything is mounted (missing mountpoint, a file,
 * a busy mountpoint, no usable /dev/fuse), options that reach the kernel, and unmount() that is
 * plain (EBUSY while in use), idempotent, and quiet after an external unmount.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkFuseAvailable, FUSE_DEFAULTS, FuseMountError, mountFuse } from '../../mount/fuse';
import { findMount, listFuseMounts } from '../../mount/teardown';
import { ROOT, run, sh, startServer, stopAllServers, tmpdir } from './harness';

let work: string;

beforeAll(() => {
  work = tmpdir('mount');
  fs.chmodSync(work, 0o755);
});

afterAll(async () => {
  try {
    await stopAllServers();
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
});

async function mountError(p: Promise<unknown>): Promise<FuseMountError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(FuseMountError);
    return e as FuseMountError;
  }
  throw new Error('mountFuse resolved, expected an error');
}

describe('errors before mounting', () => {
  test('a missing mountpoint', async () => {
    const e = await mountError(mountFuse(path.join(work, 'nope', 'mnt'), {}));
    expect(e.code).toBe('MOUNTPOINT_MISSING');
    expect(e.message).toContain('does not exist');
  });

  test('a mountpoint that is a file', async () => {
    fs.writeFileSync(path.join(work, 'file'), '');
    const e = await mountError(mountFuse(path.join(work, 'file'), {}));
    expect(e.code).toBe('MOUNTPOINT_NOT_DIR');
  });

  test('a mountpoint with files in it (unless the nonempty option is given)', async () => {
    const dir = path.join(work, 'full');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'precious'), 'x');
    const e = await mountError(mountFuse(dir, {}));
    expect(e.code).toBe('MOUNTPOINT_NOT_EMPTY');
    const srv = await startServer('test/fuse/memfs.ts', dir, [JSON.stringify({ options: ['nonempty'] })]);
    try {
      expect((await sh(`ls -A ${dir}`)).trim()).toBe(''); // the mount covers the file
    } finally {
      await srv.stop();
    }
    expect(fs.readFileSync(path.join(dir, 'precious'), 'utf8')).toBe('x');
  });

  test('a mountpoint that already has a mount (found in /proc, the mount is not touched)', async () => {
    const srv = await startServer('test/fuse/memfs.ts', path.join(work, 'busy'));
    try {
      await srv.request({ cmd: 'hang', path: '*' }); // any stat of it would now hang this test
      const e = await mountError(mountFuse(srv.mnt, {}));
      expect(e.code).toBe('MOUNTPOINT_BUSY');
      expect(e.message).toContain('isgfs-memfs');
    } finally {
      await srv.stop();
    }
    expect(findMount(srv.mnt)).toBeUndefined();
  });

  test('no FUSE device', () => {
    expect(() => checkFuseAvailable(path.join(work, 'no-such-device'))).toThrow(
      expect.objectContaining({ code: 'FUSE_UNAVAILABLE', message: expect.stringContaining('modprobe fuse') }),
    );
  });

  test('a FUSE device this user may not open', async () => {
    const dev = path.join(work, 'fuse-device');
    fs.writeFileSync(dev, '');
    fs.chmodSync(dev, 0o600); // owned by root: closed to nobody, as /dev/fuse often is
    const script = `try { require(${JSON.stringify(path.join(ROOT, 'mount/fuse.ts'))}).checkFuseAvailable(${JSON.stringify(dev)}); console.log('OPENED') }
      catch (e) { console.log(e.code + ': ' + e.message) }`;
    const out = await new Promise<string>((resolve) => {
      const p = spawn(process.execPath, ['-r', path.join(__dirname, 'ts-register.js'), '-e', script], {
        uid: 65534,
        gid: 65534,
        cwd: '/',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let s = '';
      p.stdout.on('data', (d: Buffer) => {
        s += d.toString();
      });
      p.stderr.on('data', (d: Buffer) => {
        s += d.toString();
      });
      p.on('exit', () => resolve(s));
    });
    expect(out).toMatch(new RegExp(`^FUSE_UNAVAILABLE: FUSE is unavailable: no permission to open ${dev} \\(EACCES\\)`));
  });
});

describe('options and unmount', () => {
  test('fsname, subtype and raw options reach the kernel; max_read is FUSE_DEFAULTS', async () => {
    const srv = await startServer('test/fuse/memfs.ts', path.join(work, 'ro'), [JSON.stringify({ subtype: 'memtest', options: ['ro'] })]);
    try {
      const m = listFuseMounts().find((x) => x.mountpoint === srv.mnt);
      expect(m).toEqual(expect.objectContaining({ source: 'isgfs-memfs', fstype: 'fuse.memtest' }));
      expect(m!.options.split(',')).toEqual(expect.arrayContaining(['ro', `max_read=${FUSE_DEFAULTS.maxRead}`]));
      const r = await run('touch', [`${srv.mnt}/x`]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('Read-only file system');
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  });

  test('unmount() is plain: while the mount is in use it fails (the server then detaches)', async () => {
    const srv = await startServer('test/fuse/memfs.ts', path.join(work, 'inuse'));
    const holder = spawn('sleep', ['60'], { cwd: srv.mnt, stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 200));
      srv.proc.kill('SIGTERM');
      const code = await srv.exited;
      expect(code).toBe(3); // memfs: unmount() rejected (EBUSY), forceUnmount used instead
      expect(srv.stderr()).toMatch(/unmount failed: fusermount: failed to unmount .*: Device or resource busy/);
      expect(findMount(srv.mnt)).toBeUndefined();
    } finally {
      holder.kill('SIGKILL');
      await srv.stop();
    }
  });

  test('after an external fusermount -u, unmount() resolves and the server exits 0', async () => {
    const srv = await startServer('test/fuse/memfs.ts', path.join(work, 'ext'));
    try {
      await sh(`echo hi > ${srv.mnt}/f && fusermount -u ${srv.mnt}`);
      expect(findMount(srv.mnt)).toBeUndefined();
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  });
});
