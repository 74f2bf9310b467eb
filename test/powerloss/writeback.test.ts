/**
 * The writeback interval, proved with a power cut: data written to files that stay open and are
 * never fsynced (a big file written once, a log appended a little at a time) survives a power loss
 * that comes more than the interval after the writes. The data directory sits on lazyfs, which
 * drops everything not fsynced when the power is cut.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { kill9, mount, stopAll, umount } from '../helpers/mount';
import { prng } from '../helpers/tmp';
import { LazyFsHandle, startLazyFs, stopAllLazyFs } from './harness';

let work: string;
let lazy: LazyFsHandle;
const holders: ChildProcess[] = [];

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'isgfs-writeback-'));
  lazy = await startLazyFs(path.join(work, 'disk'), path.join(work, 'mnt'));
});

afterAll(async () => {
  try {
    for (const h of holders) h.kill('SIGKILL');
    await stopAll();
    await stopAllLazyFs();
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
});

/**
 * A program that writes `big` in 1 MiB writes and 20 lines to `log` (50 ms apart), says "done" and
 * keeps both files open without ever calling fsync.
 */
function holdOpen(big: string, source: string, log: string): Promise<ChildProcess> {
  const code = `
import os, sys, time
big, source, log = sys.argv[1:4]
fd = os.open(big, os.O_WRONLY | os.O_CREAT, 0o644)
with open(source, 'rb') as f: data = f.read()
for off in range(0, len(data), 1 << 20): os.write(fd, data[off:off + (1 << 20)])
lg = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
for i in range(20):
    os.write(lg, b'line %d\\n' % i)
    time.sleep(0.05)
print('done', flush=True)
time.sleep(600)
`;
  const p = spawn('python3', ['-c', code, big, source, log], { stdio: ['ignore', 'pipe', 'inherit'] });
  holders.push(p);
  return new Promise((resolve, reject) => {
    p.stdout!.on('data', (d: Buffer) => d.toString().includes('done') && resolve(p));
    p.once('exit', (c) => reject(new Error(`writer exited ${c}`)));
  });
}

test('files kept open and never fsynced survive a power cut that comes after the writeback interval', async () => {
  const data = path.join(lazy.mnt, 'data');
  const mnt = path.join(work, 'isg');
  // A repository whose creation is on the disk.
  await umount(await mount(data, mnt));
  await lazy.sync();

  const content = prng(5).bytes(3 * 1024 * 1024 + 12345); // not a whole number of chunks: a tail
  const source = path.join(work, 'source');
  fs.writeFileSync(source, content);
  const m = await mount(data, mnt, ['--writeback', '1s']);
  const writer = await holdOpen(path.join(mnt, 'big'), source, path.join(mnt, 'log'));
  await new Promise((r) => setTimeout(r, 2500)); // the interval, and room for the flush and the sync
  expect(writer.exitCode).toBeNull(); // still holding both files open
  await kill9(m);
  writer.kill('SIGKILL');
  await lazy.crash();

  const again = await mount(data, mnt);
  try {
    expect(fs.readFileSync(path.join(mnt, 'big')).equals(content)).toBe(true);
    const lines = Array.from({ length: 20 }, (_, i) => `line ${i}\n`).join('');
    expect(fs.readFileSync(path.join(mnt, 'log'), 'utf8')).toBe(lines);
  } finally {
    await umount(again);
  }
});
