/**
 * `isg snapshot create|ls|rm|diff` on an open Session: the daemon runs them for its control
 * socket (src/repo/control.ts), the command line on a Session of its own when nothing is mounted.
 * Arguments and answers are plain JSON (they cross the socket).
 */
import { IsgError } from '../errors';
import { SnapshotRecord } from '../meta/meta';
import { resolveSnapshot, resolveTreeRef } from '../snapshot/refs';
import { diffTrees, TreeDiff, tagProblem } from '../snapshot/snapshots';
import { RepoError } from './repository';
import type { Session } from './session';

/** A record as it crosses the socket and is printed by --json. */
export interface SnapshotInfo {
  id: string;
  time: string;
  tag?: string;
  files: number;
  bytes: number;
  headSeq: number;
  root: string;
}

export function snapshotInfo(r: SnapshotRecord): SnapshotInfo {
  return {
    id: r.id,
    time: new Date(r.time).toISOString(),
    ...(r.tag !== undefined ? { tag: r.tag } : {}),
    files: r.files,
    bytes: r.bytes,
    headSeq: r.headSeq,
    root: r.root.toString('hex'),
  };
}

export type SnapshotOp = { op: 'create'; tag?: string } | { op: 'ls' } | { op: 'rm'; id: string } | { op: 'diff'; a: string; b: string };

function writable(s: Session): void {
  if (!s.publisher) throw new RepoError('the repository is open read-only: snapshots cannot be taken or removed');
}

/**
 * Takes a snapshot: the write buffers are flushed first (every write acknowledged before the call
 * is in it), then one publish names the tree and the new snapshot list.
 */
export async function createSnapshot(s: Session, tag?: string): Promise<SnapshotInfo> {
  writable(s);
  if (tag !== undefined) {
    const problem = tagProblem(tag);
    if (problem) throw new RepoError(problem);
  }
  await s.fs.flushAll();
  const r = await s.publish({ snapshot: tag === undefined ? {} : { tag } });
  if (!r?.snapshot) throw new RepoError('the snapshot was not taken (the publish did not run)');
  return snapshotInfo(r.snapshot);
}

export function listSnapshots(s: Session): SnapshotInfo[] {
  return s.meta.allSnapshots().map(snapshotInfo);
}

/** Removes a snapshot (its blocks no other snapshot holds become free) and publishes the list without it. */
export async function removeSnapshot(s: Session, ref: string): Promise<{ id: string; freed: number }> {
  writable(s);
  const r = resolveSnapshot(s.meta, ref);
  const freed = s.meta.txn(() => s.meta.removeSnapshot(r.id));
  await s.publish({ force: true });
  return { id: r.id, freed };
}

/** The diff from tree `a` to `b` (`live`: publish now and take that tree), objects read through the block store. */
export async function diffSnapshots(s: Session, a: string, b: string): Promise<TreeDiff & { a: string; b: string }> {
  const ra = resolveTreeRef(s.meta, a);
  let rb;
  if (b === 'live') {
    writable(s);
    await s.fs.flushAll();
    await s.publish();
    rb = resolveTreeRef(s.meta, 'latest');
  } else rb = resolveTreeRef(s.meta, b);
  const d = await diffTrees((id) => s.store.readPlain(id), ra.root, rb.root);
  return { ...d, a: ra.label, b: b === 'live' ? 'live' : rb.label };
}

/** Runs one operation (the daemon's control handler and the command line share this). */
export async function runSnapshotOp(s: Session, op: SnapshotOp): Promise<unknown> {
  switch (op.op) {
    case 'create':
      return createSnapshot(s, op.tag);
    case 'ls':
      return listSnapshots(s);
    case 'rm':
      return removeSnapshot(s, op.id);
    case 'diff':
      return diffSnapshots(s, op.a, op.b);
    default:
      throw new IsgError('missing', `unknown snapshot operation ${JSON.stringify((op as { op: unknown }).op)}`);
  }
}
