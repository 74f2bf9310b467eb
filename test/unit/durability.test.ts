/**
 * Durability order of the local tier and the metadata, with an instrumented fsync (delays, a
 * record of what reached the "disk") and instrumented LMDB syncs:
 * - one sync in flight; fsync racing the writeback timer never returns before its data is durable;
 * - block files (and their directories) durable before the epoch commit that names them, also
 *   when flushes commit while the epoch's fsync pass runs; a failed fsync fails the sync and
 *   holds the epoch back;
 * - sweep and eviction delete files only after the commit that makes that safe is durable;
 * - eviction keeps blocks whose pack misses shards; stray block files go at mount;
 * - the packer verifies blocks and never dequeues a damaged one of a live file.
 */
import * as fs from 'node:fs';
import { constants as C } from 'node:fs';
import * as path from 'node:path';
import { Session } from '../../src/repo/session';
import { Rounds } from '../../src/util/rounds';
import { Meta } from '../../src/meta/meta';
import { prng, tmpDir } from '../helpers/tmp';
import { smallRepo } from '../helpers/session';
import { openMeta } from '../helpers/meta';

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
 * Instruments fsyncs under `root` (delays; which paths were made durable; `fail` makes one throw
 * EIO instead) and the metadata's syncs (which commit the durable state reaches). Restored by
 * `restore`.
 */
