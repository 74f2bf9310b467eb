/**
 * The end of a FUSE server's life, from both sides. Inside the server (the daemon, mount/daemon.ts,
 * and the test and benchmark filesystems): wait for SIGINT, SIGTERM or an external unmount, then
 * unmount, detaching lazily when a plain unmount fails. From a parent that spawned one (tests,
 * the benchmark): wait until its mount is there, and stop it (SIGTERM, SIGKILL after a while) and
 * clear its mount, whatever state it is in.
 */
import type { ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import type { MountedFuse } from './fuse';
import { forceUnmount, listFuseMounts } from './teardown';

/** True when a FUSE mount is on mountpoint (read from /proc: the mountpoint is never touched). */
export function isFuseMounted(mountpoint: string): boolean {
  const mp = path.resolve(mountpoint);
  return listFuseMounts().some((m) => m.mountpoint === mp);
}

export type StopReason = 'SIGINT' | 'SIGTERM' | 'external unmount';

/**
 * Resolves with the first of SIGINT, SIGTERM, or the mount on mountpoint gone (someone ran
 * fusermount -u: nothing more will come, so the server finishes as if asked to; checked every
 * second). The signals stay handled afterwards, so a second one does not kill the process while
 * it finishes.
 */
export function stopRequested(mountpoint: string): Promise<StopReason> {
  return new Promise<StopReason>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
    const t = setInterval(() => {
      if (!isFuseMounted(mountpoint)) {
        clearInterval(t);
        resolve('external unmount');
      }
    }, 1000);
    t.unref();
  });
}

/**
 * Unmounts; when the plain unmount fails (busy, say), detaches the mount lazily with forceUnmount
 * and returns the error of the plain unmount. Undefined after a clean unmount.
 */
export async function unmountOrDetach(mounted: MountedFuse, mountpoint: string): Promise<Error | undefined> {
  try {
    await mounted.unmount();
    return undefined;
  } catch (e) {
    await forceUnmount(mountpoint);
    return e as Error;
  }
}

const running = (proc: ChildProcess) => proc.exitCode === null && proc.signalCode === null;

/**
 * Waits until a FUSE mount is on mountpoint and `ready()` (when given) holds, while the server
 * process runs; rejects when it exits first or after timeoutMs, with `detail()` (its stderr, say)
 * in the message.
 */
export async function waitMounted(
  mountpoint: string,
  proc: ChildProcess,
  o: { timeoutMs?: number; ready?: () => boolean; detail?: () => string } = {},
): Promise<void> {
  const deadline = Date.now() + (o.timeoutMs ?? 30_000);
  const what = () => `mount of ${mountpoint}`;
  while (!(isFuseMounted(mountpoint) && (o.ready?.() ?? true))) {
    if (!running(proc)) throw new Error(`${what()}: the server exited (${proc.exitCode ?? proc.signalCode}): ${o.detail?.() ?? ''}`);
    if (Date.now() > deadline) throw new Error(`${what()}: timed out: ${o.detail?.() ?? ''}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Stops a server process and clears its mount: SIGTERM, up to timeoutMs for it to exit, then
 * SIGKILL; then forceUnmount of mountpoint. Its exit code; null when it had to be killed.
 */
export async function stopServer(proc: ChildProcess, mountpoint: string, timeoutMs: number): Promise<number | null> {
  let code: number | null | 'timeout' = proc.exitCode;
  if (running(proc)) {
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
    proc.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    code = await Promise.race([
      exited,
      new Promise<'timeout'>((r) => {
        timer = setTimeout(() => r('timeout'), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (code === 'timeout') proc.kill('SIGKILL');
  }
  await forceUnmount(mountpoint);
  return code === 'timeout' ? null : code;
}
