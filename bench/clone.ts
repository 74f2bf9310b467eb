/**
 * The `clone` workload of `npm run bench`: `isg clone` of the small-files tree beside `cp -a` of
 * it, both inside one isgfs mount (the baseline: copying the data through the filesystem). The
 * tree is extracted into the mount and published (`isg flush`), then copied both ways; the clone
 * is checked with `diff -r` against the original. Reports seconds, entries/s and the ratio.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface CloneBenchOptions {
  /** A fresh directory for the repository and the mountpoint. */
  work: string;
  /** The small-files tree, as a tar file. */
  treeTar: string;
  /** Its entries (files, directories, links). */
  treeEntries: number;
  /** bin/isg. */
  isg: string;
  /** Mounts `data` on `mnt` and returns the function that unmounts it. */
  mount: (data: string, mnt: string) => Promise<() => Promise<void>>;
  say: (line: string) => void;
}

export interface CloneFigures {
  clone_s: number;
  /** Time the daemon spent on the clone (the rest is the CLI's start and the control socket). */
  clone_daemon_s: number;
  /** Of the daemon's time: reading the tree objects, and the graft's transaction. */
  clone_read_s: number;
  clone_graft_s: number;
  cp_a_s: number;
  clone_entries_per_s: number;
  clone_vs_cp_a: number;
}

const sh = (cmd: string) => execFileSync('bash', ['-c', cmd], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });

function seconds(fn: () => string): { s: number; out: string } {
  const t = process.hrtime.bigint();
  const out = fn();
  return { s: Number(process.hrtime.bigint() - t) / 1e9, out };
}

export async function benchClone(o: CloneBenchOptions): Promise<CloneFigures> {
  const data = path.join(o.work, 'clone-data');
  const mnt = path.join(o.work, 'clone-mnt');
  fs.mkdirSync(mnt, { recursive: true });
  const unmount = await o.mount(data, mnt);
  try {
    o.say(`[clone] the small-files tree (${o.treeEntries} entries) into the mount, published`);
    sh(`mkdir ${mnt}/src && tar -C ${mnt}/src -xf ${o.treeTar}`);
    sh(`${process.execPath} ${o.isg} flush ${data} >/dev/null`);
    o.say('[clone] cp -a inside the mount');
    const cp = seconds(() => sh(`cp -a ${mnt}/src ${mnt}/cp && sync ${mnt}/cp`));
    o.say('[clone] isg clone latest:/src');
    const cl = seconds(() => sh(`${process.execPath} ${o.isg} clone ${data} latest:/src ${mnt}/clone --json`));
    const r = JSON.parse(cl.out) as { entries: number; ms: number; readMs: number; graftMs: number };
    sh(`diff -r --no-dereference ${mnt}/src ${mnt}/clone`);
    return {
      clone_s: cl.s,
      clone_daemon_s: r.ms / 1000,
      clone_read_s: r.readMs / 1000,
      clone_graft_s: r.graftMs / 1000,
      cp_a_s: cp.s,
      clone_entries_per_s: r.entries / cl.s,
      clone_vs_cp_a: cp.s / cl.s,
    };
  } finally {
    await unmount();
  }
}
