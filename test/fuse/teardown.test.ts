/**
 * forceUnmount: clears a hung mount (aborting the connection so stuck processes come back), a dead
 * one (server killed with -9), a busy one, and is a no-op where nothing is mounted; listFuseMounts
 * and fuseConnectionId read /proc only.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findMount, forceUnmount, fuseConnectionId, listFuseMounts } from '../../mount/teardown';
import { run, startServer, stopAllServers, tmpdir } from './harness';

let work: string;

beforeAll(() => {
  work = tmpdir('teardown');
});

afterAll(async () => {
  try {
    await stopAllServers();
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
});

function exitOf(p: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) resolve(p.exitCode);
    else p.on('exit', (code) => resolve(code));
  });
}

test('listFuseMounts and fuseConnectionId describe a mount from /proc', async () => {
  const srv = await startServer('test/fuse/memfs.ts', path.join(work, 'list'));
  try {
    expect(listFuseMounts()).toContainEqual(expect.objectContaining({ mountpoint: srv.mnt, source: 'isgfs-memfs', fstype: 'fuse' }));
    const id = fuseConnectionId(srv.mnt);
    const [major, minor] = (await run('stat', ['-c', '%Hd %Ld', srv.mnt])).stdout.trim().split(' ').map(Number);
    expect(major).toBe(0);
    expect(id).toBe(minor);
    expect(fuseConnectionId(work)).toBeUndefined();
  } finally {
    await srv.stop();
  }
});

test('a hung mount: forceUnmount detaches it and aborts the waiting requests, without touching it', async () => {
  const srv = await startServer('test/fuse/memfs.ts', path.join(work, 'hung'));
  let stuck: ChildProcess | undefined;
  try {
    await run('bash', ['-c', `echo data > ${srv.mnt}/f`]);
    await srv.request({ cmd: 'hang', path: '*' }); // from now on no getattr is ever answered
    stuck = spawn('stat', [`${srv.mnt}/f`], { stdio: 'ignore' });
    const stuckExit = exitOf(stuck);
    await new Promise((r) => setTimeout(r, 500));
    expect(stuck.exitCode).toBeNull(); // really stuck in the filesystem
    const t0 = Date.now();
    await forceUnmount(srv.mnt, { graceMs: 200 });
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(findMount(srv.mnt)).toBeUndefined();
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      stuckExit,
      new Promise<'still stuck'>((r) => {
        timer = setTimeout(() => r('still stuck'), 10_000);
      }),
    ]);
    clearTimeout(timer);
    expect(code).not.toBe('still stuck');
    expect(code).not.toBe(0); // its request was aborted: ENOTCONN
  } finally {
    stuck?.kill('SIGKILL');
    expect(await srv.stop()).toBe(0); // the server notices the mount is gone and exits cleanly
  }
});

test('a dead mount (server killed with -9): forceUnmount clears it', async () => {
  const srv = await startServer('test/fuse/memfs.ts', path.join(work, 'dead'));
  try {
    srv.proc.kill('SIGKILL');
    await srv.exited;
    expect(findMount(srv.mnt)).toBeDefined(); // the kernel mount outlives its server
    const r = await run('ls', [srv.mnt]);
    expect(r.stderr).toContain('Transport endpoint is not connected');
    await forceUnmount(srv.mnt);
    expect(findMount(srv.mnt)).toBeUndefined();
    expect(fs.readdirSync(srv.mnt)).toEqual([]); // the plain directory again
  } finally {
    await srv.stop();
  }
});

test('a busy mount (a process has its cwd there) is detached lazily', async () => {
  const srv = await startServer('test/fuse/memfs.ts', path.join(work, 'busy'));
  const holder = spawn('sleep', ['60'], { cwd: srv.mnt, stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 200));
    await forceUnmount(srv.mnt);
    expect(findMount(srv.mnt)).toBeUndefined();
  } finally {
    holder.kill('SIGKILL');
    await srv.stop();
  }
});

test('nothing mounted: a no-op', async () => {
  await expect(forceUnmount(path.join(work, 'never-mounted'))).resolves.toBeUndefined();
  await expect(forceUnmount(work)).resolves.toBeUndefined();
});