function instrument(s: Session, root: string, rand: { int(n: number): number }, maxDelay: number, fail?: (file: string) => boolean) {
  const durable = new Set<string>();
  const events: string[] = [];
  const realOpen = fs.promises.open.bind(fs.promises);
  const open = jest.spyOn(fs.promises, 'open').mockImplementation((async (p: fs.PathLike, flags?: string | number, mode?: fs.Mode) => {
    const fh = await realOpen(p, flags, mode);
    const file = String(p);
    if (flags !== 'r' || !file.startsWith(root)) return fh;
    const synced = (real: () => Promise<void>) => async () => {
      await sleep(rand.int(maxDelay + 1));
      if (fail?.(file)) throw Object.assign(new Error(`EIO: i/o error, fsync '${file}'`), { code: 'EIO' });
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

/**
 * Calls `onCommit` in the tick each epoch commits in LMDB, right before the commit: lmdb-js
 * commits a transaction whose callback returned a promise-like in the callback it gives `then`,
 * and the epoch's is wrapped. Only epochs begun after the call are seen. Restored by `restore`.
 */
function watchEpochCommits(meta: Meta, onCommit: () => void): { restore(): void } {
  type Txn = (fn: () => unknown, flags?: number) => unknown;
  type Thenable = { then(onEnd: (v: unknown) => unknown): unknown };
  const root = (meta as unknown as { root: { transactionSync: Txn } }).root;
  const real = root.transactionSync.bind(root);
  const spy = jest.spyOn(root, 'transactionSync').mockImplementation((fn: () => unknown, flags?: number) =>
    real(() => {
      const r = fn();
      if (!r || typeof (r as Partial<Thenable>).then !== 'function') return r;
      return { then: (onEnd: (v: unknown) => unknown) => (r as Thenable).then((v) => (onCommit(), onEnd(v))) };
    }, flags),
  );
  return { restore: () => spy.mockRestore() };
}

describe('epochs commit after their before-commit pass', () => {
  let t: ReturnType<typeof tmpDir>;
  let m: Meta;
  let commits: { pending: number }[];
  let watch: { restore(): void };
  /** Names of "files" registered and not yet made durable by a pass. */
  let unsynced: string[];
  beforeEach(async () => {
    t = tmpDir();
    m = await openMeta(t.dir);
    m.initialise(0, 0);
    await m.sync();
    commits = [];
    unsynced = [];
    watch = watchEpochCommits(m, () => commits.push({ pending: unsynced.length }));
  });
  afterEach(async () => {
    watch.restore();
    await m.close();
    t.cleanup();
  });

  test('transactions that join during the pass are covered by it: it runs until nothing is pending, then the epoch commits in the same tick', async () => {
    let runs = 0;
    m.setBeforeCommit({
      pending: () => unsynced.length > 0,
      run: async () => {
        runs++;
        const now = unsynced.splice(0);
        await sleep(5);
        expect(now.length).toBeGreaterThan(0);
        // A flush commits while the pass runs: it registers its file and joins the open epoch.
        if (runs < 3) {
          unsynced.push(`late${runs}`);
          m.txn(() => m.link(1, `late${runs}`, 100 + runs));
        }
      },
    });
    unsynced.push('first');
    m.txn(() => m.link(1, 'first', 100));
    const a = m.sync();
    await sleep(2);
    m.txn(() => m.link(1, 'during', 200)); // no file: it joins the epoch being sealed
    const b = m.sync();
    expect(b).toBe(a); // callers during the pass share it
    await Promise.all([a, b]);
    expect(runs).toBe(3);
    expect(commits).toEqual([{ pending: 0 }]);
    // A transaction after the commit begins a new epoch.
    m.txn(() => m.link(1, 'after', 300));
    expect(commits.length).toBe(1);
    await m.sync();
    expect(commits.length).toBe(2);
  });

  test('a failed pass fails the sync and keeps the epoch open; the next sync commits it', async () => {
    let fail = true;
    m.setBeforeCommit({
      pending: () => unsynced.length > 0,
      run: async () => {
        await sleep(1);
        if (fail) throw new Error('EIO: fsync failed');
        unsynced.splice(0);
      },
    });
    unsynced.push('f');
    m.txn(() => m.link(1, 'f', 100));
    await expect(m.sync()).rejects.toThrow('EIO');
    expect(commits).toEqual([]);
    fail = false;
    await m.sync();
    expect(commits).toEqual([{ pending: 0 }]);
  });
});

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
        await s.fs.writeback(0).catch(() => undefined);
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
          void s.fs.writeback(0).catch(() => undefined);
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

  /**
   * Watches every epoch commit: the block rows added since the last one must find their files
   * and the directories they were renamed into durable. Returns the violations and counts.
   */
  function checkRowsAtCommits(ins: ReturnType<typeof instrument>) {
    const added: string[] = [];
    const late: string[] = [];
    let commits = 0;
    let checked = 0;
    const realAdd = s.meta.addBlock.bind(s.meta);
    const add = jest.spyOn(s.meta, 'addBlock').mockImplementation((id, plain, stored) => {
      added.push(blockFileOf(id));
      realAdd(id, plain, stored);
    });
    const watch = watchEpochCommits(s.meta, () => {
      commits++;
      for (const f of added.splice(0)) {
        checked++;
        if (!ins.durable.has(f) || !ins.durable.has(path.dirname(f))) late.push(f);
      }
    });
    return {
      late,
      commits: () => commits,
      checked: () => checked,
      uncommitted: () => added.length,
      restore() {
        add.mockRestore();
        watch.restore();
      },
    };
  }

  test('block files and their directories are durable before the epoch that names them commits, also when flushes commit during its fsync pass', async () => {
    const rand = prng(7);
    const ins = instrument(s, blocksDir(), rand, 4);
    const rows = checkRowsAtCommits(ins);
    try {
      await s.meta.sync(); // the next epoch begins under the watch
      // Write-behind flushes of many files commit while syncs (and their fsync passes, slowed
      // down) run: some join an epoch whose pass is under way.
      const syncs: Promise<void>[] = [];
      for (let i = 0; i < 24; i++) {
        const fh = await s.fs.create(`/f${i}`, 0o644, C.O_WRONLY, me);
        await s.fs.write(fh, 0, prng(40 + i).bytes(5_000 + rand.int(60_000)));
        await s.fs.release(fh); // flushed behind
        if (i % 4 === 3) syncs.push(s.fs.sync());
        await sleep(rand.int(4));
      }
      await s.fs.flushAll();
      await s.fs.sync();
      await Promise.all(syncs);
    } finally {
      rows.restore();
      ins.restore();
    }
    expect(rows.late).toEqual([]);
    expect(rows.uncommitted()).toBe(0);
    expect(rows.checked()).toBeGreaterThan(24);
    expect(rows.commits()).toBeGreaterThan(1);
  });

  test('a failed fsync fails the sync, and the epoch naming the file does not commit until a pass makes it durable', async () => {
    let failures = 0;
    const isBlockFile = (file: string) => path.dirname(path.dirname(file)) === blocksDir();
    const ins = instrument(s, blocksDir(), prng(13), 1, (file) => failures === 0 && isBlockFile(file) && ++failures === 1);
    const rows = checkRowsAtCommits(ins);
    try {
      await s.meta.sync();
      const fh = await s.fs.create('/eio', 0o644, C.O_WRONLY, me);
      const data = prng(14).bytes(120_000);
      await s.fs.write(fh, 0, data);
      await expect(s.fs.fsync(fh)).rejects.toThrow(/EIO/);
      expect(failures).toBe(1);
      expect(rows.uncommitted()).toBeGreaterThan(0); // the epoch with the block rows stays open
      // The next round (or the epoch's retry timer) makes the files durable, then commits.
      await s.fs.fsync(fh);
      await s.fs.release(fh);
      const rd = await s.fs.open('/eio', C.O_RDONLY);
      expect((await s.fs.read(rd, 0, data.length + 1)).equals(data)).toBe(true);
      await s.fs.release(rd);
    } finally {
      rows.restore();
      ins.restore();
    }
    expect(rows.late).toEqual([]);
    expect(rows.uncommitted()).toBe(0);
    expect(rows.commits()).toBeGreaterThan(0);
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
