/**
 * The write lock (src/repo/repository.ts): flock(2) through the addon. Holders run in child
 * processes from the build (dist/), as the daemon does.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { acquireLock, initRepository, readLock, repoPaths } from '../../src/repo/repository';
import { nativeLoaded } from '../../src/native';
import { ROOT } from '../helpers/mount';
import { tmpDir } from '../helpers/tmp';

const REPO_JS = path.join(ROOT, 'dist/src/repo/repository.js');

/** A child that takes the lock at `at` (ms since the epoch), prints got/busy, and holds it for holdMs. */
function holder(data: string, o: { at?: number; holdMs?: number; env?: NodeJS.ProcessEnv } = {}) {
  const code = `
    const { acquireLock } = require(${JSON.stringify(REPO_JS)});
    const wait = ${o.at ?? 0} - Date.now();
    setTimeout(() => {
      let unlock;
      try { unlock = acquireLock(${JSON.stringify(data)}, '/mnt/test'); console.log('got'); }
      catch (e) { console.log('busy ' + e.message); }
      setTimeout(() => { unlock?.(); process.exit(0); }, ${o.holdMs ?? 1000});
    }, Math.max(0, wait));`;
  const proc = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...o.env } });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const line = new Promise<string>((resolve) => {
    const check = () => (out.includes('\n') ? resolve(out.trim()) : undefined);
    proc.stdout.on('data', check);
    proc.on('exit', () => resolve(out.trim()));
  });
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  return { proc, line, exited };
}

(nativeLoaded ? describe : describe.skip)('the write lock (flock)', () => {
  let t: ReturnType<typeof tmpDir>;
  let data: string;
  beforeAll(async () => {
    t = tmpDir();
    data = path.join(t.dir, 'data');
    await initRepository(data);
  });
  afterAll(() => t.cleanup());

  test('a lock file naming a live but unrelated pid (a pid reused after a reboot) does not block', () => {
    const file = repoPaths(data).lock;
    for (const content of [
      { pid: 1, started: 'yesterday' },
      { pid: process.ppid, started: 'yesterday', lock: 'flock' },
    ]) {
      fs.writeFileSync(file, JSON.stringify(content));
      expect(readLock(data)).toBeUndefined();
      const unlock = acquireLock(data, '/mnt/x');
      expect(readLock(data)).toMatchObject({ pid: process.pid, mountpoint: '/mnt/x' });
      unlock();
      expect(fs.existsSync(file)).toBe(false);
    }
  });

  test('a stale lock file of a dead process does not block', async () => {
    const dead = holder(data, { holdMs: 0 });
    expect(await dead.line).toBe('got');
    await dead.exited;
    fs.writeFileSync(repoPaths(data).lock, JSON.stringify({ pid: dead.proc.pid, started: 'before' }));
    acquireLock(data)();
  });

  test('processes racing for the lock: exactly one gets it, the others name it', async () => {
    for (let round = 0; round < 2; round++) {
      // each round starts over a stale file, the case where pid files let two writers in
      fs.writeFileSync(repoPaths(data).lock, JSON.stringify({ pid: 1, started: 'before' }));
      const at = Date.now() + 1500;
      const racers = Array.from({ length: 5 }, () => holder(data, { at, holdMs: 60_000 })); // held until killed
      const lines = await Promise.all(racers.map((r) => r.line));
      expect(lines.filter((l) => l === 'got')).toHaveLength(1);
      const winner = racers[lines.indexOf('got')].proc.pid;
      for (const l of lines.filter((x) => x !== 'got')) expect(l).toContain(`already in use by pid ${winner} (mounted on /mnt/test)`);
      expect(() => acquireLock(data)).toThrow(`already in use by pid ${winner}`);
      for (const r of racers) r.proc.kill('SIGKILL');
      await Promise.all(racers.map((r) => r.exited));
      expect(readLock(data)).toBeUndefined();
    }
  }, 60_000);

  test('the lock is released when its holder is killed with SIGKILL', async () => {
    const h = holder(data, { holdMs: 60_000 });
    expect(await h.line).toBe('got');
    expect(readLock(data)).toMatchObject({ pid: h.proc.pid, mountpoint: '/mnt/test', lock: 'flock' });
    expect(() => acquireLock(data)).toThrow(/already in use by pid \d+ \(mounted on \/mnt\/test\)/);
    h.proc.kill('SIGKILL');
    await h.exited;
    expect(fs.existsSync(repoPaths(data).lock)).toBe(true); // left behind, but not held
    expect(readLock(data)).toBeUndefined();
    acquireLock(data)();
  });

  test('a holder without the addon (pid file only) is respected while it lives', async () => {
    const h = holder(data, { holdMs: 60_000, env: { ISGFS_NO_NATIVE: '1' } });
    expect(await h.line).toBe('got');
    expect(readLock(data)).toMatchObject({ pid: h.proc.pid, lock: 'pid' });
    expect(() => acquireLock(data)).toThrow(`already in use by pid ${h.proc.pid}`);
    h.proc.kill('SIGKILL');
    await h.exited;
    acquireLock(data)();
  });
});
