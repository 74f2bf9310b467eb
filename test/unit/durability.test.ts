/**
 * Durability order of the local tier and the metadata, with an instrumented fsync (delays, a
 * record of what reached the "disk") and instrumented LMDB syncs:
 * - one sync in flight; fsync racing the writeback timer never returns before its data is durable;
 * - block files (and their directories) durable before the commit that names them;
 * - sweep and eviction delete files only after the commit that makes that safe is durable;
 * - eviction keeps blocks whose pack misses shards; stray block files go at mount;
 * - the packer verifies blocks and never dequeues a damaged one of a live file.
 */
import * as fs from 'node:fs';
import { constants as C } from 'node:fs';
import * as path from 'node:path';
import { Session } from '../../src/repo/session';
import { Rounds } from '../../src/util/rounds';
import { prng, tmpDir } from '../helpers/tmp';
import { smallRepo } from '../helpers/session';

const me = { uid: 0, gid: 0 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Rounds (one sync in flight)', () => {
  test('a caller that comes during a round waits for the next one, which starts after it; callers share rounds', async () => {
    const log: string[] = [];
    let n = 0;
    const r = new Rounds(async () => {
      const me = ++n;
      log.push(`start ${me}`);
      await sleep(20);
      log.push(`end ${me}`);
    });
    const a = r.run().then(() => log.push('a'));
    await sleep(5); // round 1 runs
    const b = r.run().then(() => log.push('b'));
    const c = r.run().then(() => log.push('c'));
    await Promise.all([a, b, c]);
    expect(log).toEqual(['start 1', 'end 1', 'a', 'start 2', 'end 2', 'b', 'c']);
  });

  test('a failed round fails every caller that waited for it; the next round runs afresh', async () => {
    let fail = true;
    const r = new Rounds(async () => {
      await sleep(5);
      if (fail) throw new Error('EIO');
    });
    const first = r.run();
    const second = r.run(); // shares round 1
    await expect(first).rejects.toThrow('EIO');
    await expect(second).rejects.toThrow('EIO');
    fail = false;
    await expect(r.run()).resolves.toBeUndefined();
    await r.idle();
  });
});

/**
 * Instruments fsyncs under `root` (delays; which paths were made durable) and the metadata's syncs
 * (which commit the durable state reaches). Restored by `restore`.
 */
