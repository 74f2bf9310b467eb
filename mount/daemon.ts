/**
 * `isg mount` in the foreground, and `isg umount`. The daemon ends on SIGINT, SIGTERM, `isg umount`
 * (which sends SIGTERM and waits) or an external `fusermount -u`: each flushes every open file,
 * commits, syncs, unmounts and exits 0.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FileSystem } from '../src/fs/filesystem';
import { Session } from '../src/repo/session';
import { readLock, RepoError } from '../src/repo/repository';
import { log } from '../src/log';
import { serveControl } from '../src/repo/control';
import { runSnapshotOp, SnapshotOp } from '../src/repo/snapshot-ops';
import { fuseOps } from './ops';
import { FUSE_DEFAULTS, mountFuse } from './fuse';
import { isFuseMounted, stopRequested, unmountOrDetach } from './stop';
import { forceUnmount, listFuseMounts } from './teardown';

/**
 * The xattrs the kernel asks for unprompted and uncached: security.capability before every
 * write, security.selinux and system.posix_acl_access on every `ls -l` entry,
 * system.posix_acl_default on directories. Those that no file has, or that the core refuses, are
 * answered by the binding without a round trip (mount/fuse.ts, absentXattrs).
 */
const KERNEL_XATTR_QUERIES = ['security.capability', 'security.selinux', 'system.posix_acl_access', 'system.posix_acl_default'];

function xattrShortcuts(core: FileSystem): { absentXattrs: string[]; unsupportedXattrs: string[] } {
  const answers = KERNEL_XATTR_QUERIES.map((name) => ({ name, answer: core.xattrAnswerForAll(name) }));
  return {
    absentXattrs: answers.filter((a) => a.answer === 'ENODATA').map((a) => a.name),
    unsupportedXattrs: answers.filter((a) => a.answer === 'EOPNOTSUPP').map((a) => a.name),
  };
}

export interface MountOptions {
  dataDir: string;
  mountpoint: string;
  password?: string;
  cacheBytes?: number;
  cacheDirBytes?: number;
  /** Data written and not fsynced is durable within this time (`--writeback`), ms. */
  writebackMs?: number;
  /** Budget of written bytes not yet committed, over all files (`--write-buffer`). */
  writeBufferBytes?: number;
  readOnly: boolean;
  /** Serve this published tree read-only (`--snapshot <ref>`) instead of the live namespace. */
  snapshot?: string;
  /** Take the writer lease from another writer (`--take-over`). */
  takeOver?: boolean;
  /** Open even when the backends' newest head is older than one this data directory saw (`--accept-rollback`). */
  acceptRollback?: boolean;
  /** A change is published (a new head) at most this long after it (`--publish-interval`). */
  publishIntervalMs?: number;
  allowOther: boolean;
  fuseOptions: string[];
}

const FSNAME_PREFIX = 'isgfs:';

function checkMountpoint(mp: string): void {
  // /proc/mounts first: a stat of a dead FUSE mount would hang.
  if (isFuseMounted(mp)) throw new RepoError(`mountpoint ${mp} is busy: something is already mounted there`);
  let st: fs.Stats;
  try {
    st = fs.statSync(mp);
  } catch (e) {
    throw new RepoError(`mountpoint ${mp} does not exist (${(e as NodeJS.ErrnoException).code})`);
  }
  if (!st.isDirectory()) throw new RepoError(`mountpoint ${mp} is not a directory`);
}

