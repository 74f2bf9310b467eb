/**
 * `npm run bench`: the same workloads, in one run, on a plain directory, on a no-op FUSE
 * filesystem with isgfs's mount options (the FUSE ceiling), on gocryptfs (the peer the targets
 * are stated against; the Debian package, which `npm run setup` installs) and on an isgfs mount;
 * prints the figures and their ratios. `--json` ends the output with one JSON line.
 *
 * Workloads: sequential write and cold read of 1 GiB of incompressible data (MB/s), `tar x` of a
 * tree of thousands of small files (files/s), `ls -lR` of it warm (entries/s), stored/logical
 * bytes after writing three published versions of one npm package; then, over the backends:
 * cold sequential read after `isg cache drop` with all six local backends and with m of them
 * missing, and upload throughput (packing + erasure coding + stores) to six local backends and to
 * an S3 server on loopback; `isg clone` of the small-files tree beside `cp -a` of it inside the
 * mount (bench/clone.ts). Each cold read is the median of five, each after its own cache drop.
 *
 * `isg snapshot create` after 100 changes in trees of 10,000 and 100,000 files (bench/snapshot.ts).
 * `restore` (bench/restore.ts): `isg restore` of the tree and of the 1 GiB file from six local
 * backends beside `restic restore` of the same data.
 *
 * Publishing (bench/publish.ts): publish after changing 100 files in trees of 10,000 and 100,000;
 * `isg connect` plus the first `ls -lR` beside `cp -a` into a fresh mount.
 *
 * `--only <list>` runs a subset: a comma list of workload names (WORKLOADS), e.g. `--only tar,seq-write`.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { stopServer, waitMounted } from '../mount/stop';
import { forceUnmount } from '../mount/teardown';
import { initRepository, InitOptions } from '../src/repo/repository';
import { Session } from '../src/repo/session';
import type { RepoConfig } from '../src/repo/format';
import { S3rverProcess, S3RVER_KEY } from '../test/backend/s3rver';
import { benchSnapshot, SnapshotBench } from './snapshot';
import { benchClone, CloneFigures } from './clone';
import { restoreBench, RestoreFigures } from './restore';
import { connectBench, ConnectFigures, publishBench, PublishFigures } from './publish';

const ROOT = path.resolve(__dirname, '../..');
const ISG = path.join(ROOT, 'bin/isg');
const NOOPFS = path.join(ROOT, 'dist/bench/noopfs.js');
const json = process.argv.includes('--json');
const GiB = 1024 ** 3;
const SEQ_BYTES = Number(process.env.ISG_BENCH_BYTES ?? GiB);
const DEDUP_PACKAGE = process.env.ISG_BENCH_PACKAGE ?? 'typescript';
const DEDUP_VERSIONS = (process.env.ISG_BENCH_VERSIONS ?? '5.4.5,5.5.4,5.6.3').split(',');

/** Workload names for `--only`. */
const WORKLOADS = [
  'seq-write',
  'cold-read',
  'tar',
  'ls',
  'backend-read',
  'upload',
  'dedup',
  'snapshot',
  'clone',
  'restore',
  'publish',
  'connect',
] as const;
type Workload = (typeof WORKLOADS)[number];

function selectedWorkloads(argv: string[]): Set<Workload> {
  const at = argv.indexOf('--only');
  if (at < 0) return new Set(WORKLOADS);
  const names = (argv[at + 1] ?? '').split(',').filter((n) => n.length > 0);
  const unknown = names.filter((n) => !(WORKLOADS as readonly string[]).includes(n));
  if (!names.length || unknown.length)
    throw new Error(`--only takes a comma list of ${WORKLOADS.join(', ')} (got '${argv[at + 1] ?? ''}')`);
  return new Set(names as Workload[]);
}

function sh(cmd: string, cwd?: string): string {
  return execFileSync('bash', ['-c', cmd], { cwd, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, stdio: ['ignore', 'pipe', 'pipe'] });
}

function say(line: string): void {
  process.stderr.write(line + '\n');
}

