/**
 * Runs the FUSE test servers (test/fuse/memfs.ts, bench/noopfs.ts) in child processes, straight
 * from the TypeScript sources, and tears every mount down even when a test fails.
 */
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { stopServer, waitMounted } from '../../mount/stop';
import { run, sh as shell, RunOptions, spawnKeepingStderr } from '../helpers/proc';
import { tmpDir } from '../helpers/tmp';
import type { MemfsStats } from './memfs';

export { run } from '../helpers/proc';
export type { Run } from '../helpers/proc';

export const ROOT = path.resolve(__dirname, '../..');
const REGISTER = path.join(__dirname, 'ts-register.js');

export function tmpdir(prefix: string): string {
  return tmpDir(`isgfs-${prefix}-`).dir;
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

/** Starts a server script (a .ts file, given relative to the repository) on mnt. */
export async function startServer(script: string, mnt: string, args: string[] = []): Promise<Server> {
  fs.mkdirSync(mnt, { recursive: true });
  const { proc, stderr, exited } = spawnKeepingStderr(process.execPath, ['-r', REGISTER, path.join(ROOT, script), mnt, ...args], true);
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
    stderr,
    request<T>(msg: object): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        replies.push((m) => resolve(m as T));
        proc.send(msg, (e) => {
          if (e) reject(e);
        });
      });
    },
    async stats() {
      return (await server.request<{ stats: MemfsStats }>({ cmd: 'stats' })).stats;
    },
    async stop() {
      live.delete(server);
      return stopServer(proc, server.mnt, 15_000);
    },
  };
  live.add(server);
  const isIpc = script.endsWith('memfs.ts');
  await waitMounted(mnt, proc, { ready: () => !isIpc || ready, detail: stderr });
  return server;
}

/** For afterAll: stops every server still running and clears its mount. */
export async function stopAllServers(): Promise<void> {
  for (const s of [...live]) await s.stop().catch(() => undefined);
}

/** bash -c cmd in UTC and the C locale; rejects (with the output) when it fails. */
export function sh(cmd: string, opts: RunOptions = {}): Promise<string> {
  return shell(cmd, { ...opts, env: { ...process.env, TZ: 'UTC', LC_ALL: 'C' } });
}

/** python3 -c code with args; its stdout parsed as JSON. */
export async function py<T = unknown>(code: string, ...args: string[]): Promise<T> {
  const r = await run('python3', ['-c', code, ...args], { timeout: 60_000 });
  if (r.code !== 0) throw new Error(`python3 failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}