export async function mountRepository(o: MountOptions): Promise<number> {
  const mountpoint = path.resolve(o.mountpoint);
  const dataDir = path.resolve(o.dataDir);
  checkMountpoint(mountpoint);
  const readOnly = o.readOnly || o.snapshot !== undefined;
  const session = await Session.open(dataDir, {
    password: o.password,
    readOnly,
    snapshot: o.snapshot,
    takeOver: o.takeOver,
    acceptRollback: o.acceptRollback,
    publishIntervalMs: o.publishIntervalMs,
    cacheBytes: o.cacheBytes,
    cacheDirBytes: o.cacheDirBytes,
    syncIntervalMs: o.writebackMs,
    writeBuffer: o.writeBufferBytes,
    mountpoint,
    background: !readOnly,
  });
  // A read-only mount has no control socket: it has nothing to flush, may drop nothing from the
  // local tier, runs no background work to report, and must not take the socket of a read-write
  // mount of the same repository.
  const stopControl = readOnly
    ? async () => undefined
    : serveControl(dataDir, async (cmd, progress, args) => {
        if (cmd === 'flush') return session.flush(progress);
        if (cmd === 'snapshot') return runSnapshotOp(session, args as SnapshotOp);
        if (cmd === 'clone') {
          const a = (args ?? {}) as { tree?: string; dest?: string };
          return session.clone(a.tree ?? '', a.dest ?? '');
        }
        if (cmd === 'cache-drop') return session.cacheDrop();
        if (cmd === 'status') return session.backgroundStatus();
        return session.backends.map((b) => ({ name: b.name, ...b.health() }));
      });
  let mounted;
  try {
    mounted = await mountFuse(mountpoint, fuseOps(session.fs), {
      ...FUSE_DEFAULTS,
      fsname: FSNAME_PREFIX + dataDir,
      subtype: 'isgfs',
      allowOther: o.allowOther,
      // With other users allowed in, the kernel checks mode bits (the core does not repeat them).
      // Without, FUSE admits only the mounting user, and the check would cost a getattr of every
      // path component on every access (attr_timeout is 0): 20 requests per `ls -l` entry.
      defaultPermissions: o.allowOther,
      options: [...(readOnly ? ['ro'] : []), ...o.fuseOptions],
      ...xattrShortcuts(session.fs),
    });
  } catch (e) {
    await stopControl();
    await session.close();
    throw e;
  }
  const what = o.snapshot !== undefined ? ` (tree ${o.snapshot}, read-only)` : readOnly ? ' (read-only)' : '';
  log.info(`mounted ${dataDir} on ${mountpoint}${what}`);

  const reason = await stopRequested(mountpoint);
  log.info(`${reason}: flushing and unmounting ${mountpoint}`);
  let code = 0;
  try {
    await session.fs.close(); // flush open files first: an unmount may have to wait for them
  } catch (e) {
    log.error(`flush before unmount failed: ${(e as Error).message}`);
    code = 1;
  }
  const failed = await unmountOrDetach(mounted, mountpoint);
  if (failed) log.warn(`clean unmount failed (${failed.message}); detached lazily`);
  try {
    await stopControl();
    await session.close();
  } catch (e) {
    log.error(`closing the repository failed: ${(e as Error).message}`);
    code = 1;
  }
  log.info('unmounted');
  return code;
}

/** The mountpoints where `dataDir` is mounted, read-write or read-only (a read-only mount holds no lock). */
export function mountpointsOf(dataDir: string): string[] {
  const source = FSNAME_PREFIX + path.resolve(dataDir);
  return listFuseMounts()
    .filter((m) => m.source === source)
    .map((m) => m.mountpoint);
}

/** Asks the daemon of a mountpoint to finish and waits until it has exited. */
export async function unmountByPath(mp: string): Promise<void> {
  const mountpoint = path.resolve(mp);
  const m = listFuseMounts().find((x) => x.mountpoint === mountpoint);
  if (!m) throw new RepoError(`${mountpoint} is not mounted`);
  const dataDir = m.source.startsWith(FSNAME_PREFIX) ? m.source.slice(FSNAME_PREFIX.length) : undefined;
  const lock = dataDir ? readLock(dataDir) : undefined;
  // The lock names the read-write daemon, which may serve another mountpoint than this one.
  const holder = lock?.mountpoint === mountpoint ? lock : undefined;
  if (!holder) {
    // No daemon alive behind it (a dead mount), or a read-only one, which holds no lock: detach
    // it. A live read-only daemon sees its mount gone and exits.
    await forceUnmount(mountpoint);
    return;
  }
  process.kill(holder.pid, 'SIGTERM');
  for (;;) {
    try {
      process.kill(holder.pid, 0);
    } catch {
      break; // exited
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  if (isFuseMounted(mountpoint)) await forceUnmount(mountpoint);
}
