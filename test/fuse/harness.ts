/**
 * Runs the FUSE test servers (test/fuse/memfs.ts, bench/noopfs.ts) in child processes, straight
 * from the TypeScript sources, and tears every mount down even when a test fails.
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { findMount, forceUnmount } from '../../mount/teardown';
import type { MemfsStats } from './memfs';

export const ROOT = path.resolve(__dirname, '../..');
const REGISTER = path.join(__dirname, 'ts-register.js');

export function tmpdir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `isgfs-${prefix}-`));
}

export interface Server {
  mnt: string;
  proc: ChildProcess;
  exited: Promise<number | null>;
  stderr(): string;
  request<T>(msg: object): Promise<T>;
  stats(): Promise<MemfsStats>;
  stop(): Promise<number | null>;
}

const live = new Set<Server>();

async function waitFor(cond: () => boolean, ms: number, what: string, proc: ChildProcess, err: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`${what}: server exited (${proc.exitCode ?? proc.signalCode}): ${err()}`);
    if (Date.now() > deadline) throw new Error(`${what}: timed out: ${err()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Starts a server script (a .ts file, given relative to the repository) on mnt. */
export async function startServer(script: string, mnt: string, args: string[] = []): Promise<Server> {
  fs.mkdirSync(mnt, { recursive: true });
  const proc = spawn(process.execPath, ['-r', REGISTER, path.join(ROOT, script), mnt, ...args], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  proc.stdout!.on('data', () => undefined);
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const replies: ((m: unknown) => void)[] = [];
  let ready = false;
  proc.on('message', (m: { ready?: boolean }) => {
    if (m && m.ready) ready = true;
    else replies.shift()?.(m);
  });
  const server: Server = {
    mnt: path.resolve(mnt),
    proc,
    exited,
    stderr: () => err,
    request<T>(msg: object): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        replies.push((m) => resolve(m as T));
        proc.send(msg, (e) => { if (e) reject(e); });
      });
    },
    async stats() {
      return (await server.request<{ stats: MemfsStats }>({ cmd: 'stats' })).stats;
    },
    async stop() {
      live.delete(server);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([exited, new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), 15_000); })]);
      clearTimeout(timer);
      if (code === 'timeout') proc.kill('SIGKILL');
      await forceUnmount(server.mnt);
      return code === 'timeout' ? null : code;
    },
  };
  live.add(server);
  const isIpc = script.endsWith('memfs.ts');
  await waitFor(() => (isIpc ? ready : !!findMount(mnt)), 30_000, `mount of ${mnt}`, proc, () => err);
  if (!findMount(mnt)) throw new Error(`${mnt} is not in /proc/self/mountinfo after ready`);
  return server;
}

/** For afterAll: stops every server still running and clears its mount. */
export async function stopAllServers(): Promise<void> {
  for (const s of [...live]) await s.stop().catch(() => undefined);
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command (in a child process: never blocks this one); never rejects. */
export function run(cmd: string, args: string[], opts: { timeout?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: opts.timeout ?? 60_000, maxBuffer: 16 * 1024 * 1024, env: opts.env, cwd: opts.cwd }, (e, stdout, stderr) => {
      const code = e ? (typeof (e as { code?: unknown }).code === 'number' ? (e as { code: number }).code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** bash -c cmd; rejects (with the output) when it fails. */
export async function sh(cmd: string, opts: { timeout?: number; cwd?: string } = {}): Promise<string> {
  const r = await run('bash', ['-c', cmd], { ...opts, env: { ...process.env, TZ: 'UTC', LC_ALL: 'C' } });
  if (r.code !== 0) throw new Error(`${cmd} -> ${r.code}\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** python3 -c code with args; its stdout parsed as JSON. */
export async function py<T = unknown>(code: string, ...args: string[]): Promise<T> {
  const r = await run('python3', ['-c', code, ...args], { timeout: 60_000 });
  if (r.code !== 0) throw new Error(`python3 failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}
