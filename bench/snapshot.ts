/**
 * `isg snapshot create` after changing 100 files, in trees of 10,000 and of 100,000 files (the
 * daemon's work: flush, publish with the snapshot; on a Session in this process, the trees built
 * through the filesystem core, not FUSE, to keep the setup short, in bench/publish.ts's shape:
 * directories of 100 files under directories of 100). Target: the two less than 2x
 * apart, well under 100 ms. The baseline, measured in the same run: a plain publish (no snapshot)
 * after the same kind of change.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initRepository } from '../src/repo/repository';
import { Session } from '../src/repo/session';
import { createSnapshot } from '../src/repo/snapshot-ops';
import { buildTree, changeFiles } from './publish';

export interface SnapshotBench {
  /** ms of a snapshot after 100 changes, per tree size. */
  create_ms: Record<string, number>;
  /** ms of a publish without a snapshot after 100 changes, per tree size (baseline). */
  publish_ms: Record<string, number>;
  /** create_ms of the 100,000-file tree over the 10,000-file one. */
  ratio_100k_over_10k: number;
}

async function one(dir: string, files: number): Promise<{ create: number; publish: number }> {
  await initRepository(dir, {});
  const s = await Session.open(dir, {});
  try {
    await buildTree(s, files);
    await s.flush();
    await createSnapshot(s, 'base');
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1];
    const creates: number[] = [];
    const publishes: number[] = [];
    for (let round = 1; round <= 5; round++) {
      await changeFiles(s, files, 2 * round);
      let t = performance.now();
      await createSnapshot(s, `round ${round}`);
      creates.push(performance.now() - t);
      await changeFiles(s, files, 2 * round + 1);
      t = performance.now();
      await s.publish();
      publishes.push(performance.now() - t);
    }
    return { create: median(creates), publish: median(publishes) };
  } finally {
    await s.close();
  }
}

export async function benchSnapshot(work: string, say: (m: string) => void): Promise<SnapshotBench> {
  const out: SnapshotBench = { create_ms: {}, publish_ms: {}, ratio_100k_over_10k: 0 };
  for (const files of [10_000, 100_000]) {
    say(`snapshot: a tree of ${files} files`);
    const dir = path.join(work, `snap-${files}`);
    const r = await one(dir, files);
    out.create_ms[files] = r.create;
    out.publish_ms[files] = r.publish;
    fs.rmSync(dir, { recursive: true, force: true });
  }
  out.ratio_100k_over_10k = out.create_ms[100_000] / out.create_ms[10_000];
  return out;
}
