/**
 * Publishing benchmarks (issue #16), run by bench.ts as workloads `publish` and `connect`.
 *
 * - publish: trees of 10,000 and 100,000 small files built in-process through the Session API,
 *   on six local backends outside the data directory; the first publish, then a publish after
 *   changing 100 files (spread over the tree). The target: the second publish costs about the
 *   same in both trees (less than 2x apart). Also the longest event-loop stall during each
 *   publish (perf_hooks monitorEventLoopDelay), which must stay small: the publisher reads the
 *   rows in one synchronous stretch, and hashes and encodes off the thread.
 * - connect: `isg connect` of a new data directory from those backends plus the first `ls -lR` of
 *   the recovered tree through a real mount, in seconds per 10,000 files, beside `cp -a` of the
 *   same tree into a fresh mount.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { constants as C } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { stopServer, waitMounted } from '../mount/stop';
import { initRepository } from '../src/repo/repository';
import { Session } from '../src/repo/session';

const me = { uid: 0, gid: 0 };
const ISG = path.resolve(__dirname, '../../bin/isg');
const PASSWORD = 'bench horse battery';
/** Files per directory in the built trees (directories of 100 under directories of 100). */
const PER_DIR = 100;

export interface PublishFigures {
  files: number;
  build_s: number;
  first_publish_s: number;
  first_publish_max_stall_ms: number;
  publish_after_100_changes_s: number;
  publish_after_100_changes_max_stall_ms: number;
  /** Objects the second publish wrote. */
  written_after_100_changes: number;
}

/** The six backends' specs (local directories beside the data directory, not inside it). */
export function sixLocalBackends(dir: string): { name: string; type: string; tier: 'hot'; path: string }[] {
  return Array.from({ length: 6 }, (_, i) => ({ name: `disk${i}`, type: 'local', tier: 'hot' as const, path: path.join(dir, `disk${i}`) }));
}

/** Path of file i of a tree of n files: /dA/dB/fC, PER_DIR files a directory, PER_DIR directories a level. */
function fileOf(i: number): { dirs: string[]; file: string } {
  const leaf = Math.floor(i / PER_DIR);
  const top = Math.floor(leaf / PER_DIR);
  const dirs = [`/d${top}`, `/d${top}/e${leaf % PER_DIR}`];
  return { dirs, file: `${dirs[1]}/f${i % PER_DIR}` };
}

/** Builds a tree of `n` small files (each its own content) through the session. */
export async function buildTree(s: Session, n: number): Promise<void> {
  const made = new Set<string>();
  for (let i = 0; i < n; i++) {
    const { dirs, file } = fileOf(i);
    for (const d of dirs) {
      if (made.has(d)) continue;
      s.fs.mkdir(d, 0o755, me);
      made.add(d);
    }
    const fh = await s.fs.create(file, 0o644, C.O_RDWR, me);
    await s.fs.write(fh, 0, Buffer.from(`file ${i} of ${n}\n`));
    await s.fs.release(fh);
    // Each file's write buffer is a piece of its own until a flush: bounded memory, as the sync timer would.
    if (i % 500 === 499) await s.fs.flushAll();
  }
}

/**
 * Changes 100 files spread over a tree of buildTree's (as many directories as there are, up to
 * 100), writes flushed; `round` varies the contents.
 */
export async function changeFiles(s: Session, files: number, round: number): Promise<void> {
  for (let c = 0; c < 100; c++) {
    const i = Math.floor((c * files) / 100) + ((c + round) % PER_DIR);
    const fh = await s.fs.open(fileOf(Math.min(i, files - 1)).file, C.O_RDWR);
    await s.fs.write(fh, 0, Buffer.from(`changed ${c} in round ${round}\n`));
    await s.fs.release(fh);
  }
  await s.fs.flushAll();
}

/** Runs fn and reports its time and the longest event-loop stall meanwhile. */
export async function withStall<T>(fn: () => Promise<T>): Promise<{ value: T; seconds: number; maxStallMs: number }> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  // The histogram counts from its first tick: a stall before it would go unseen.
  await new Promise((r) => setTimeout(r, 20));
  const t = process.hrtime.bigint();
  const value = await fn();
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  h.disable();
  return { value, seconds, maxStallMs: h.max / 1e6 };
}

