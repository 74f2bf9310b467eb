/**
 * Tests' handle on test/powerloss/lazyfs.ts: a filesystem that loses every write not yet fsynced
 * when the test cuts the power.
 *
 *   const lazy = await startLazyFs(backing, mnt);
 *   ... run a program on mnt (in a child process), kill -9 it ...
 *   await lazy.crash();            // or crashTorn(seed), crashApply(seqs)
 *   ... mnt now shows what reached the "disk": restart the program, check ...
 *   await lazy.stop();             // in finally/afterAll; stopAllLazyFs() clears any left
 *
 * Every crash unmounts the old mount (it answers EIO once crashed) and mounts a fresh lazyfs on the
 * same backing directory and mountpoint, so nothing the kernel cached of the old mount survives.
 * Stop the programs on the mount first: a process still inside the old mount gets EIO or ENOTCONN.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import { findMount, forceUnmount } from '../../mount/teardown';
import type { CrashReport, HeldOp, LazyStats } from './lazyfs';

export type { CrashReport, HeldOp, LazyStats };

const ROOT = path.resolve(__dirname, '../..');
const REGISTER = path.join(ROOT, 'test/fuse/ts-register.js');
const SCRIPT = path.join(__dirname, 'lazyfs.ts');

export interface LazyFsHandle {
  readonly mnt: string;
  readonly backing: string;
  /** The daemon's pid (changes at every crash). */
  pid(): number | undefined;
  /** What is held (not yet on the backing "disk"). */
  stats(): Promise<LazyStats>;
  /** Every held op, oldest first. */
  pending(): Promise<HeldOp[]>;
  /** Writes everything held (like syncfs(2)). */
  sync(): Promise<LazyStats>;
  /** Power cut: every held write is lost (but those made through O_SYNC/O_DSYNC descriptors). Remounts. */
  crash(): Promise<CrashReport>;
  /** Torn power cut: each held op (or 4 KiB page of a write, unit 'page') reaches the disk with probability p. Remounts. */
  crashTorn(seed: number, opts?: { p?: number; unit?: 'write' | 'page' }): Promise<CrashReport>;
  /** Power cut where exactly the held ops with these seqs (and the durable ones) reach the disk. Remounts. */
  crashApply(seqs: number[]): Promise<CrashReport>;
  /** A clean shutdown: syncs, unmounts (forced if busy). Idempotent. */
  stop(): Promise<void>;
  /** The daemon's stderr so far (all generations). */
  stderr(): string;
}

interface Daemon {
  proc: ChildProcess;
  exited: Promise<void>;
  request(msg: object): Promise<unknown>;
}

const live = new Set<LazyFsHandle>();

async function spawnDaemon(mnt: string, backing: string, log: { err: string }): Promise<Daemon> {
  const proc = spawn(process.execPath, ['-r', REGISTER, SCRIPT, mnt, backing], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  proc.stderr!.on('data', (d: Buffer) => {
    log.err += d.toString();
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const replies: ((m: { ok: boolean; result?: unknown; error?: string }) => void)[] = [];
  let ready = false;
  proc.on('message', (m: { ready?: boolean; ok: boolean }) => {
    if (m && m.ready) ready = true;
    else replies.shift()?.(m);
  });
  const deadline = Date.now() + 30_000;
  while (!ready) {
    if (proc.exitCode !== null || proc.signalCode !== null)
      throw new Error(`lazyfs exited (${proc.exitCode ?? proc.signalCode}): ${log.err}`);
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      await forceUnmount(mnt);
      throw new Error(`lazyfs: mount timed out: ${log.err}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    proc,
    exited,
    request: (msg) =>
      new Promise((resolve, reject) => {
        replies.push((m) => (m.ok ? resolve(m.result) : reject(new Error(`lazyfs: ${m.error}`))));
        proc.send(msg, (e) => {
          if (e) reject(e);
        });
      }),
  };
}

/** SIGTERM (the daemon syncs unless crashed, and unmounts), SIGKILL after 15 s, then clear the mount. */
async function stopDaemon(d: Daemon, mnt: string): Promise<void> {
  if (d.proc.exitCode === null && d.proc.signalCode === null) {
    d.proc.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      d.exited.then(() => false),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), 15_000);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      d.proc.kill('SIGKILL');
      await d.exited;
    }
  }
  await forceUnmount(mnt);
}

/** Mounts a lazyfs of backing (a directory) on mnt (made if missing, must be empty). */
export async function startLazyFs(backing: string, mountpoint: string): Promise<LazyFsHandle> {
  const mnt = path.resolve(mountpoint);
  const back = path.resolve(backing);
  fs.mkdirSync(mnt, { recursive: true });
  fs.mkdirSync(back, { recursive: true });
  const log = { err: '' };
  let daemon: Daemon | null = await spawnDaemon(mnt, back, log);
  let stopping: Promise<void> | null = null;

  const current = (): Daemon => {
    if (!daemon) throw new Error('lazyfs is stopped');
    return daemon;
  };
  const crashWith = async (msg: object): Promise<CrashReport> => {
    const d = current();
    const report = (await d.request(msg)) as CrashReport;
    daemon = null;
    await stopDaemon(d, mnt);
    if (findMount(mnt)) throw new Error(`lazyfs: ${mnt} still mounted after the crash`);
    daemon = await spawnDaemon(mnt, back, log);
    return report;
  };

  const handle: LazyFsHandle = {
    mnt,
    backing: back,
    pid: () => daemon?.proc.pid,
    stats: async () => (await current().request({ cmd: 'stats' })) as LazyStats,
    pending: async () => ((await current().request({ cmd: 'pending' })) as { ops: HeldOp[] }).ops,
    sync: async () => (await current().request({ cmd: 'sync' })) as LazyStats,
    crash: () => crashWith({ cmd: 'crash' }),
    crashTorn: (seed, opts = {}) => crashWith({ cmd: 'crash-torn', seed, p: opts.p, unit: opts.unit }),
    crashApply: (seqs) => crashWith({ cmd: 'crash-apply', seqs }),
    stop() {
      live.delete(handle);
      if (!stopping) {
        const d = daemon;
        daemon = null;
        stopping = d ? stopDaemon(d, mnt) : forceUnmount(mnt);
      }
      return stopping;
    },
    stderr: () => log.err,
  };
  live.add(handle);
  return handle;
}

/** For afterAll: stops every lazyfs still mounted. */
export async function stopAllLazyFs(): Promise<void> {
  for (const h of [...live]) await h.stop().catch(() => undefined);
}

/**
 * The usual fixture of a test file: one lazyfs in a fresh temporary directory, started before the
 * file's tests and stopped (and the directory removed) after them. `lazy()` is the handle.
 */
export function lazyFsForFile(prefix: string): { lazy: () => LazyFsHandle; work: () => string } {
  let work = '';
  let lazy: LazyFsHandle | undefined;
  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    lazy = await startLazyFs(path.join(work, 'disk'), path.join(work, 'mnt'));
  });
  afterAll(async () => {
    try {
      await stopAllLazyFs();
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });
  return {
    lazy: () => {
      if (!lazy) throw new Error('lazyfs not started (used outside the tests of this file?)');
      return lazy;
    },
    work: () => work,
  };
}
