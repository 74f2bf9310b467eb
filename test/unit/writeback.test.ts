/**
 * The write buffer (no FUSE): the writeback of open files, the global budget, and what writers see
 * when flushes fail (a full disk).
 */
import { constants as C } from 'node:fs';
import { Session } from '../../src/repo/session';
import { FsError } from '../../src/fs/errors';
import { Caller } from '../../src/fs/filesystem';
import { smallRepo } from '../helpers/session';
import { parseDuration } from '../../src/util/duration';
import { prng, tmpDir } from '../helpers/tmp';

const me: Caller = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Bytes of the file's committed chunk map (holes excluded). */
function committed(s: Session, ino: number): number {
  return s.meta.extentsOf(ino).reduce((n, e) => n + e.length, 0);
}

async function until(what: string, ok: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('write buffer', () => {
  let t: ReturnType<typeof tmpDir>;
  let s: Session | undefined;
  beforeEach(() => {
    t = tmpDir();
  });
  afterEach(async () => {
    await s?.close().catch(() => undefined);
    s = undefined;
    t.cleanup();
  });

  test('a file kept open, never fsynced, is committed whole (its tail too) and synced within the writeback interval', async () => {
    s = await smallRepo(t.dir + '/repo', { syncIntervalMs: 400 });
    let syncs = 0;
    const sync = s.meta.sync.bind(s.meta);
    s.meta.sync = () => {
      syncs++;
      return sync();
    };
    const data = prng(3).bytes(200_000); // past dirtyCap (64 KiB): background flushes keep the tail back
    const fh = await s.fs.create('/log', 0o644, C.O_WRONLY, me);
    for (let off = 0; off < data.length; off += 4096) await s.fs.write(fh, off, data.subarray(off, off + 4096));
    const ino = s.fs.getattr('/log').ino;
    const written = Date.now();
    expect(committed(s, ino)).toBeLessThan(data.length);
    await until('the writeback', () => committed(s!, ino) === data.length, 3000);
    expect(Date.now() - written).toBeLessThan(1500);
    expect(s.meta.getInode(ino)!.size).toBe(data.length);
    expect(s.fs.bufferedBytes).toBe(0);
    const before = syncs;
    await until('a sync after the commit', () => syncs > before, 1000);
    // Still open: the next write is buffered again and written back again.
    await s.fs.write(fh, data.length, Buffer.from('more'));
    await until('the second writeback', () => s!.meta.getInode(ino)!.size === data.length + 4, 3000);
    const back = await s.fs.read(fh, 0, data.length + 4);
    expect(back.subarray(0, data.length).equals(data)).toBe(true);
    await s.fs.release(fh);
  });

  test('many files written in parallel keep the total buffered within the budget, and all complete', async () => {
    const budget = 1024 * 1024;
    s = await smallRepo(t.dir + '/repo', { writeBuffer: budget, dirtyCap: 64 * 1024 * 1024 });
    const session = s;
    const files = Array.from({ length: 12 }, (_, i) => ({ name: `/f${i}`, data: prng(10 + i).bytes(512 * 1024) }));
    let peak = 0;
    await Promise.all(
      files.map(async (f) => {
        const fh = await session.fs.create(f.name, 0o644, C.O_WRONLY, me);
        for (let off = 0; off < f.data.length; off += 16 * 1024) {
          await session.fs.write(fh, off, f.data.subarray(off, off + 16 * 1024));
          peak = Math.max(peak, session.fs.bufferedBytes);
          expect(session.fs.bufferedBytes).toBeLessThanOrEqual(budget);
        }
        await session.fs.release(fh);
      }),
    );
    expect(peak).toBeGreaterThan(budget / 2);
    await s.fs.flushAll();
    expect(s.fs.bufferedBytes).toBe(0);
    for (const f of files) {
      const fh = await s.fs.open(f.name, C.O_RDONLY);
      expect((await s.fs.read(fh, 0, f.data.length)).equals(f.data)).toBe(true);
      await s.fs.release(fh);
    }
  });

  test('a full disk: once the budget is full, write, close and fsync answer ENOSPC; nothing grows; all acknowledged data is written when space comes back', async () => {
    const budget = 1024 * 1024;
    s = await smallRepo(t.dir + '/repo', { writeBuffer: budget, syncIntervalMs: 200 });
    const session = s;
    let full = true;
    const ingest = s.store.ingest.bind(s.store);
    s.store.ingest = (chunks, commit) => {
      if (full) return Promise.reject(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }));
      return ingest(chunks, commit);
    };
    const acked = new Map<string, Buffer[]>();
    const errors: string[] = [];
    const open: number[] = [];
    let peak = 0;
    for (let i = 0; i < 6; i++) {
      const name = `/f${i}`;
      const data = prng(20 + i).bytes(512 * 1024);
      const fh = await session.fs.create(name, 0o644, C.O_WRONLY, me);
      open.push(fh);
      acked.set(name, []);
      for (let off = 0; off < data.length; off += 32 * 1024) {
        const piece = data.subarray(off, off + 32 * 1024);
        try {
          await session.fs.write(fh, off, piece);
          acked.get(name)!.push(piece);
        } catch (e) {
          errors.push((e as FsError).code);
          break;
        }
        peak = Math.max(peak, session.fs.bufferedBytes);
      }
    }
    expect(errors.length).toBeGreaterThan(0);
    expect(new Set(errors)).toEqual(new Set(['ENOSPC']));
    expect(peak).toBeLessThanOrEqual(budget);
    // The first file holds acknowledged data: its fsync and its close report the failure.
    expect(acked.get('/f0')!.length).toBeGreaterThan(0);
    await expect(session.fs.fsync(open[0])).rejects.toMatchObject({ code: 'ENOSPC' });
    await expect(session.fs.flush(open[0])).rejects.toMatchObject({ code: 'ENOSPC' });
    for (const fh of open) await session.fs.release(fh);
    expect(s.fs.bufferedBytes).toBeLessThanOrEqual(budget);
    const ackedBytes = [...acked.values()].flat().reduce((n, b) => n + b.length, 0);
    expect(ackedBytes).toBeLessThanOrEqual(budget);
    expect(ackedBytes).toBeGreaterThan(0);

    // Space comes back: the writeback writes everything, with no fsync or close asking for it.
    full = false;
    await until('the writeback after the disk has room', () => session.fs.bufferedBytes === 0, 20_000);
    for (const [name, pieces] of acked) {
      const want = Buffer.concat(pieces);
      const ino = s.fs.getattr(name).ino;
      expect(s.meta.getInode(ino)!.size).toBe(want.length);
      expect(committed(s, ino)).toBe(want.length);
      const fh = await s.fs.open(name, C.O_RDONLY);
      expect((await s.fs.read(fh, 0, want.length + 1)).equals(want)).toBe(true);
      await s.fs.release(fh);
    }
  });
});

describe('--writeback durations', () => {
  test('ms, s, m, h and plain milliseconds; anything else is refused', () => {
    expect(parseDuration('5s')).toBe(5000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('2m')).toBe(120_000);
    expect(parseDuration('250')).toBe(250);
    expect(() => parseDuration('5 seconds', '--writeback')).toThrow(/--writeback: not a duration/);
    expect(() => parseDuration('-1s')).toThrow();
  });
});
