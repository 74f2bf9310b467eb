/**
 * The "FUSE ceiling" of the benchmark: a filesystem that does as little as a FUSE filesystem can,
 * mounted through mount/fuse.ts with exactly isgfs's options (FUSE_DEFAULTS). The namespace
 * (directories, names, modes, times, symlinks, hard links) lives in memory so tar, ls -lR and rm
 * work (test/fuse/memns.ts, shared with the tests' memfs); file contents are not kept at all:
 * writes are discarded (only the size grows), reads return zeros.
 *
 *   node dist/bench/noopfs.js <mountpoint>
 *
 * Runs in the foreground until SIGTERM, SIGINT or an external unmount, then unmounts and exits 0.
 */
import * as path from 'node:path';
import { EBADF, FUSE_DEFAULTS, FuseOps, mountFuse, MountedFuse } from '../mount/fuse';
import { stopRequested, unmountOrDetach } from '../mount/stop';
import { findMount } from '../mount/teardown';
import { MemInode, MemNamespace } from '../test/fuse/memns';

export function noopOps(): FuseOps {
  const ns = new MemNamespace<MemInode>({
    statfs: {
      bsize: 4096,
      frsize: 4096,
      blocks: 2 ** 40,
      bfree: 2 ** 40,
      bavail: 2 ** 40,
      files: 2 ** 40,
      ffree: 2 ** 40,
      favail: 2 ** 40,
      namemax: 255,
    },
    init: (i) => i,
  });
  return {
    ...ns.ops(),
    read: (_p, fh, buf, len, offset, cb) => {
      const i = ns.byFh(fh);
      if (!i) return cb(EBADF);
      const count = Math.max(0, Math.min(len, i.size - offset));
      buf.fill(0, 0, count);
      cb(count);
    },
    write: (_p, fh, _buf, len, offset, cb) => {
      const i = ns.byFh(fh);
      if (!i) return cb(EBADF);
      if (offset + len > i.size) i.size = offset + len;
      cb(len);
    },
  };
}

async function main(): Promise<void> {
  const mnt = process.argv[2];
  if (!mnt) {
    process.stderr.write('usage: node dist/bench/noopfs.js <mountpoint>\n');
    process.exit(2);
  }
  const mp = path.resolve(mnt);
  let mounted: MountedFuse;
  try {
    mounted = await mountFuse(mp, noopOps(), { ...FUSE_DEFAULTS, fsname: 'noopfs' });
  } catch (e) {
    process.stderr.write(`noopfs: ${(e as Error).message}\n`);
    process.exit(1);
  }
  const reason = await stopRequested(mp);
  const failed = await unmountOrDetach(mounted, mp);
  if (failed) process.stderr.write(`noopfs: unmount after ${reason} failed (${failed.message}); detached\n`);
  process.exit(failed && findMount(mp) ? 1 : 0);
}

if (require.main === module) void main();
