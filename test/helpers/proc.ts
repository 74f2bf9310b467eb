/** Commands run from tests in child processes (never blocking the jest process, which may serve a mount). */
import { ChildProcess, execFile, spawn } from 'node:child_process';

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** ms; 0: none. */
  timeout?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Runs a command; never rejects: code is its exit status, -1 when it did not exit on its own. */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { timeout: opts.timeout ?? 60_000, maxBuffer: 64 * 1024 * 1024, env: opts.env, cwd: opts.cwd },
      (e, stdout, stderr) => {
        const code = e ? (typeof (e as { code?: unknown }).code === 'number' ? (e as { code: number }).code : -1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

/** bash -c cmd; its stdout, or a rejection with the command, exit code and output when it fails. */
export async function sh(cmd: string, opts: RunOptions = {}): Promise<string> {
  const r = await run('bash', ['-c', cmd], opts);
  if (r.code !== 0) throw new Error(`${cmd} -> ${r.code}\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

export interface Spawned {
  proc: ChildProcess;
  /** Its stderr so far. */
  stderr(): string;
  /** Its exit code (null when killed by a signal). */
  exited: Promise<number | null>;
}

/** Starts a long-running process (a FUSE server, say), keeping its stderr and discarding its stdout. */
export function spawnKeepingStderr(cmd: string, args: string[], ipc = false): Spawned {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe', ...(ipc ? ['ipc' as const] : [])] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  proc.stdout!.on('data', () => undefined);
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, stderr: () => err, exited };
}
