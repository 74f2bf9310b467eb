/**
 * At open: a data directory catches up with the last state published on the backends, and refuses
 * a rollback of them (docs/architecture.md "Several data directories"). Session.open calls
 * `refreshFromBackends` before it opens the metadata (after taking the writer lease, read-write).
 *
 * What it does, when some backend lies outside the data directory:
 * - finds the newest valid head on the backends (findHeads: damaged, forged or unchained heads
 *   are ignored and reported, the previous valid head is used);
 * - `seen` is the newer of `<data-dir>/head` (written by connect and by a refresh) and the head the
 *   metadata itself published (kv publish 'head': a writer's own heads count as seen);
 * - newest older than seen, or none while seen exists, or another head of seen's number: a
 *   rollback, refused unless `acceptRollback` (`isg mount --accept-rollback`);
 * - newest newer than seen: when this data directory holds nothing unpublished (no dirty inodes,
 *   an empty upload queue, its last encoded tree is the head it published), its metadata is rebuilt
 *   from the newest head (recoverMetadata, as connect) into `meta-next`, then swapped in; else it
 *   has diverged: read-write refuses, read-only serves the local state with a warning.
 *
 * Decisions (why):
 * - The embedded default (every backend inside the data directory) is not checked: no other data
 *   directory can write those backends (the data directory's lock covers them), and a rollback of
 *   them is a rollback of the data directory itself (restored from one copy with its `head` file
 *   and metadata), which nothing inside it can detect. Mixed lists are checked over all backends.
 * - A head the metadata does not know but whose top object is the metadata's own last encoded tree
 *   and which follows its last head is this data directory's: a publish cut short between storing
 *   the head and recording it. It is adopted (read-write), never taken for another writer's.
 * - Fewer than k backends answering the listing: nothing is judged (a rollback cannot be told from
 *   an outage); a warning says so and the local state is used.
 * - The swap: `meta-next` is built and made durable while `meta` is untouched; then `meta` ->
 *   `meta-prev`, `meta-next` -> `meta`, fsync of the data directory, `<data-dir>/head`, and
 *   `meta-prev` removed. A crash between the two renames leaves `meta-next` complete and no `meta`:
 *   the next open (under the lock) finishes the rename; a `meta-next` beside a `meta` is an
 *   unfinished build and is removed. Under --accept-rollback the replaced metadata is kept as
 *   `meta-rolled-back-<time>` (it may name the only copies of what the backends lost).
 * - The data directory's lock is held for the swap: a read-only open takes it for the refresh
 *   only; when a writer of this data directory holds it, the read-only open serves the local state.
 * - The local tier: nothing in it is unpublished (the queue is empty), so it is a cache. A block
 *   file stays as the cache of the rebuilt metadata when its old row said it was local and the new
 *   metadata names the block; every other block file of the old rows is removed.
 * - A read-only mount refreshes at mount time only: swapping the metadata under a live mount would
 *   change inode numbers and contents under the kernel's caches and open handles. Remount to see a
 *   newer head.
 * - A newest head whose objects do not decode (a tree object replaced by another object: the kind
 *   and id are in the AEAD associated data) fails the refresh, and the open with it: a damaged
 *   state is never served, and the old metadata stays as it was.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Backend, CallOptions } from '../backend/backend';
import { compressionFor } from '../block/compression';
import { blockFile } from '../block/layout';
import { findHeads, FoundHeads, HeadRollbackError, RefusedHead, SignedHead } from '../head/head';
import { log } from '../log';
import { Meta, ROOT_INO } from '../meta/meta';
import { recoverMetadata } from '../snapshot/connect';
import { restoreTree } from '../snapshot/tree';
import { PublishedHead } from '../snapshot/publish';
import { fsyncPath } from '../util/fsync';
import { adoptHead, headFile, readSeenHead, SeenHead, writeSeenHead } from './connect';
import { acquireLock, isInsideDataDir, OpenedRepo, RepoError } from './repository';

export interface RefreshOptions {
  repo: OpenedRepo;
  /** The repository's backends, in config order. */
  backends: readonly Backend[];
  readOnly: boolean;
  /** Take the newest head even when it is older than the one this data directory saw. */
  acceptRollback?: boolean;
  /** The caller holds the data directory's lock (a read-write open). */
  locked: boolean;
  mountpoint?: string;
  call?: CallOptions;
}

export interface RefreshOutcome {
  /**
   * embedded: not checked; unreachable: too few backends answered; current: nothing newer;
   * adopted: this data directory's own head, recorded; rebuilt: the metadata is the newest head's;
   * diverged: read-only, local state served; busy: read-only, a writer holds the data directory.
   */
  action: 'embedded' | 'unreachable' | 'current' | 'adopted' | 'rebuilt' | 'diverged' | 'busy';
  /** The newest valid head on the backends. */
  head?: { seq: number; hash: string };
  seen?: SeenHead;
  /** Heads ignored, and why (also logged). */
  refused: RefusedHead[];
  /** Set when --accept-rollback let an older head through. */
  rollback?: string;
  /** Rebuilt: block files kept as the cache, and removed. */
  keptBlocks?: number;
  droppedBlocks?: number;
}

