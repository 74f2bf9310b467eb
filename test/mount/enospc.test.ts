/**
 * A full local tier: the block files live on a 64 MiB ext4 filesystem on a loop device, filled up
 * while a program writes. Writes fail with ENOSPC once the write buffer is full, the daemon stays
 * up with bounded memory, and when space comes back the writeback stores everything that was
 * acknowledged (proved after a kill -9, so no clean unmount helps).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ISG, kill9, mount, mountDirs, sh, umount } from '../helpers/mount';
import { run } from '../helpers/proc';

const loop = { mounted: false };
const { t, data, mnt } = mountDirs(async () => {
  if (loop.mounted) await sh(`umount ${path.join(t.dir, 'loop')} || umount -l ${path.join(t.dir, 'loop')}`);
});

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** Writes files of random 1 MiB writes; a file ends at its first failed write. Keeps what was acknowledged in `ref`. */
const WRITER = `
import errno, json, os, sys
mnt, ref, files, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
out = {'writeErrors': [], 'closeErrors': [], 'fsyncErrors': [], 'acked': 0}
for i in range(files):
    fd = os.open(os.path.join(mnt, 'f%d' % i), os.O_WRONLY | os.O_CREAT, 0o644)
    with open(os.path.join(ref, 'f%d' % i), 'wb') as r:
        for off in range(0, size, 1 << 20):
            piece = os.urandom(1 << 20)
            try:
                os.write(fd, piece)
            except OSError as e:
                out['writeErrors'].append(errno.errorcode[e.errno])
                break
            r.write(piece)
            out['acked'] += len(piece)
    if i % 4 == 3:
        try:
            os.fsync(fd)
        except OSError as e:
            out['fsyncErrors'].append(errno.errorcode[e.errno])
    try:
        os.close(fd)
    except OSError as e:
        out['closeErrors'].append(errno.errorcode[e.errno])
print(json.dumps(out))
`;

test('a local tier that fills: ENOSPC, bounded memory, and everything acknowledged is there once space is back', async () => {
  const img = path.join(t.dir, 'img');
  const lp = path.join(t.dir, 'loop');
  const ref = path.join(t.dir, 'ref');
  fs.mkdirSync(lp);
  fs.mkdirSync(ref);
  await sh(`truncate -s 64M ${img} && mkfs.ext4 -q -m 0 ${img} && mount -o loop ${img} ${lp}`);
  loop.mounted = true;
  const init = await run(process.execPath, [ISG, 'init', data]);
  expect(init.code).toBe(0);
  // The local tier (and only it) on the small filesystem.
  const blocks = path.join(data, 'cache', 'blocks');
  fs.rmSync(blocks, { recursive: true, force: true });
  fs.mkdirSync(path.join(lp, 'blocks'));
  fs.symlinkSync(path.join(lp, 'blocks'), blocks);

  const budget = 8 * 1024 * 1024;
  const m = await mount(data, mnt, ['--writeback', '1s', '--write-buffer', '8M']);
  const rssBefore = rssKiB(m.proc.pid!);
  await sh(`dd if=/dev/zero of=${lp}/filler bs=1M 2>/dev/null || true; dd if=/dev/zero of=${lp}/filler2 bs=4k 2>/dev/null || true; sync`);

  // 32 files of 8 MiB: 256 MiB tried, 32 times the budget.
  const w = await run('python3', ['-c', WRITER, mnt, ref, '32', String(8 * 1024 * 1024)], { timeout: 600_000 });
  expect(w.stderr).toBe('');
  const out = JSON.parse(w.stdout) as { writeErrors: string[]; closeErrors: string[]; fsyncErrors: string[]; acked: number };
  expect(out.writeErrors.length).toBeGreaterThan(0);
  expect(new Set(out.writeErrors)).toEqual(new Set(['ENOSPC']));
  expect(out.fsyncErrors.length + out.closeErrors.length).toBeGreaterThan(0);
  for (const e of [...out.fsyncErrors, ...out.closeErrors]) expect(e).toBe('ENOSPC');
  // What was acknowledged is buffered (there is no room for it anywhere else): the budget, give or
  // take what fitted in the last free blocks.
  expect(out.acked).toBeLessThanOrEqual(budget + 4 * 1024 * 1024);
  expect(m.proc.exitCode).toBeNull();
  expect(rssKiB(m.proc.pid!) - rssBefore).toBeLessThan(160 * 1024);

  // Space comes back: the writeback stores every buffered byte by itself (its retry delay is at
  // most 10 s), and syncs.
  fs.rmSync(path.join(lp, 'filler'));
  fs.rmSync(path.join(lp, 'filler2'));
  await new Promise((r) => setTimeout(r, 14_000));
  expect(m.proc.exitCode).toBeNull();
  await kill9(m);

  const again = await mount(data, mnt);
  try {
    for (const f of fs.readdirSync(ref)) {
      const want = fs.readFileSync(path.join(ref, f));
      const got = fs.readFileSync(path.join(mnt, f));
      expect(got.length).toBe(want.length);
      expect(got.equals(want)).toBe(true);
    }
  } finally {
    await umount(again);
  }
}, 300_000);