function timed(fn: () => void): number {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

async function timedAsync(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/**
 * Empties the page cache. `sync` first: dirty pages are not dropped, and writeback or journal
 * commits (of the files `isg cache drop` just deleted, say) would otherwise run during the
 * timed read.
 */
function dropCaches(): void {
  sh('sync');
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
  } catch {
    /* not root: warm page cache stays */
  }
}

/**
 * Cold reads are repeated: the figure is the median of this many, each after its own cache drop.
 * Five, not three: a plain read after drop_caches still comes from the host's cache at times
 * (2.6 GB/s against 0.95 GB/s in the same run), and in one bench of three such runs put the
 * plain median at 2.3 GB/s.
 */
const COLD_READS = 5;

/**
 * The median of COLD_READS timed runs of `read` (MB/s), each after `prepare` (which empties the
 * caches), printed with every run: one read on this VM varies by about 10 %, and the first read
 * in a fresh daemon also pays V8's compilation of the read path, a one-time cost of the process.
 */
async function medianColdRead(label: string, mb: number, prepare: () => Promise<void> | void, read: () => void): Promise<number> {
  const runs: number[] = [];
  for (let i = 0; i < COLD_READS; i++) {
    await prepare();
    runs.push(mb / timed(read));
  }
  say(`${label}: ${runs.map((r) => r.toFixed(0)).join(', ')} MB/s`);
  return [...runs].sort((a, b) => a - b)[Math.floor(runs.length / 2)];
}

interface Target {
  name: 'plain' | 'noop' | 'gocryptfs' | 'isgfs';
  dir: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** `command`: the program and its arguments (isgfs runs as `bin/isg`, as a user runs it). */
function fuseTarget(name: 'noop' | 'isgfs', mnt: string, command: string[]): Target {
  let proc: ChildProcess | null = null;
  return {
    name,
    dir: mnt,
    async start() {
      fs.mkdirSync(mnt, { recursive: true });
      proc = spawn(command[0], command.slice(1), { stdio: ['ignore', 'ignore', 'inherit'] });
      await waitMounted(mnt, proc);
    },
    async stop() {
      if (!proc) return;
      const p = proc;
      proc = null;
      await stopServer(p, mnt, 120_000);
    },
  };
}

/**
 * gocryptfs over a directory of `root`: created on first start (a cheap scrypt cost: the key
 * derivation is not what is measured), mounted by gocryptfs itself (it returns once mounted).
 */
function gocryptfsTarget(root: string): Target {
  const cipher = path.join(root, 'cipher');
  const mnt = path.join(root, 'mnt');
  const pass = path.join(root, 'pass');
  let mounted = false;
  return {
    name: 'gocryptfs',
    dir: mnt,
    async start() {
      if (!fs.existsSync(cipher)) {
        fs.mkdirSync(cipher, { recursive: true });
        fs.mkdirSync(mnt, { recursive: true });
        fs.writeFileSync(pass, 'isgfs-bench\n', { mode: 0o600 });
        sh(`gocryptfs -init -q -passfile ${pass} -scryptn 10 ${cipher} 2>/dev/null`);
      }
      sh(`gocryptfs -q -passfile ${pass} ${cipher} ${mnt} 2>/dev/null`);
      mounted = true;
    },
    async stop() {
      if (!mounted) return;
      mounted = false;
      await forceUnmount(mnt);
    },
  };
}

async function main(): Promise<void> {
  const only = selectedWorkloads(process.argv);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'isgfs-bench-'));
  const shm = fs.existsSync('/dev/shm') ? fs.mkdtempSync('/dev/shm/isgfs-bench-') : fs.mkdtempSync(path.join(work, 'src-'));
  const data = path.join(work, 'data');
  const plain = path.join(work, 'plain');
  fs.mkdirSync(plain);
  const targets: Target[] = [
    { name: 'plain', dir: plain, start: async () => undefined, stop: async () => undefined },
    fuseTarget('noop', path.join(work, 'noop'), [process.execPath, NOOPFS, path.join(work, 'noop')]),
    gocryptfsTarget(path.join(work, 'gocryptfs')),
    fuseTarget('isgfs', path.join(work, 'isg'), [ISG, 'mount', data, path.join(work, 'isg'), '--log-level', 'warn']),
  ];
  const results: Record<string, Record<string, number>> = { plain: {}, noop: {}, gocryptfs: {}, isgfs: {} };
  let snap: SnapshotBench | undefined;
  let clone: CloneFigures | undefined;
  let restored: RestoreFigures | undefined;
  const published: PublishFigures[] = [];
  let connected: ConnectFigures | undefined;
  try {
    say(`preparing inputs in ${shm}`);
    if (['seq-write', 'cold-read', 'backend-read', 'upload', 'restore'].some((w) => only.has(w as Workload)))
      sh(`head -c ${SEQ_BYTES} /dev/urandom > ${shm}/random.bin`);
    // A tree of thousands of small files: this project's node_modules, minus the largest packages.
    sh(`tar -C ${ROOT}/node_modules -cf ${shm}/tree.tar --exclude='typescript' --exclude='@aws-sdk' --exclude='*.node' .`);
    const treeFiles = Number(sh(`tar -tf ${shm}/tree.tar | grep -v '/$' | wc -l`).trim());
    const treeEntries = Number(sh(`tar -tf ${shm}/tree.tar | wc -l`).trim());
    const mb = SEQ_BYTES / 1e6;

    for (const t of targets) {
      if (!['seq-write', 'cold-read', 'tar', 'ls'].some((w) => only.has(w as Workload))) break;
      await t.start();
      if (only.has('seq-write') || only.has('cold-read')) {
        say(`[${t.name}] sequential write of ${mb.toFixed(0)} MB`);
        const w = timed(() => sh(`dd if=${shm}/random.bin of=${t.dir}/seq.bin bs=1M conv=fsync status=none`));
        if (only.has('seq-write')) results[t.name].seq_write_MBps = mb / w;
      }
      if (only.has('cold-read')) {
        say(`[${t.name}] cold read`);
        results[t.name].cold_read_MBps = await medianColdRead(
          `[${t.name}] cold reads`,
          mb,
          async () => {
            if (t.name === 'isgfs') {
              await t.stop();
              await t.start();
            } // a remount empties the memory LRU (noopfs keeps no files across one)
            dropCaches();
          },
          () => sh(`dd if=${t.dir}/seq.bin of=/dev/null bs=1M status=none`),
        );
      }
      fs.rmSync(path.join(t.dir, 'seq.bin'), { force: true });
      if (only.has('tar') || only.has('ls')) {
        say(`[${t.name}] tar x of ${treeFiles} files`);
        fs.mkdirSync(path.join(t.dir, 'tree'));
        const x = timed(() => sh(`tar -C ${t.dir}/tree -xf ${shm}/tree.tar`));
        if (only.has('tar')) results[t.name].tar_x_files_per_s = treeFiles / x;
      }
      if (only.has('ls')) {
        sh(`ls -lR ${t.dir}/tree > /dev/null`);
        const l = timed(() => sh(`ls -lR ${t.dir}/tree > /dev/null`));
        results[t.name].ls_lR_entries_per_s = treeEntries / l;
      }
      await t.stop();
    }

    // Cold reads from the backends: all present, then m missing.
    if (only.has('backend-read')) {
      const bdata = path.join(work, 'cold-data');
      const bt = fuseTarget('isgfs', path.join(work, 'cold'), [ISG, 'mount', bdata, path.join(work, 'cold'), '--log-level', 'warn']);
      await bt.start();
      sh(`dd if=${shm}/random.bin of=${bt.dir}/seq.bin bs=1M conv=fsync status=none`);
      sh(`${process.execPath} ${ISG} flush ${bdata}`);
      const coldRead = (label: string) =>
        medianColdRead(
          label,
          mb,
          () => {
            sh(`${process.execPath} ${ISG} cache drop ${bdata}`);
            dropCaches();
          },
          () => sh(`dd if=${bt.dir}/seq.bin of=/dev/null bs=1M status=none`),
        );
      say('[isgfs] cold read from the backends, all present');
      results.isgfs.backend_cold_read_MBps = await coldRead('[isgfs] cold reads from the backends');
      const lost = [0, 2].map((i) => path.join(bdata, 'backends', `local${i}`));
      for (const d of lost) fs.renameSync(d, d + '.away');
      say('[isgfs] cold read from the backends, 2 of 6 missing');
      try {
        results.isgfs.backend_cold_read_m_missing_MBps = await coldRead('[isgfs] cold reads, 2 of 6 backends missing');
      } finally {
        for (const d of lost) fs.renameSync(d + '.away', d);
      }
      await bt.stop();
    }

    // Upload throughput, in-process: the packer alone (chunking and encryption happen before).
    const upload = async (label: string, bytes: number, configure?: InitOptions['configure']) => {
      const dir = path.join(work, `upload-${label}`);
      await initRepository(dir, { configure });
      const s = await Session.open(dir);
      try {
        const fh = await s.fs.create('/f', 0o644, 1, { uid: 0, gid: 0 });
        const src = fs.openSync(`${shm}/random.bin`, 'r');
        const buf = Buffer.alloc(1 << 20);
        for (let off = 0; off < bytes; off += buf.length) {
          fs.readSync(src, buf, 0, buf.length, off % SEQ_BYTES);
          await s.fs.write(fh, off, buf);
        }
        fs.closeSync(src);
        await s.fs.release(fh);
        say(`[isgfs] upload of ${(bytes / 1e6).toFixed(0)} MB to ${label}`);
        return bytes / 1e6 / (await timedAsync(() => s.flush()));
      } finally {
        await s.close();
      }
    };
    if (only.has('upload')) {
      results.isgfs.upload_6_local_MBps = await upload('local', SEQ_BYTES);
      const s3 = await S3rverProcess.start('isgbench');
      try {
        const s3bytes = Math.min(SEQ_BYTES, 256 * 1024 * 1024);
        results.isgfs.upload_6_s3_MBps = await upload('s3', s3bytes, (c: RepoConfig) => {
          c.storage.backends = Array.from({ length: 6 }, (_, i) => ({
            name: `s3${i}`,
            type: 's3',
            tier: 'warm' as const,
            endpoint: s3.endpoint,
            bucket: 'isgbench',
            prefix: `b${i}/`,
            region: 'us-east-1',
            accessKeyId: S3RVER_KEY,
            secretAccessKey: S3RVER_KEY,
          }));
        });
      } finally {
        await s3.close();
      }
    }

    // Dedup over three versions of one package, on isgfs only (plain and noop store everything).
    if (only.has('dedup')) {
      say(`dedup: ${DEDUP_PACKAGE}@${DEDUP_VERSIONS.join(', ')}`);
      const cache = path.join(os.homedir(), '.cache/isgfs-bench');
      fs.mkdirSync(cache, { recursive: true });
      const tarballs = DEDUP_VERSIONS.map((v) => {
        const file = path.join(cache, `${DEDUP_PACKAGE.replace(/[@/]/g, '_')}-${v}.tgz`);
        if (!fs.existsSync(file)) {
          const name = sh(`npm pack --silent ${DEDUP_PACKAGE}@${v}`, cache).trim().split('\n').pop()!;
          fs.renameSync(path.join(cache, name), file);
        }
        return file;
      });
      const dedupData = path.join(work, 'dedup-data');
      const dd = fuseTarget('isgfs', path.join(work, 'dedup'), [ISG, 'mount', dedupData, path.join(work, 'dedup'), '--log-level', 'warn']);
      await dd.start();
      tarballs.forEach((tgz, i) => sh(`mkdir -p ${dd.dir}/v${i} && tar -C ${dd.dir}/v${i} -xzf ${tgz}`));
      await dd.stop();
      const st = JSON.parse(sh(`${process.execPath} ${ISG} status ${dedupData} --json`)) as { logicalBytes: number; storedBytes: number };
      results.isgfs.three_version_stored_over_logical = st.storedBytes / st.logicalBytes;
      results.isgfs.three_version_logical_bytes = st.logicalBytes;
    }
    if (only.has('snapshot')) snap = await benchSnapshot(work, say);
    if (only.has('clone')) {
      const mount = async (d: string, m: string) => {
        const t = fuseTarget('isgfs', m, [ISG, 'mount', d, m, '--log-level', 'warn', '--publish-interval', '1h']);
        await t.start();
        return () => t.stop();
      };
      clone = await benchClone({ work, treeTar: `${shm}/tree.tar`, treeEntries, isg: ISG, mount, say });
    }
    // isg restore against restic restore (bench/restore.ts).
    if (only.has('restore')) {
      const rw = path.join(work, 'restore');
      fs.mkdirSync(rw);
      restored = await restoreBench({
        isg: ISG,
        work: rw,
        treeTar: `${shm}/tree.tar`,
        treeFiles,
        bigFile: `${shm}/random.bin`,
        mount: async (d, m) => {
          const t = fuseTarget('isgfs', m, [ISG, 'mount', d, m, '--log-level', 'warn']);
          await t.start();
          return () => t.stop();
        },
        dropCaches,
        say,
      });
    }

    // Publishing and recovery (bench/publish.ts): trees built in-process, six local backends.
    if (only.has('publish') || only.has('connect')) {
      for (const n of only.has('publish') ? [10_000, 100_000] : [10_000]) {
        const dir = path.join(work, `publish-${n}`);
        fs.mkdirSync(dir);
        published.push(await publishBench(dir, n, say));
        if (n === 10_000 && only.has('connect')) connected = await connectBench(dir, n, say);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    for (const t of targets) await t.stop().catch(() => undefined);
    fs.rmSync(shm, { recursive: true, force: true });
    fs.rmSync(work, { recursive: true, force: true });
  }

  const ratio = (k: string, base: 'plain' | 'noop' | 'gocryptfs') => results.isgfs[k] / results[base][k];
  const figures = {
    seq_write_MBps: results.isgfs.seq_write_MBps,
    seq_write_vs_noop_fuse: ratio('seq_write_MBps', 'noop'),
    seq_write_vs_plain: ratio('seq_write_MBps', 'plain'),
    cold_read_MBps: results.isgfs.cold_read_MBps,
    cold_read_vs_plain: ratio('cold_read_MBps', 'plain'),
    cold_read_vs_noop_fuse: ratio('cold_read_MBps', 'noop'),
    cold_read_vs_gocryptfs: ratio('cold_read_MBps', 'gocryptfs'),
    seq_write_vs_gocryptfs: ratio('seq_write_MBps', 'gocryptfs'),
    tar_x_vs_gocryptfs: ratio('tar_x_files_per_s', 'gocryptfs'),
    tar_x_files_per_s: results.isgfs.tar_x_files_per_s,
    tar_x_vs_plain: ratio('tar_x_files_per_s', 'plain'),
    ls_lR_entries_per_s: results.isgfs.ls_lR_entries_per_s,
    ls_lR_vs_plain: ratio('ls_lR_entries_per_s', 'plain'),
    three_version_stored_over_logical: results.isgfs.three_version_stored_over_logical,
    backend_cold_read_MBps: results.isgfs.backend_cold_read_MBps,
    backend_cold_read_vs_plain: results.isgfs.backend_cold_read_MBps / results.plain.cold_read_MBps,
    backend_cold_read_vs_gocryptfs: results.isgfs.backend_cold_read_MBps / results.gocryptfs.cold_read_MBps,
    backend_cold_read_m_missing_MBps: results.isgfs.backend_cold_read_m_missing_MBps,
    m_missing_vs_all: results.isgfs.backend_cold_read_m_missing_MBps / results.isgfs.backend_cold_read_MBps,
    upload_6_local_MBps: results.isgfs.upload_6_local_MBps,
    upload_6_s3_MBps: results.isgfs.upload_6_s3_MBps,
    ...(clone ? { clone } : {}),
    ...restored,
    baseline: { plain: results.plain, noop_fuse: results.noop, gocryptfs: results.gocryptfs },
    ...(snap ? { snapshot: snap } : {}),
    publish: published,
    connect: connected,
  };
  const f = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(3));
  const rows = ['seq_write_MBps', 'cold_read_MBps', 'tar_x_files_per_s', 'ls_lR_entries_per_s'].filter((k) => k in results.isgfs);
  if (rows.length)
    console.log(
      `${'workload'.padEnd(22)}${'plain'.padStart(10)}${'noop FUSE'.padStart(11)}${'gocryptfs'.padStart(11)}${'isgfs'.padStart(10)}` +
        `${'vs plain'.padStart(10)}${'vs noop'.padStart(9)}${'vs gocryptfs'.padStart(14)}`,
    );
  for (const k of rows) {
    console.log(
      `${k.padEnd(22)}${f(results.plain[k]).padStart(10)}${f(results.noop[k]).padStart(11)}${f(results.gocryptfs[k]).padStart(11)}` +
        `${f(results.isgfs[k]).padStart(10)}${f(ratio(k, 'plain')).padStart(10)}${f(ratio(k, 'noop')).padStart(9)}${f(ratio(k, 'gocryptfs')).padStart(14)}`,
    );
  }
  if (only.has('dedup'))
    console.log(
      `three versions of ${DEDUP_PACKAGE}: stored/logical = ${f(figures.three_version_stored_over_logical)} ` +
        `(${(results.isgfs.three_version_logical_bytes / 1e6).toFixed(1)} MB logical)`,
    );
  if (only.has('backend-read'))
    console.log(
      `cold read from backends: ${f(figures.backend_cold_read_MBps)} MB/s (${f(figures.backend_cold_read_vs_plain)}x plain, ` +
        `${f(figures.backend_cold_read_vs_gocryptfs)}x gocryptfs), ` +
        `with 2 of 6 missing ${f(figures.backend_cold_read_m_missing_MBps)} MB/s (${f(figures.m_missing_vs_all)}x)`,
    );
  if (only.has('upload'))
    console.log(
      `upload: six local backends ${f(figures.upload_6_local_MBps)} MB/s, six S3 backends (s3rver) ${f(figures.upload_6_s3_MBps)} MB/s`,
    );
  if (snap)
    console.log(
      `snapshot create after ${100} changes: 10,000 files ${f(snap.create_ms[10_000])} ms, 100,000 files ${f(snap.create_ms[100_000])} ms ` +
        `(${f(snap.ratio_100k_over_10k)}x); a publish without snapshot: ${f(snap.publish_ms[10_000])} / ${f(snap.publish_ms[100_000])} ms`,
    );
  if (clone)
    console.log(
      `clone of the small-files tree: isg clone ${f(clone.clone_s)} s (${f(clone.clone_daemon_s)} s in the daemon: ` +
        `read ${f(clone.clone_read_s)} s, graft ${f(clone.clone_graft_s)} s; ` +
        `${f(clone.clone_entries_per_s)} entries/s), cp -a ${f(clone.cp_a_s)} s: ${f(clone.clone_vs_cp_a)}x (target >= 100x)`,
    );
  if (restored)
    console.log(
      `restore (six local backends, cold): tree ${f(restored.isg_restore_tree_files_per_s)} files/s ` +
        `(restic ${f(restored.restic_restore_tree_files_per_s)}, ${f(restored.restore_tree_vs_restic)}x), ` +
        `1 GiB file ${f(restored.isg_restore_file_MBps)} MB/s (restic ${f(restored.restic_restore_file_MBps)}, ${f(restored.restore_file_vs_restic)}x); ` +
        `peak memory ${f(restored.isg_restore_file_peak_rss_MB)} MB (restic ${f(restored.restic_restore_file_peak_rss_MB)} MB); ` +
        `ceilings: tar -x of the tree ${f(restored.tar_x_tree_files_per_s)} files/s, cat of the shard files ${f(restored.cat_shards_MBps)} MB/s`,
    );
  for (const p of published)
    console.log(
      `publish, ${p.files} files: first ${p.first_publish_s.toFixed(2)} s (max stall ${p.first_publish_max_stall_ms.toFixed(0)} ms), ` +
        `after changing 100 files ${p.publish_after_100_changes_s.toFixed(3)} s (max stall ${p.publish_after_100_changes_max_stall_ms.toFixed(0)} ms)`,
    );
  if (published.length === 2)
    console.log(
      `publish after 100 changes, 100,000 vs 10,000 files: ${f(published[1].publish_after_100_changes_s / published[0].publish_after_100_changes_s)}x (target < 2x)`,
    );
  if (connected)
    console.log(
      `connect + first ls -lR: ${f(connected.connect_and_ls_s_per_10k)} s per 10,000 files (connect ${f(connected.connect_s)} s, ls -lR ${f(connected.first_ls_lR_s)} s); ` +
        `cp -a into a fresh mount ${f(connected.cp_a_into_mount_s_per_10k)} s per 10,000 files (${f(connected.connect_vs_cp_a)}x)`,
    );
  if (json) console.log(JSON.stringify(figures));
}

main().catch((e: Error) => {
  process.stderr.write(`bench failed: ${e.message}\n`);
  process.exit(1);
});
