/**
 * Runs the real daemon (`bin/isg mount`, from the build) in a child process: a FUSE server inside
 * the jest process would deadlock as soon as the test touches the mount with a sync call.
 * Every mount is torn down in afterAll even when a test fails (stopAll).
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { forceUnmount, listFuseMounts } from '../../mount/teardown';

export const ROOT = path.resolve(__dirname, '../..');
export const ISG = path.join(ROOT, 'bin/isg');
const run = promisify(execFile);

export interface Mounted {
  dataDir: string;
  mnt: string;
  proc: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

const live = new Set<Mounted>();

export function isMounted(mnt: string): boolean {
  return listFuseMounts().some((m) => m.mountpoint === path.resolve(mnt));
}

export async function mount(dataDir: string, mnt: string, args: string[] = []): Promise<Mounted> {
  fs.mkdirSync(mnt, { recursive: true });
  const proc = spawn(ISG, ['mount', dataDir, mnt, '--log-level', 'warn', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  proc.stdout!.on('data', () => undefined);
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const m: Mounted = { dataDir, mnt: path.resolve(mnt), proc, stderr: () => err, exited };
  live.add(m);
  const deadline = Date.now() + 30_000;
  let gone = false;
  void exited.then(() => { gone = true; });
  while (!isMounted(mnt)) {
    if (gone) throw new Error(`isg mount exited early: ${err}`);
    if (Date.now() > deadline) throw new Error(`mount did not appear in 30 s: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return m;
}

/** `isg umount`: returns when the daemon has exited; resolves to its exit code. */
export async function umount(m: Mounted): Promise<number | null> {
  await run(process.execPath, [ISG, 'umount', m.mnt]);
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
    m.proc.kill('SIGTERM');
    await Promise.race([m.exited, new Promise((r) => setTimeout(r, 15_000).unref())]);
    if (m.proc.exitCode === null) m.proc.kill('SIGKILL');
    await forceUnmount(m.mnt).catch(() => undefined);
    live.delete(m);
  }
}

/** Runs a command; rejects with its stderr on failure. */
export async function sh(cmd: string, opts: { cwd?: string; timeout?: number } = {}): Promise<string> {
  try {
    const { stdout } = await run('bash', ['-c', cmd], { cwd: opts.cwd, timeout: opts.timeout ?? 300_000, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (e) {
    const x = e as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${cmd}\n${x.message}\n${x.stderr ?? ''}${x.stdout ?? ''}`);
  }
}

export async function isg(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [ISG, ...args], { maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : 1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}
