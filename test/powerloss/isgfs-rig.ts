/**
 * One lane of the isgfs power-loss test: a lazyfs (test/powerloss/harness.ts) holding an isgfs
 * data directory, the real daemon (`isg mount`, from dist/) serving it on a mountpoint outside
 * the lazyfs, a model of what the mount may show (isgfs-model.ts), and crash points one after
 * another: run the workload (isgfs-workload.ts), wait for a trigger, cut the power (kill -9 the
 * daemon, clear its mount, crash the lazyfs: all held writes lost, or a torn subset), mount again,
 * judge what the mount shows and what `isg check` says. A point that finds problems is recorded
 * and the lane starts again from a fresh repository, so one defect is reported once.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ChildProcess, spawn } from 'node:child_process';
import { forceUnmount } from '../../mount/teardown';
import { ISG, isg, kill9, mount, Mounted } from '../helpers/mount';
import { prng } from '../helpers/tmp';
import { HeldOp, LazyFsHandle, startLazyFs } from './harness';
import { DirModel, now, Observed } from './isgfs-model';
import { Workload } from './isgfs-workload';

const fsp = fs.promises;

/**
 * The daemon's writeback interval: 2 s through `--writeback` when this isg has it (a shorter wait
 * for the long epochs), else its fixed 5 s; and the time its flush and sync may take on top: a round
 * that fsyncs a hundred block files through lazyfs took more than 1.5 s on a loaded machine.
 */
export let WRITEBACK_MS = 5000;
export const WRITEBACK_GRACE_MS = 3000;
let writebackArgs: string[] = [];

