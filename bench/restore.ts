/**
 * Workload `restore` of `npm run bench`: `isg restore` of the small-files tree and of a 1 GiB
 * file from six local backends (the local tier dropped: every block comes from the packs),
 * beside `restic restore` of the same data from a local restic repository (Debian's restic,
 * installed by `npm run setup`). Files/s for the tree, MB/s for the file, and their ratios to
 * restic's. The page cache is dropped before every timed restore (when root), for both.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface RestoreBenchInput {
  /** bin/isg. */
  isg: string;
  /** A fresh directory to work in. */
  work: string;
  /** A tar of the small-files tree, and its number of files. */
  treeTar: string;
  treeFiles: number;
  /** A file of incompressible data (1 GiB in the full run). */
  bigFile: string;
  /** Mounts the repository in `data` on `mnt`; the returned function unmounts it. */
  mount: (data: string, mnt: string) => Promise<() => Promise<void>>;
  dropCaches: () => void;
  say: (line: string) => void;
}

export interface RestoreFigures {
  isg_restore_tree_files_per_s: number;
  restic_restore_tree_files_per_s: number;
  restore_tree_vs_restic: number;
  isg_restore_file_MBps: number;
  restic_restore_file_MBps: number;
  restore_file_vs_restic: number;
  /** Peak resident memory of the restoring process, for the 1 GiB file. */
  isg_restore_file_peak_rss_MB: number;
  restic_restore_file_peak_rss_MB: number;
  /**
   * Ceilings, in the same run: `tar -x` of the tree's tar (from memory) into a new directory: what
   * making those files and directories costs the kernel and the disk, with no reads or decoding;
   * and `cat` of every shard file of the repository (cold): the raw read of the backends' files.
   */
  tar_x_tree_files_per_s: number;
  cat_shards_MBps: number;
}

function sh(cmd: string, env?: NodeJS.ProcessEnv): string {
  return execFileSync('bash', ['-c', cmd], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ...env } });
}

function timed(fn: () => void): number {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/** Runs `cmd` under GNU time: seconds, and peak resident memory in MB. */
function measured(cmd: string, rssFile: string, env?: NodeJS.ProcessEnv): { s: number; rssMB: number } {
  const s = timed(() => sh(`/usr/bin/time -f %M -o ${rssFile} ${cmd}`, env));
  return { s, rssMB: Number(fs.readFileSync(rssFile, 'utf8').trim().split('\n').pop()) / 1024 };
}

export async function restoreBench(o: RestoreBenchInput): Promise<RestoreFigures> {
  try {
    sh('command -v restic');
  } catch {
    throw new Error('restic is not installed (npm run setup installs it)');
  }
  const src = path.join(o.work, 'src');
  const data = path.join(o.work, 'data');
  const mnt = path.join(o.work, 'mnt');
  fs.mkdirSync(path.join(src, 'tree'), { recursive: true });
  sh(`tar -C ${src}/tree -xf ${o.treeTar} && cp ${o.bigFile} ${src}/big.bin`);
  const mb = fs.statSync(o.bigFile).size / 1e6;

  o.say('[restore] isgfs: the tree and the file through a mount, flushed to six local backends');
  sh(`${o.isg} init ${data} >/dev/null`);
  fs.mkdirSync(mnt);
  const unmount = await o.mount(data, mnt);
  try {
    sh(`cp -a ${src}/. ${mnt}/ && ${o.isg} flush ${data} >/dev/null`);
  } finally {
    await unmount();
  }
  const rss = path.join(o.work, 'rss');
  const isgRestore = (what: string, dest: string) => {
    sh(`${o.isg} cache drop ${data} >/dev/null`);
    o.dropCaches();
    return measured(`${o.isg} restore ${data} latest:${what} ${dest} >/dev/null`, rss);
  };
  o.say('[restore] isg restore of the tree');
  const isgTree = isgRestore('/tree', path.join(o.work, 'isg-tree')).s;
  o.say('[restore] isg restore of the file');
  const isgBig = isgRestore('/big.bin', path.join(o.work, 'isg-big.bin'));
  const isgFile = isgBig.s;
  o.say(`[restore] isg: tree ${isgTree.toFixed(2)} s, file ${isgFile.toFixed(2)} s (peak ${isgBig.rssMB.toFixed(0)} MB)`);
  sh(`diff -rq --no-dereference ${src}/tree ${o.work}/isg-tree && cmp ${src}/big.bin ${o.work}/isg-big.bin`);

  o.say('[restore] restic: the same data backed up to a local repository');
  const repo = path.join(o.work, 'restic');
  const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: path.join(o.work, 'restic-cache') };
  sh('restic init -q', env);
  sh(`cd ${src} && restic backup -q --tag tree tree && restic backup -q --tag big big.bin`, env);
  const resticRestore = (tag: string, dest: string) => {
    o.dropCaches();
    return measured(`restic restore -q latest --tag ${tag} --target ${dest}`, rss, env);
  };
  o.say('[restore] restic restore of the tree');
  const resticTree = resticRestore('tree', path.join(o.work, 'restic-tree')).s;
  o.say('[restore] restic restore of the file');
  const resticBig = resticRestore('big', path.join(o.work, 'restic-big'));
  const resticFile = resticBig.s;
  o.say(`[restore] restic: tree ${resticTree.toFixed(2)} s, file ${resticFile.toFixed(2)} s (peak ${resticBig.rssMB.toFixed(0)} MB)`);

  o.say('[restore] ceilings: tar -x of the tree, cat of every shard file');
  o.dropCaches();
  const tarX = timed(() => sh(`mkdir ${o.work}/tar-tree && tar -C ${o.work}/tar-tree -xf ${o.treeTar}`));
  const shardBytes = Number(sh(`find ${data}/backends -type f -printf '%s\\n' | awk '{s += $1} END {print s + 0}'`).trim());
  o.dropCaches();
  const catS = timed(() => sh(`find ${data}/backends -type f -print0 | xargs -0 cat > /dev/null`));
  o.say(
    `[restore] ceilings: tar -x of the tree ${tarX.toFixed(2)} s, cat of ${(shardBytes / 1e6).toFixed(0)} MB of shards ${catS.toFixed(2)} s`,
  );

  const figures: RestoreFigures = {
    isg_restore_tree_files_per_s: o.treeFiles / isgTree,
    restic_restore_tree_files_per_s: o.treeFiles / resticTree,
    restore_tree_vs_restic: resticTree / isgTree,
    isg_restore_file_MBps: mb / isgFile,
    restic_restore_file_MBps: mb / resticFile,
    restore_file_vs_restic: resticFile / isgFile,
    isg_restore_file_peak_rss_MB: isgBig.rssMB,
    restic_restore_file_peak_rss_MB: resticBig.rssMB,
    tar_x_tree_files_per_s: o.treeFiles / tarX,
    cat_shards_MBps: shardBytes / 1e6 / catS,
  };
  return figures;
}
