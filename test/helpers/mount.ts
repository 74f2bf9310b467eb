/**
 * Runs the real daemon (`bin/isg mount`, from the build) in a child process: a FUSE server inside
 * the jest process would deadlock as soon as the test touches the mount with a sync call.
 * Every mount is torn down in afterAll even when a test fails (stopAll).
 */
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isFuseMounted, stopServer, waitMounted } from '../../mount/stop';
import { forceUnmount } from '../../mount/teardown';
import { run, sh as shell, spawnKeepingStderr } from './proc';
import { tmpDir } from './tmp';

export const ROOT = path.resolve(__dirname, '../..');
export const ISG = path.join(ROOT, 'bin/isg');

export interface Mounted {
  dataDir: string;
  mnt: string;
  proc: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

const live = new Set<Mounted>();

export const isMounted = isFuseMounted;

/**
 * For a describe block: a fresh directory `t` with the paths of a repository (`data`) and a
 * mountpoint (`mnt`) in it; afterAll stops every mount, then runs `also` and removes `t`.
 */
export function mountDirs(also?: () => Promise<void>): { t: { dir: string }; data: string; mnt: string } {
  const t = tmpDir();
  afterAll(async () => {
    await stopAll();
    await also?.();
    t.cleanup();
  });
  return { t, data: path.join(t.dir, 'data'), mnt: path.join(t.dir, 'mnt') };
}

export async function mount(dataDir: string, mnt: string, args: string[] = []): Promise<Mounted> {
  fs.mkdirSync(mnt, { recursive: true });
  const { proc, stderr, exited } = spawnKeepingStderr(ISG, ['mount', dataDir, mnt, '--log-level', 'warn', ...args]);
  const m: Mounted = { dataDir, mnt: path.resolve(mnt), proc, stderr, exited };
  live.add(m);
  await waitMounted(mnt, proc, { detail: stderr });
  return m;
}

/** `isg umount`: returns when the daemon has exited; resolves to its exit code. */
export async function umount(m: Mounted): Promise<number | null> {
  const r = await run(process.execPath, [ISG, 'umount', m.mnt], { timeout: 0 });
  if (r.code !== 0) throw new Error(`isg umount ${m.mnt} -> ${r.code}\n${r.stderr}`);
  const code = await m.exited;
  live.delete(m);
  return code;
}

/** kill -9 the daemon and clear the dead mount it leaves. */
export async function kill9(m: Mounted): Promise<void> {
  m.proc.kill('SIGKILL');
  await m.exited;
  await forceUnmount(m.mnt);
  live.delete(m);
}

export async function stopAll(): Promise<void> {
  for (const m of [...live]) {
    await stopServer(m.proc, m.mnt, 15_000).catch(() => undefined);
    live.delete(m);
  }
}

/** Runs a command; rejects with its stderr on failure. */
export function sh(cmd: string, opts: { cwd?: string; timeout?: number } = {}): Promise<string> {
  return shell(cmd, { cwd: opts.cwd, timeout: opts.timeout ?? 300_000 });
}

/** Runs bin/isg with args; never rejects. */
export function isg(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(process.execPath, [ISG, ...args], { timeout: 0 });
}