interface LocalState {
  published?: PublishedHead;
  top?: string;
  dirty: number;
  queued: number;
  empty: boolean;
}

const metaDir = (repo: OpenedRepo, suffix = '') => `${repo.paths.meta}${suffix}`;

/** Finishes or clears a swap a crash interrupted (under the data directory's lock). */
async function finishSwap(repo: OpenedRepo): Promise<void> {
  const exists = (p: string) => fs.existsSync(p);
  if (!exists(metaDir(repo)) && exists(metaDir(repo, '-next'))) {
    await fs.promises.rename(metaDir(repo, '-next'), metaDir(repo));
    await fsyncPath(repo.paths.root, 'dir');
    log.warn(`${repo.paths.root}: finished the metadata refresh a crash interrupted`);
  }
  await fs.promises.rm(metaDir(repo, '-next'), { recursive: true, force: true });
  await fs.promises.rm(metaDir(repo, '-prev'), { recursive: true, force: true });
}

async function localState(repo: OpenedRepo): Promise<LocalState> {
  const meta = await Meta.open(metaDir(repo), repo.keys.meta, true);
  try {
    return {
      published: meta.getPublishValue<PublishedHead>('head'),
      top: meta.getPublishValue<string>('top'),
      dirty: meta.dirtyCount(),
      queued: meta.queueLength(),
      empty: !meta.hasEntries(ROOT_INO),
    };
  } finally {
    await meta.close();
  }
}

/** Changes of this data directory no head holds, in words; undefined when there are none. */
function unpublished(s: LocalState): string | undefined {
  // Never published and nothing in it (e.g. connected before the first head): nothing to lose.
  if (!s.published && !s.top && s.empty && s.queued === 0) return undefined;
  const what: string[] = [];
  if (s.dirty) what.push(`${s.dirty} changed inode(s)`);
  if (s.queued) what.push(`${s.queued} block(s) not uploaded`);
  if (s.top && s.top !== s.published?.root) what.push('a publish that did not finish');
  if (!s.published && !s.top && !what.length) what.push('a namespace never published');
  return what.length ? what.join(', ') : undefined;
}

const seqHash = (h: SignedHead) => ({ seq: h.seq, hash: h.hash.toString('hex') });

export async function refreshFromBackends(o: RefreshOptions): Promise<RefreshOutcome> {
  const { repo } = o;
  const specs = repo.config.storage.backends;
  if (specs.every((s) => isInsideDataDir(s, repo.paths.root))) return { action: 'embedded', refused: [] };

  let release: (() => void) | undefined;
  if (!o.locked) {
    try {
      release = acquireLock(repo.paths.root, o.mountpoint);
    } catch (e) {
      if (!(e instanceof RepoError)) throw e;
      log.warn(`${e.message}: serving its local state, not checked against the backends`);
      return { action: 'busy', refused: [] };
    }
  }
  try {
    await finishSwap(repo);
    let found: FoundHeads;
    try {
      found = await findHeads(o.backends, { repoId: repo.config.id, publicKey: repo.keys.head.publicKey, call: o.call });
    } catch (e) {
      throw new RepoError(`cannot read the heads: ${(e as Error).message}`, { cause: e });
    }
    for (const r of found.refused) log.warn(`head ignored: ${r.backend} ${r.key}: ${r.reason}`);
    const refused = found.refused;
    const { k } = repo.config.storage.ec;
    const answered = o.backends.length - found.unreachable.length;
    if (answered < k) {
      log.warn(
        `only ${answered} backend(s) listed their heads (${k} needed to judge): the data directory's state is not checked against the backends ` +
          `(${found.unreachable.map((u) => `${u.backend}: ${u.error.message}`).join('; ')})`,
      );
      return { action: 'unreachable', refused };
    }

    const state = await localState(repo);
    const file = await readSeenHead(repo.paths.root);
    const own = state.published && { seq: state.published.seq, hash: state.published.hash };
    const seen = own && (!file || own.seq >= file.seq) ? own : file;
    const newest = found.head;
    const head = newest ? seqHash(newest) : undefined;
    const base = { head, seen, refused };

    // A rollback: the backends hold less than this data directory saw.
    let rollback: string | undefined;
    if (seen && (!newest || newest.seq < seen.seq || (newest.seq === seen.seq && head!.hash !== seen.hash))) {
      const err = new HeadRollbackError(head ?? null, seen);
      if (!o.acceptRollback)
        throw new RepoError(
          `cannot open ${repo.paths.root}: ${err.message}; give --accept-rollback to use the backends' ${newest ? `head ${newest.seq}` : 'empty state'} all the same`,
        );
      rollback = err.message;
      log.warn(`${err.message}: accepted (--accept-rollback)`);
    } else if (!newest || (seen && newest.seq === seen.seq)) {
      return { action: 'current', ...base };
    }

    // This data directory's own head, not recorded (a publish cut short after storing it).
    if (
      newest &&
      !rollback &&
      state.top === newest.root.toString('hex') &&
      (state.published ? newest.seq === state.published.seq + 1 && newest.prev.toString('hex') === state.published.hash : true)
    ) {
      if (!o.readOnly) {
        const meta = await Meta.open(metaDir(repo), repo.keys.meta);
        try {
          adoptHead(meta, newest);
          await meta.sync();
        } finally {
          await meta.close();
        }
      }
      await writeSeenHead(repo.paths.root, head!);
      log.info(`head ${newest.seq} on the backends is this data directory's own last publish: recorded`);
      return { action: 'adopted', ...base };
    }

    const changes = unpublished(state);
    if (changes) {
      const what =
        newest && !rollback
          ? `diverged: another writer (${newest.host}, ${new Date(newest.time).toISOString()}) published head ${newest.seq} after head ${seen?.seq ?? 'none'} this data directory saw, and this data directory has changes no head holds (${changes})`
          : `the backends' state is older than this data directory's, which has changes no head holds (${changes})`;
      if (!o.readOnly)
        throw new RepoError(
          `cannot open ${repo.paths.root} for writing: ${what}; mount it read-only to copy them out, and connect a new data directory to continue from the backends`,
        );
      log.warn(`${what}: serving this data directory's local state, not the backends' newest`);
      return { action: 'diverged', ...base, ...(rollback ? { rollback } : {}) };
    }

    const blocks = await rebuild(repo, o.backends, newest, !!rollback);
    log.info(
      `${repo.paths.root}: metadata rebuilt from head ${newest?.seq ?? 'none'} on the backends (was ${seen?.seq ?? 'none'}; ` +
        `${blocks.kept} cached block(s) kept, ${blocks.dropped} removed)`,
    );
    return { action: 'rebuilt', ...base, ...(rollback ? { rollback } : {}), keptBlocks: blocks.kept, droppedBlocks: blocks.dropped };
  } finally {
    release?.();
  }
}