function instrument(s: Session, root: string, rand: { int(n: number): number }, maxDelay: number) {
  const durable = new Set<string>();
  const events: string[] = [];
  const realOpen = fs.promises.open.bind(fs.promises);
  const open = jest.spyOn(fs.promises, 'open').mockImplementation((async (p: fs.PathLike, flags?: string | number, mode?: fs.Mode) => {
    const fh = await realOpen(p, flags, mode);
    const file = String(p);
    if (flags !== 'r' || !file.startsWith(root)) return fh;
    const synced = (real: () => Promise<void>) => async () => {
      await sleep(rand.int(maxDelay + 1));
      await real();
      durable.add(file);
      events.push(`fsync ${file}`);
    };
    return new Proxy(fh, {
      get(t, k) {
        if (k === 'sync') return synced(() => t.sync());
        if (k === 'datasync') return synced(() => t.datasync());
        const v = Reflect.get(t, k) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    });
  }) as typeof fs.promises.open);
  let commits = 0;
  let depth = 0;
  let durableCommits = 0;
  const lastCommitOf = new Map<number, number>();
  const meta = s.meta;
  const realTxn = meta.txn.bind(meta);
  const txn = jest.spyOn(meta, 'txn').mockImplementation(<T>(fn: () => T): T => {
    depth++;
    try {
      return realTxn(fn);
    } finally {
      if (--depth === 0) commits++;
    }
  });
  const realPutInode = meta.putInode.bind(meta);
  const putInode = jest.spyOn(meta, 'putInode').mockImplementation((i) => {
    lastCommitOf.set(i.ino, commits + 1);
    realPutInode(i);
  });
  const realSync = meta.sync.bind(meta);
  const sync = jest.spyOn(meta, 'sync').mockImplementation(async () => {
    const upTo = commits;
    events.push(`meta.sync start ${upTo}`);
    await sleep(rand.int(maxDelay + 1));
    await realSync();
    durableCommits = Math.max(durableCommits, upTo);
    events.push(`meta.sync end ${upTo}`);
  });
  return {
    durable,
    events,
    commits: () => commits,
    durableCommits: () => durableCommits,
    lastCommitOf: (ino: number) => lastCommitOf.get(ino) ?? 0,
    restore() {
      for (const m of [open, txn, putInode, sync]) m.mockRestore();
    },
  };
}

describe('durability order (instrumented fsync)', () => {
  let t: ReturnType<typeof tmpDir>;
  let s: Session;
  let repo: string;
  beforeEach(async () => {
    t = tmpDir();
    repo = path.join(t.dir, 'repo');
    s = await smallRepo(repo, { syncIntervalMs: 3_600_000 });
  });
  afterEach(async () => {
    await s.close();
    t.cleanup();
  });

  const blockFileOf = (id: Buffer) => s.store.blockPath(id.toString('hex'));
  const blocksDir = () => path.join(repo, 'cache/blocks');

  test('fsync racing the writeback timer, with delays injected, never returns before its data and metadata are durable', async () => {
    const rand = prng(1234);
    const ins = instrument(s, blocksDir(), rand, 15);
    let stop = false;
    const timer = (async () => {
      while (!stop) {
        await s.fs.writeback().catch(() => undefined);
        await sleep(rand.int(6));
      }
    })();
    try {
      for (let i = 0; i < 30; i++) {
        const fh = await s.fs.create(`/f${i}`, 0o644, C.O_RDWR, me);
        await s.fs.write(fh, 0, prng(100 + i).bytes(20_000 + rand.int(40_000)));
        if (i % 3 === 1) {
          // Write-behind starts the flush; the timer may take its blocks meanwhile.
          void s.fs.flush(fh);
          await sleep(rand.int(10));
        } else if (i % 3 === 2) {
          // The data is committed, and a writeback round has just started when fsync comes.
          await s.fs.flushAll();
          void s.fs.writeback().catch(() => undefined);
        }
        await s.fs.fsync(fh);
        const ino = s.fs.fgetattr(fh).ino;
        for (const e of s.meta.extentsOf(ino)) expect(ins.durable.has(blockFileOf(e.id))).toBe(true);
        expect(ins.durableCommits()).toBeGreaterThanOrEqual(ins.lastCommitOf(ino));
        await s.fs.release(fh);
      }
    } finally {
      stop = true;
      await timer;
      ins.restore();
    }
  });

  test('the block files a flush wrote, and their directories, are durable before the commit that names them', async () => {
    const ins = instrument(s, blocksDir(), prng(7), 2);
    const rowsAtFsync = new Map<string, boolean>();
    const realAdd = s.meta.addBlock.bind(s.meta);
    const add = jest.spyOn(s.meta, 'addBlock').mockImplementation((id, plain, stored) => {
      rowsAtFsync.set(blockFileOf(id), ins.durable.has(blockFileOf(id)));
      realAdd(id, plain, stored);
    });
    try {
      const fh = await s.fs.create('/big', 0o644, C.O_WRONLY, me);
      await s.fs.write(fh, 0, prng(3).bytes(300_000));
      await s.fs.fsync(fh);
      await s.fs.release(fh);
    } finally {
      add.mockRestore();
      ins.restore();
    }
    expect(rowsAtFsync.size).toBeGreaterThan(10);
    for (const [file, wasDurable] of rowsAtFsync) expect([file, wasDurable]).toEqual([file, true]);
    // The directories they were renamed into were fsynced too, before any row was added.
    const dirs = new Set([...rowsAtFsync.keys()].map((f) => path.dirname(f)));
    for (const d of dirs) expect(ins.durable.has(d)).toBe(true);
  });

  test('the sweep deletes block files only after the commit that dropped them is durable', async () => {
    const fh = await s.fs.create('/gone', 0o644, C.O_WRONLY, me);
    await s.fs.write(fh, 0, prng(4).bytes(100_000));
    await s.fs.fsync(fh);
    await s.fs.release(fh);
    const files = s.meta.extentsOf((await s.fs.getattr('/gone')).ino).map((e) => blockFileOf(e.id));
    await s.fs.unlink('/gone');
    const ins = instrument(s, blocksDir(), prng(8), 5);
    const realRm = fs.promises.rm.bind(fs.promises);
    const rm = jest.spyOn(fs.promises, 'rm').mockImplementation(async (p, o) => {
      if (files.includes(String(p))) ins.events.push(`rm ${String(p)}`);
      return realRm(p, o);
    });
    try {
      expect(await s.store.sweep()).toBe(files.length);
    } finally {
      rm.mockRestore();
      ins.restore();
    }
    for (const f of files) expect(fs.existsSync(f)).toBe(false);
    const firstRm = ins.events.findIndex((e) => e.startsWith('rm '));
    const synced = ins.events.findIndex((e) => e.startsWith('meta.sync end'));
    expect(synced).toBeGreaterThanOrEqual(0);
    expect(synced).toBeLessThan(firstRm);
  });

  test('eviction deletes local copies only after the pack commit and local=false are durable, and keeps blocks of packs missing shards', async () => {
    const write = async (name: string, seed: number) => {
      const fh = await s.fs.create(name, 0o644, C.O_WRONLY, me);
      await s.fs.write(fh, 0, prng(seed).bytes(200_000));
      await s.fs.release(fh);
    };
    await write('/a', 5);
    await s.flush();
    // A pack stored with one shard missing (k + m - 1): its blocks stay pinned.
    const backend = path.join(repo, 'backends', 'local3');
    fs.renameSync(backend, backend + '.away');
    fs.writeFileSync(backend, 'not a directory');
    await write('/b', 6);
    await s.fs.flushAll();
    await s.packer.drain();
    const idsOf = async (name: string) => s.meta.extentsOf((await s.fs.getattr(name)).ino).map((e) => e.id);
    const bIds = await idsOf('/b');
    expect(bIds.every((id) => s.meta.getLoc(id))).toBe(true);
    expect([...s.meta.allPacks()].some(({ row }) => row.stored.length < row.k + row.m)).toBe(true);

    const aFiles = (await idsOf('/a')).map(blockFileOf);
    const ins = instrument(s, blocksDir(), prng(9), 5);
    const realRm = fs.promises.rm.bind(fs.promises);
    const rm = jest.spyOn(fs.promises, 'rm').mockImplementation(async (p, o) => {
      if (String(p).startsWith(blocksDir())) ins.events.push(`rm ${String(p)}`);
      return realRm(p, o);
    });
    try {
      expect(await s.cacheDrop()).toBeGreaterThan(0);
    } finally {
      rm.mockRestore();
      ins.restore();
    }
    for (const f of aFiles) expect(fs.existsSync(f)).toBe(false);
    for (const id of bIds) expect([id.toString('hex'), fs.existsSync(blockFileOf(id))]).toEqual([id.toString('hex'), true]);
    const firstRm = ins.events.findIndex((e) => e.startsWith('rm '));
    const synced = ins.events.findIndex((e) => e.startsWith('meta.sync end'));
    expect(synced).toBeGreaterThanOrEqual(0);
    expect(synced).toBeLessThan(firstRm);

    // Once the repairer has stored every shard, they may go.
    fs.rmSync(backend);
    fs.renameSync(backend + '.away', backend);
    await s.flush();
    await s.cacheDrop();
    for (const id of bIds) expect(fs.existsSync(blockFileOf(id))).toBe(false);
  });

  test('block files without a committed row (a crash between write and commit) are removed at mount; counted ones stay', async () => {
    const fh = await s.fs.create('/kept', 0o644, C.O_WRONLY, me);
    const data = prng(11).bytes(80_000);
    await s.fs.write(fh, 0, data);
    await s.fs.release(fh);
    await s.close();
    const stray = path.join(blocksDir(), 'ab', 'ab' + '00'.repeat(31));
    const stray2 = path.join(blocksDir(), 'ff', 'ff' + '11'.repeat(31));
    fs.mkdirSync(path.dirname(stray), { recursive: true });
    fs.mkdirSync(path.dirname(stray2), { recursive: true });
    fs.writeFileSync(stray, 'orphan');
    fs.writeFileSync(stray2, 'orphan');
    s = await Session.open(repo, { syncIntervalMs: 3_600_000 });
    expect(fs.existsSync(stray)).toBe(false);
    expect(fs.existsSync(stray2)).toBe(false);
    const rd = await s.fs.open('/kept', C.O_RDONLY);
    expect((await s.fs.read(rd, 0, data.length + 1)).equals(data)).toBe(true);
    await s.fs.release(rd);
  });

  test('the packer verifies blocks: a damaged or missing block of a live file is counted, reported and stays queued', async () => {
    const fh = await s.fs.create('/d', 0o644, C.O_WRONLY, me);
    await s.fs.write(fh, 0, prng(12).bytes(150_000));
    await s.fs.release(fh);
    await s.fs.flushAll();
    const ids = s.meta.extentsOf((await s.fs.getattr('/d')).ino).map((e) => e.id);
    // Same size, one flipped byte: the old packer trusted it by its size.
    const damaged = blockFileOf(ids[1]);
    const b = fs.readFileSync(damaged);
    b[b.length >> 1] ^= 1;
    fs.writeFileSync(damaged, b);
    fs.rmSync(blockFileOf(ids[2]));
    await expect(s.packer.drain()).rejects.toThrow(/2 queued block\(s\) are missing or damaged/);
    expect(s.packer.damagedBlocks).toBe(2);
    expect(s.meta.damagedBlocks().sort()).toEqual([ids[1], ids[2]].map((id) => id.toString('hex')).sort());
    const queued = s.meta.queued().map((q) => q.id.toString('hex'));
    expect(queued).toContain(ids[1].toString('hex'));
    expect(queued).toContain(ids[2].toString('hex'));
    expect(s.meta.getLoc(ids[1])).toBeUndefined();
    // The sound blocks were packed.
    expect(s.meta.getLoc(ids[0])).toBeDefined();
  });
});