/** Opens a repository of `files` files on six local backends under `dir` (made, published once). */
export async function publishBench(dir: string, files: number, say: (line: string) => void): Promise<PublishFigures> {
  const data = path.join(dir, 'data');
  // A password: its key envelope on the backends lets `isg connect` (the connect workload) recover it.
  await initRepository(data, { password: PASSWORD, configure: (c) => (c.storage.backends = sixLocalBackends(dir)) });
  const s = await Session.open(data, { password: PASSWORD });
  try {
    const t0 = process.hrtime.bigint();
    await buildTree(s, files);
    await s.fs.flushAll();
    await s.packer.drain();
    const build = Number(process.hrtime.bigint() - t0) / 1e9;
    say(`[publish] ${files} files built in ${build.toFixed(1)} s`);
    const first = await withStall(() => s.publish());
    say(`[publish] first publish of ${files} files: ${first.seconds.toFixed(2)} s, max stall ${first.maxStallMs.toFixed(0)} ms`);
    await changeFiles(s, files, 0);
    const again = await withStall(() => s.publish());
    say(
      `[publish] after changing 100 of ${files} files: ${again.seconds.toFixed(3)} s, max stall ${again.maxStallMs.toFixed(0)} ms, ` +
        `${again.value?.written} objects written`,
    );
    return {
      files,
      build_s: build,
      first_publish_s: first.seconds,
      first_publish_max_stall_ms: first.maxStallMs,
      publish_after_100_changes_s: again.seconds,
      publish_after_100_changes_max_stall_ms: again.maxStallMs,
      written_after_100_changes: again.value?.written ?? 0,
    };
  } finally {
    await s.close();
  }
}

function sh(cmd: string): string {
  return execFileSync('bash', ['-c', cmd], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, stdio: ['ignore', 'pipe', 'pipe'] });
}

function seconds(fn: () => void): number {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/** Mounts `data` on `mnt` (a real FUSE mount through bin/isg) for the time of fn. */
async function mounted<T>(data: string, mnt: string, extra: string[], fn: () => T): Promise<T> {
  fs.mkdirSync(mnt, { recursive: true });
  const proc = spawn(ISG, ['mount', data, mnt, '--log-level', 'warn', ...extra], { stdio: ['ignore', 'ignore', 'inherit'] });
  await waitMounted(mnt, proc);
  try {
    return fn();
  } finally {
    await stopServer(proc, mnt, 120_000);
  }
}

export interface ConnectFigures {
  files: number;
  /** `isg connect` plus the first `ls -lR` of the mounted result, seconds per 10,000 files. */
  connect_and_ls_s_per_10k: number;
  connect_s: number;
  first_ls_lR_s: number;
  /** `cp -a` of the same tree (from a plain directory) into a fresh mount, seconds per 10,000 files. */
  cp_a_into_mount_s_per_10k: number;
  connect_vs_cp_a: number;
}

/**
 * After publishBench(dir, files): `isg connect` of a new data directory from the six backends,
 * then the first `ls -lR` of its mount; beside it, `cp -a` of the same tree into a fresh mount.
 */
export async function connectBench(dir: string, files: number, say: (line: string) => void): Promise<ConnectFigures> {
  const pw = path.join(dir, 'pw');
  fs.writeFileSync(pw, PASSWORD + '\n', { mode: 0o600 });
  const specs = sixLocalBackends(dir).flatMap((b) => ['--backend', `${b.name}=local:${b.path}`]);
  const recovered = path.join(dir, 'recovered');
  const connect = seconds(() => sh(`${ISG} connect ${recovered} ${specs.join(' ')} --password-file ${pw} --json`));
  say(`[connect] isg connect of ${files} files: ${connect.toFixed(2)} s`);
  let listed = 0;
  const ls = await mounted(recovered, path.join(dir, 'mnt-recovered'), ['--password-file', pw], () =>
    seconds(() => (listed = sh(`ls -lR ${path.join(dir, 'mnt-recovered')} | wc -l`).length)),
  );
  say(`[connect] first ls -lR of the recovered tree: ${ls.toFixed(2)} s`);
  void listed;

  // The same tree in a plain directory, copied into a fresh mount.
  const plain = path.join(dir, 'plain');
  for (let i = 0; i < files; i++) {
    const { dirs, file } = fileOf(i);
    if (i % PER_DIR === 0) fs.mkdirSync(path.join(plain, dirs[1]), { recursive: true });
    fs.writeFileSync(path.join(plain, file), `file ${i} of ${files}\n`);
  }
  const freshMnt = path.join(dir, 'mnt-fresh');
  const cp = await mounted(path.join(dir, 'fresh'), freshMnt, [], () => seconds(() => sh(`cp -a ${plain}/. ${freshMnt}/`)));
  say(`[connect] cp -a of ${files} files into a fresh mount: ${cp.toFixed(2)} s`);
  const per10k = 10_000 / files;
  return {
    files,
    connect_and_ls_s_per_10k: (connect + ls) * per10k,
    connect_s: connect,
    first_ls_lR_s: ls,
    cp_a_into_mount_s_per_10k: cp * per10k,
    connect_vs_cp_a: (connect + ls) / cp,
  };
}

// Run directly (node dist/bench/publish.js [files...]): the publish figures only.
if (require.main === module) {
  const sizes = process.argv.slice(2).map(Number);
  void (async () => {
    for (const n of sizes.length ? sizes : [10_000, 100_000]) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'isgfs-pub-'));
      try {
        const say = (l: string) => process.stderr.write(l + '\n');
        console.log(JSON.stringify(await publishBench(dir, n, say)));
        if (process.env.ISG_BENCH_CONNECT) console.log(JSON.stringify(await connectBench(dir, n, say)));
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  })();
}
