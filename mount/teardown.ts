/**
 * Tearing FUSE mounts down, even hung ones: for `isg umount` of a dead daemon, and for every test's
 * afterAll/finally. Nothing here stats or opens anything under a mountpoint (a stat on a hung FUSE
 * mount hangs): mounts are found by name in /proc, and a hung connection is aborted through
 * /sys/fs/fuse/connections.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** One line of /proc/mounts. */
export interface MountEntry {
  source: string;
  mountpoint: string;
  fstype: string;
  options: string;
}

/** One line of /proc/self/mountinfo. */
export interface MountInfo {
  mountId: number;
  parentId: number;
  major: number;
  minor: number;
  root: string;
  mountpoint: string;
  options: string;
  fstype: string;
  source: string;
}

const CONNECTIONS = '/sys/fs/fuse/connections';

/** Undoes the octal escapes (\040 and friends) of /proc/mounts and /proc/self/mountinfo. */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function isFuseType(fstype: string): boolean {
  return fstype === 'fuse' || fstype === 'fuseblk' || fstype.startsWith('fuse.') || fstype.startsWith('fuseblk.');
}

function readProc(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** Every mount of the system as /proc/mounts lists it. */
export function listMounts(): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of readProc('/proc/mounts').split('\n')) {
    const f = line.split(' ');
    if (f.length < 4) continue;
    out.push({ source: unescapeMount(f[0]), mountpoint: unescapeMount(f[1]), fstype: f[2], options: f[3] });
  }
  return out;
}

/** The FUSE mounts (fuse, fuse.<subtype>, fuseblk) of /proc/mounts, in mount order. */
export function listFuseMounts(): MountEntry[] {
  return listMounts().filter((m) => isFuseType(m.fstype));
}

/** Every entry of /proc/self/mountinfo, in mount order. */
export function readMountInfo(): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of readProc('/proc/self/mountinfo').split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (f.length < 10 || sep < 0) continue;
    const [major, minor] = f[2].split(':').map(Number);
    out.push({
      mountId: Number(f[0]),
      parentId: Number(f[1]),
      major,
      minor,
      root: unescapeMount(f[3]),
      mountpoint: unescapeMount(f[4]),
      options: f[5],
      fstype: f[sep + 1],
      source: unescapeMount(f[sep + 2] ?? ''),
    });
  }
  return out;
}

/** The topmost mount on a path (by name: the path itself is never touched), if any. */
export function findMount(mountpoint: string): MountInfo | undefined {
  const mp = path.resolve(mountpoint);
  const all = readMountInfo().filter((m) => m.mountpoint === mp);
  return all[all.length - 1];
}

/** The id of a FUSE mount's connection under /sys/fs/fuse/connections: its device minor. */
export function fuseConnectionId(mountpoint: string): number | undefined {
  const m = findMount(mountpoint);
  return m && isFuseType(m.fstype) ? m.minor : undefined;
}

function run(cmd: string, args: string[], timeoutMs = 15_000): Promise<{ ok: boolean; code?: string | number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, _stdout, stderr) => {
      resolve({ ok: !err, code: (err as NodeJS.ErrnoException | null)?.code, stderr: String(stderr ?? '') });
    });
  });
}

/** Detaches a mount lazily: fusermount -uz (fusermount3 where only fuse3 exists), else umount -l. */
async function lazyUnmount(mp: string, fuse: boolean): Promise<void> {
  if (fuse) {
    for (const cmd of ['fusermount', 'fusermount3']) {
      const r = await run(cmd, ['-uz', mp]);
      if (r.ok) return;
      if (r.code !== 'ENOENT') break; // installed but refused: try umount
    }
  }
  // -c: no canonicalisation, which would stat the (possibly hung) mountpoint.
  await run('umount', ['-l', '-c', mp]);
}

function readWaiting(id: number): number | undefined {
  try {
    return Number(fs.readFileSync(path.join(CONNECTIONS, String(id), 'waiting'), 'utf8').trim());
  } catch {
    return undefined;
  }
}

function fusectlMounted(): boolean {
  return listMounts().some((m) => m.fstype === 'fusectl');
}

/**
 * Aborts a FUSE connection that still has requests waiting after graceMs: every waiting and
 * future request fails with ENOTCONN, so processes stuck in the mount come back. Mounts fusectl
 * for the moment if nobody has (as root), and takes it down again afterwards.
 */
export async function abortIfWaiting(id: number, graceMs = 500): Promise<boolean> {
  let mountedHere = false;
  if (!fs.existsSync(path.join(CONNECTIONS, String(id))) && !fusectlMounted()) {
    mountedHere = (await run('mount', ['-t', 'fusectl', 'fusectl', CONNECTIONS])).ok;
  }
  try {
    const deadline = Date.now() + graceMs;
    for (;;) {
      const waiting = readWaiting(id);
      if (waiting === undefined || waiting === 0) return false; // gone, or idle
      if (Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    try {
      fs.writeFileSync(path.join(CONNECTIONS, String(id), 'abort'), '1');
      return true;
    } catch {
      return false; // the connection went away meanwhile
    }
  } finally {
    if (mountedHere) await run('umount', [CONNECTIONS]);
  }
}

export interface ForceUnmountOptions {
  /** How long requests may still drain after the detach before the connection is aborted (ms). */
  graceMs?: number;
}

/**
 * Takes whatever is mounted on mountpoint down, now: `fusermount -uz` (a lazy detach, which works
 * while files are open and while the daemon is dead or hung), then, if requests of the FUSE
 * connection still wait, writes 1 to /sys/fs/fuse/connections/<id>/abort. The connection id is
 * read from /proc/self/mountinfo before the detach. Stacked mounts are all removed. Never throws
 * for "not mounted"; safe in afterAll/finally.
 */
export async function forceUnmount(mountpoint: string, opts: ForceUnmountOptions = {}): Promise<void> {
  const mp = path.resolve(mountpoint);
  for (let round = 0; round < 8; round++) {
    const m = findMount(mp);
    if (!m) return;
    const fuse = isFuseType(m.fstype);
    await lazyUnmount(mp, fuse);
    if (fuse) await abortIfWaiting(m.minor, opts.graceMs ?? 500);
    const after = findMount(mp);
    if (after && after.mountId === m.mountId) throw new Error(`could not unmount ${mp}`);
  }
}