/** Asks `isg mount --help` whether --writeback is there; sets WRITEBACK_MS. */
export async function probeWriteback(): Promise<void> {
  const help = await isg(['mount', '--help']);
  if (/--writeback/.test(help.stdout)) {
    WRITEBACK_MS = Number(process.env.ISG_POWERLOSS_WRITEBACK_MS ?? 2000);
    writebackArgs = ['--writeback', `${WRITEBACK_MS}ms`];
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export type Trigger =
  'random' | 'long' | 'fsync' | 'flush' | 'cache-drop' | 'umount' | 'recovery' | 'watch-commit' | 'watch-shard' | 'watch-block';
export type CrashKind = 'drop' | 'torn-write' | 'torn-page' | 'meta-pages' | 'lmdb-only' | 'all-but-lmdb';

const TRIGGERS: [number, Trigger][] = [
  [5, 'random'],
  [2, 'long'],
  [3, 'fsync'],
  [2, 'flush'],
  [2, 'cache-drop'],
  [2, 'umount'],
  [2, 'recovery'],
  [2, 'watch-commit'],
  [2, 'watch-shard'],
  [2, 'watch-block'],
];
const KINDS: [number, CrashKind][] = [
  [8, 'drop'],
  [4, 'torn-write'],
  [3, 'torn-page'],
  [2, 'meta-pages'],
  [2, 'lmdb-only'],
  [1, 'all-but-lmdb'],
];

function weighted<T>(r: ReturnType<typeof prng>, table: [number, T][]): T {
  const total = table.reduce((a, [w]) => a + w, 0);
  let x = (r.int(1_000_000) / 1_000_000) * total;
  for (const [w, v] of table) if ((x -= w) < 0) return v;
  return table[table.length - 1][1];
}

export interface PointResult {
  lane: number;
  point: number;
  seed: number;
  what: string;
  problems: string[];
  ms: number;
  /** Names judged, and those that had to read back exactly. */
  names: number;
  exact: number;
  /** Log of the daemon that crashed, and of the one mounted after (their last lines). */
  logs?: string;
}

export class Lane {
  lazy!: LazyFsHandle;
  daemon: Mounted | null = null;
  readonly model = new DirModel();
  readonly mnt: string;
  private get mountArgs(): string[] {
    return ['--cache-dir-size', '192K', ...writebackArgs];
  }

  constructor(
    readonly id: number,
    readonly dir: string,
    readonly seed: number,
  ) {
    this.mnt = path.join(dir, 'mnt');
  }

  get data(): string {
    return path.join(this.lazy.mnt, 'data');
  }

  /** The path of the data directory as lazyfs reports it in held ops. */
  private held(rel: string): string {
    return `/data/${rel}`;
  }

  async setup(): Promise<void> {
    this.lazy = await startLazyFs(path.join(this.dir, 'disk'), path.join(this.dir, 'lazy'));
    await this.fresh();
  }

  /**
   * A new repository on the lazyfs, with small chunks and packs and a short quiet time, so that a
   * few seconds of a small workload make many blocks, packs and evictions; then a checkpoint.
   */
  async fresh(): Promise<void> {
    if (this.daemon) await kill9(this.daemon).catch(() => undefined);
    this.daemon = null;
    await forceUnmount(this.mnt);
    await fsp.rm(this.data, { recursive: true, force: true });
    const r = await isg(['init', this.data]);
    if (r.code !== 0) throw new Error(`isg init: ${r.stderr}`);
    const configFile = path.join(this.data, 'config');
    const config = JSON.parse(await fsp.readFile(configFile, 'utf8')) as {
      chunker: Record<string, number>;
      storage: { packSize: number; packQuietMs: number };
    };
    Object.assign(config.chunker, { minSize: 4096, avgSize: 16_384, maxSize: 65_536 });
    config.storage.packSize = 192 * 1024;
    config.storage.packQuietMs = 300;
    await fsp.writeFile(configFile, JSON.stringify(config, null, 2) + '\n');
    await this.lazy.sync();
    this.model.reset();
    this.daemon = await this.mountHere();
  }

  async stop(): Promise<void> {
    if (this.daemon) await kill9(this.daemon).catch(() => undefined);
    this.daemon = null;
    await forceUnmount(this.mnt).catch(() => undefined);
    await this.lazy?.stop();
  }

  /** One crash point: workload, trigger, power cut, remount, judgement. */
  async point(p: number): Promise<PointResult> {
    const started = Date.now();
    const seed = (this.seed * 1000 + p) >>> 0;
    const r = prng(seed);
    const trigger = weighted(r, TRIGGERS);
    const kind = weighted(r, KINDS);
    const kindSeed = r.int(1 << 30);
    const what: string[] = [`trigger ${trigger}`];
    const problems: string[] = [];
    const logs: string[] = [];

    let fsyncs = 0;
    let onFsync: (() => void) | null = null;
    const long = trigger === 'long';
    const w = new Workload(this.mnt, this.model, seed, {
      workers: 3,
      logFor: long ? 1000 : r.int(2) ? 800 : 0,
      burst: long ? 1200 : undefined,
      quietUntil: long ? 1200 + WRITEBACK_MS + WRITEBACK_GRACE_MS : undefined,
      onFsync: () => {
        fsyncs++;
        onFsync?.();
      },
    });
    if (!this.daemon) throw new Error('no daemon');
    let daemon: Mounted = this.daemon;
    let side: ChildProcess | null = null;
    let sideOut = '';
    const runSide = (args: string[]): Promise<number | null> => {
      side = spawn(process.execPath, [ISG, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      side.stdout!.on('data', (d: Buffer) => (sideOut += d.toString()));
      side.stderr!.on('data', (d: Buffer) => (sideOut += d.toString()));
      const s = side;
      return new Promise((resolve) => s.once('exit', (c) => resolve(c)));
    };

    w.start();
    let crashAt = 0;
    // ---- wait for the trigger; crashAt is the time of the power cut (or of the kill -9 before it)
    switch (trigger) {
      case 'random': {
        const d = 300 + r.int(2500);
        what.push(`after ${d} ms`);
        await sleep(d);
        break;
      }
      case 'long': {
        const d = 1200 + WRITEBACK_MS + WRITEBACK_GRACE_MS + 300 + r.int(1500);
        what.push(`after ${d} ms (writes in the first 1.2 s)`);
        await sleep(d);
        break;
      }
      case 'fsync': {
        const n = 1 + r.int(4);
        what.push(`right after fsync #${n} returned`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 6000);
          onFsync = () => {
            if (fsyncs >= n) {
              clearTimeout(t);
              resolve();
            }
          };
        });
        break;
      }
      case 'flush':
      case 'cache-drop': {
        const before = 200 + r.int(800);
        const d = r.int(trigger === 'flush' ? 1500 : 800);
        what.push(`${d} ms into isg ${trigger === 'flush' ? 'flush' : 'cache drop'} (started after ${before} ms)`);
        await sleep(before);
        const synced = trigger === 'flush' ? this.model.syncAll() : null;
        const exited = runSide(trigger === 'flush' ? ['flush', this.data] : ['cache', 'drop', this.data]);
        let code: number | null | undefined;
        void exited.then((c) => (code = c));
        await sleep(d);
        if (code !== undefined) {
          what.push(`(it returned ${code} first)`);
          if (code === 0) synced?.();
          else problems.push(`isg ${trigger} failed (${code}): ${sideOut.trim()}`);
        }
        break;
      }
      case 'umount': {
        const before = 300 + r.int(1200);
        const d = r.int(1500);
        what.push(`${d} ms into isg umount (started after ${before} ms)`);
        await sleep(before);
        await w.halt(); // the files are closed: an unmount waits for nothing
        const synced = this.model.syncAll();
        const exited = runSide(['umount', this.mnt]);
        let code: number | null | undefined;
        void exited.then((c) => (code = c));
        await sleep(d);
        if (code !== undefined) {
          const dcode = await daemon.exited;
          what.push(`(it returned ${code}, the daemon exited ${dcode} first)`);
          if (code === 0 && dcode === 0) synced();
          else problems.push(`isg umount -> ${code}, daemon exit ${dcode}: ${sideOut.trim()} ${daemon.stderr().trim()}`);
        }
        break;
      }
      case 'recovery': {
        // kill -9 (the machine stays up), mount again, cut the power during its recovery.
        const before = 300 + r.int(1500);
        const d = r.int(500);
        what.push(`kill -9 after ${before} ms, then a power cut ${d} ms after the next mount`);
        await sleep(before);
        crashAt = now();
        void w.halt();
        logs.push(await this.kill(daemon));
        await w.halt();
        try {
          daemon = this.daemon = await this.mountHere();
        } catch (e) {
          problems.push(`isg mount after kill -9 failed: ${(e as Error).message.slice(0, 2000)}`);
        }
        await sleep(d);
        break;
      }
      case 'watch-commit':
      case 'watch-shard':
      case 'watch-block': {
        const where = { 'watch-commit': 'meta', 'watch-shard': 'backends/local0/shards', 'watch-block': 'cache/blocks' }[trigger];
        const d = r.int(60);
        what.push(`${d} ms after a change in ${where}`);
        await sleep(200);
        const fired = await watchFor(path.join(this.data, where), 5000);
        if (!fired) what.push('(no change in 5 s)');
        await sleep(d);
        break;
      }
    }
    // ---- the power cut
    if (!crashAt) crashAt = now();
    const phases: string[] = [];
    let mark = Date.now();
    const phase = (name: string) => {
      phases.push(`${name} ${Date.now() - mark}`);
      mark = Date.now();
    };
    phases.push(`workload ${mark - started}`);
    void w.halt();
    if (this.daemon) logs.push(await this.kill(this.daemon));
    phase('kill');
    await w.halt();
    const sideProc = side as ChildProcess | null;
    if (sideProc && sideProc.exitCode === null && sideProc.signalCode === null) {
      sideProc.kill('SIGKILL'); // (the client of a dead daemon: it would get an error anyway)
    }
    if (w.errors.length) problems.push(...w.errors.map((e) => `before the crash: ${e}`));
    phase('halt');
    what.push(await this.cut(kind, kindSeed));
    phase('cut');

    // ---- after: mount, check, judge
    let observed: Observed[] | null = null;
    let judged = { problems: [] as string[], names: 0, exact: 0 };
    try {
      this.daemon = await this.mountHere();
    } catch (e) {
      problems.push(`isg mount after the crash failed: ${(e as Error).message.slice(0, 3000)}`);
    }
    phase('mount');
    if (this.daemon) {
      const [obs, check] = await Promise.all([
        observe(this.mnt).catch((e: Error) => {
          problems.push(`the root directory cannot be read after the crash: ${e.message}`);
          return null;
        }),
        isg(['check', this.data]),
      ]);
      observed = obs;
      if (obs) {
        judged = this.model.judge(obs, crashAt, WRITEBACK_MS + WRITEBACK_GRACE_MS);
        problems.push(...judged.problems);
      }
      if (check.code !== 0 || !/no problems/.test(check.stdout))
        problems.push(`isg check -> ${check.code}: ${(check.stdout + check.stderr).trim().split('\n').slice(0, 12).join(' | ')}`);
      phase('judge+check');
    }
    const result: PointResult = {
      lane: this.id,
      point: p,
      seed,
      what: `${what.join(' ')}; ops ${JSON.stringify(w.counts)}; ms: ${phases.join(', ')}`,
      problems,
      ms: Date.now() - started,
      names: judged.names,
      exact: judged.exact,
    };
    if (problems.length) {
      if (this.daemon) logs.push(this.daemon.stderr());
      result.logs = logs
        .map((l) => l.trim().split('\n').slice(-8).join('\n'))
        .filter(Boolean)
        .join('\n---\n');
      await this.fresh();
    } else this.model.collapse(observed!);
    return result;
  }

  /**
   * `isg mount` on the lane's mountpoint. A call that a halted worker had already sent when the
   * mount went away may have landed in the bare directory under it: such strays are removed first
   * (they are not in the repository, and the mount would refuse a directory that is not empty).
   */
  private async mountHere(): Promise<Mounted> {
    for (const name of await fsp.readdir(this.mnt).catch(() => [] as string[])) {
      await fsp.rm(path.join(this.mnt, name), { recursive: true, force: true });
    }
    return mount(this.data, this.mnt, this.mountArgs);
  }

  /** kill -9 the daemon and clear its mount; its log. */
  private async kill(d: Mounted): Promise<string> {
    await kill9(d);
    if (this.daemon === d) this.daemon = null;
    return d.stderr();
  }

  /** The power cut of the lazyfs, of the given kind; says what reached the disk. */
  private async cut(kind: CrashKind, seed: number): Promise<string> {
    const held = await this.lazy.pending();
    const mdb = this.held('meta/data.mdb');
    const lmdb = held.filter((o) => o.path === mdb);
    const meta = lmdb.filter((o) => o.offset < 2 * 4096);
    const r = prng(seed);
    const seqs = (ops: HeldOp[]) => [...new Set(ops.map((o) => o.seq))];
    let report;
    switch (kind) {
      case 'drop':
        report = await this.lazy.crash();
        break;
      case 'torn-write':
      case 'torn-page': {
        const p = 0.2 + r.int(60) / 100;
        report = await this.lazy.crashTorn(seed, { p, unit: kind === 'torn-page' ? 'page' : 'write' });
        break;
      }
      case 'meta-pages':
        // LMDB's meta pages reach the disk, and a random half of the rest.
        report = await this.lazy.crashApply(
          seqs([...meta, ...held.filter((o) => o.path !== mdb || o.offset >= 8192).filter(() => r.int(2) === 0)]),
        );
        break;
      case 'lmdb-only':
        report = await this.lazy.crashApply(seqs(lmdb));
        break;
      case 'all-but-lmdb':
        report = await this.lazy.crashApply(seqs(held.filter((o) => o.path !== mdb)));
        break;
    }
    const n = (ops: HeldOp[]) => ops.length;
    const where: Record<string, number> = {};
    for (const o of held) {
      const top = o.path.split('/').slice(2, 4).join('/'); // e.g. meta/data.mdb, cache/blocks, backends/local3
      where[top] = (where[top] ?? 0) + 1;
    }
    return (
      `crash ${kind} (seed ${seed}): ${n(report.applied)} of ${n(report.applied) + n(report.dropped)} held writes landed ` +
      `(${n(meta)} on LMDB meta pages; held: ${JSON.stringify(where)})`
    );
  }
}

/**
 * Resolves true at the first change under dir or below (inotify sees the daemon's own writes
 * through the lazyfs), false after ms. A directory not made yet is watched from its parent.
 */
function watchFor(dir: string, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    let w: fs.FSWatcher | null = null;
    const finish = (v: boolean) => {
      clearTimeout(t);
      w?.close();
      resolve(v);
    };
    const t = setTimeout(() => finish(false), ms);
    let at = dir;
    while (!fs.existsSync(at)) at = path.dirname(at);
    try {
      w = fs.watch(at, { recursive: true }, () => finish(true));
      w.on('error', () => finish(false));
    } catch {
      finish(false);
    }
  });
}

/** Every name in the root of the mount: inode, link count, content (or the error reading it gave). */
async function observe(mnt: string): Promise<Observed[]> {
  const out: Observed[] = [];
  for (const name of (await fsp.readdir(mnt)).sort()) {
    const o: Observed = { name, ino: -1, nlink: 0 };
    try {
      const st = await fsp.lstat(path.join(mnt, name));
      o.ino = st.ino;
      o.nlink = st.nlink;
      o.data = await fsp.readFile(path.join(mnt, name));
    } catch (e) {
      o.error = (e as Error).message;
    }
    out.push(o);
  }
  return out;
}