/** Builds `meta-next` from `head` (null: the backends hold none), swaps it in, writes `<data-dir>/head`. */
async function rebuild(
  repo: OpenedRepo,
  backends: readonly Backend[],
  head: SignedHead | null,
  keepOld: boolean,
): Promise<{ kept: number; dropped: number }> {
  const next = metaDir(repo, '-next');
  await fs.promises.rm(next, { recursive: true, force: true });
  await fs.promises.mkdir(next, { recursive: true, mode: 0o700 });
  let kept = 0;
  const gone: string[] = [];
  try {
    const meta = await Meta.open(next, repo.keys.meta);
    try {
      meta.initialise(process.getuid?.() ?? 0, process.getgid?.() ?? 0);
      await recoverMetadata({
        meta,
        backends,
        keys: { ...repo.keys.block, pack: repo.keys.pack },
        compression: compressionFor(repo.config.compression),
        head: head && { root: head.root, index: head.index, ...(head.snapshots ? { snapshots: head.snapshots } : {}) },
        restore: restoreTree,
      });
      if (head) adoptHead(meta, head);
      // The local tier: a cache of the blocks the new metadata names, nothing else.
      const old = await Meta.open(metaDir(repo), repo.keys.meta, true);
      try {
        meta.txn(() => {
          for (const { id, row } of old.allBlocks()) {
            if (row.local === false) continue;
            const hex = id.toString('hex');
            if (meta.getBlock(id) && fs.existsSync(blockFile(repo.paths.blocks, hex))) {
              meta.setLocal(id, true);
              kept++;
            } else gone.push(hex);
          }
        });
      } finally {
        await old.close();
      }
      await meta.sync();
    } finally {
      await meta.close();
    }
    for (const n of await fs.promises.readdir(next)) await fsyncPath(path.join(next, n), 'file');
    await fsyncPath(next, 'dir');
  } catch (e) {
    await fs.promises.rm(next, { recursive: true, force: true });
    throw new RepoError(
      `cannot rebuild ${repo.paths.root}'s metadata from head ${head?.seq ?? 'none'} on the backends: ${(e as Error).message} (the local metadata is unchanged)`,
      { cause: e },
    );
  }
  const prev = metaDir(repo, '-prev');
  await fs.promises.rename(metaDir(repo), prev);
  await fs.promises.rename(next, metaDir(repo));
  await fsyncPath(repo.paths.root, 'dir');
  if (head) await writeSeenHead(repo.paths.root, seqHash(head));
  else await fs.promises.rm(headFile(repo.paths.root), { force: true });
  // After the swap: until then the old metadata names these files as its only local copies.
  for (const hex of gone) await fs.promises.rm(blockFile(repo.paths.blocks, hex), { force: true });
  if (keepOld) {
    const aside = metaDir(repo, `-rolled-back-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    await fs.promises.rename(prev, aside);
    log.warn(`the metadata this data directory had before the rollback is kept in ${aside}`);
  } else await fs.promises.rm(prev, { recursive: true, force: true });
  return { kept, dropped: gone.length };
}
