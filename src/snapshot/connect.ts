/**
 * The metadata half of `isg connect` (src/repo/connect.ts drives it): fills a new data
 * directory's metadata from the backends alone: the pack rows and block locations (from the
 * head's index objects, else from the packs' trailers), then the namespace (the tree restore,
 * which reads the tree objects through `fetch`).
 *
 * Decisions (why):
 * - The pack rows always come from the shards found on the backends (scanPacks): placement is
 *   where each shard lies now, which only this machine's backend list can say. Index objects
 *   only save reading every pack's trailer.
 * - Index objects missing or damaged: the whole index is rebuilt from the trailers rather than
 *   mixing the two, so the result never depends on which object failed.
 * - `fetch` reads a metadata object by id with the data path's own reader (ShardReader over the
 *   pack rows just found): read straight from its data shard(s), and once more with every shard
 *   range checked (rebuilding around a bad shard) when that does not decode.
 */
import { Backend } from '../backend/backend';
import { BlockKeys, decodeBlock, ObjectKind } from '../block/codec';
import { FetchObject, restoreTree } from './tree';
import { Compression } from '../block/compression';
import { BlockMissingError } from '../store/blockstore';
import { Meta, SnapshotRecord } from '../meta/meta';
import { ShardReader } from '../pack/fetch';
import { isKind } from '../errors';
import { log } from '../log';
import { readIndex, rebuildIndexFromTrailers, scanPacks, ScannedPacks } from './index-objects';
import { adoptSnapshots, computeAggregates, readSnapshotList } from './snapshots';

/** The tree restore: `restoreTree` (./tree.ts); tests give another to look at what connect hands it. */
export type RestoreTree = typeof restoreTree;

export interface RecoveryProgress {
  stage: 'packs' | 'index' | 'trailers' | 'tree';
  done: number;
  total?: number;
}

export interface RecoverOptions {
  meta: Meta;
  backends: readonly Backend[];
  keys: BlockKeys & { pack: Buffer };
  compression: Compression;
  /** The head's root tree, index objects and snapshot list; null when no head was ever published. */
  head: { root: Buffer; index: Buffer[]; snapshots?: Buffer } | null;
  restore: RestoreTree;
  onProgress?: (p: RecoveryProgress) => void;
}

export interface Recovered {
  packs: number;
  blocks: number;
  /** Where the locations came from. */
  index: 'objects' | 'trailers';
  /** Why the index objects were not used, when they were not. */
  indexProblem?: string;
  /** Packs and shards that could not be used. */
  problems: string[];
  /** Snapshots the head's list names (now in the local table). */
  snapshots: number;
}

/** A reader of objects in packs, over pack rows and locations in `meta`. */
export function objectFetcher(meta: Meta, backends: readonly Backend[], keys: BlockKeys, compression: Compression): FetchObject {
  const reader = new ShardReader(new Map(backends.map((b) => [b.name, b])));
  return async (id: Buffer, kind: ObjectKind) => {
    const loc = meta.getLoc(id);
    const pack = loc && meta.getPack(loc.pack);
    if (!loc || !pack) throw new BlockMissingError(id.toString('hex'));
    for (let checked = false; ; checked = true) {
      const fetched = await reader.readBlock(loc, pack, { checked });
      try {
        return decodeBlock(keys, compression, id, Buffer.from(fetched.encoded), kind);
      } catch (e) {
        if (checked || !isKind(e, 'corrupt')) throw e;
      }
    }
  };
}

/** Fills `meta` (empty, initialised) with packs, locations and the namespace of `head`. */
export async function recoverMetadata(o: RecoverOptions): Promise<Recovered> {
  const progress = o.onProgress ?? (() => undefined);
  progress({ stage: 'packs', done: 0 });
  const scanned: ScannedPacks = await scanPacks(o.backends);
  progress({ stage: 'packs', done: scanned.packs.size, total: scanned.packs.size });
  let locs: Map<string, { pack: string; offset: number; length: number }> | undefined;
  let indexProblem: string | undefined;
  let problems = scanned.problems;
  if (o.head) {
    try {
      progress({ stage: 'index', done: 0, total: o.head.index.length });
      locs = await readIndex(o.backends, o.head.index, o.keys);
      const unknown = [...locs.values()].find((l) => !scanned.packs.has(l.pack));
      // A location in a pack that cannot be read now: the trailers say which blocks are readable.
      if (unknown) throw new Error(`the index names pack ${unknown.pack}, which is not readable on these backends`);
    } catch (e) {
      indexProblem = (e as Error).message;
      locs = undefined;
      log.warn(`index objects not usable (${indexProblem}): rebuilding the index from the pack trailers`);
    }
  }
  let source: Recovered['index'] = 'objects';
  if (!locs) {
    source = 'trailers';
    const rebuilt = await rebuildIndexFromTrailers(o.backends, o.keys, {
      scanned,
      onPack: (done, total) => progress({ stage: 'trailers', done, total }),
    });
    locs = rebuilt.locs;
    problems = rebuilt.problems;
  }
  const { meta } = o;
  let snapshots: SnapshotRecord[] = [];
  meta.txn(() => {
    for (const [id, row] of scanned.packs) meta.putPack(id, row);
    for (const [hex, loc] of locs) meta.putLoc(Buffer.from(hex, 'hex'), loc);
  });
  await meta.sync();
  if (o.head) {
    await o.restore(meta, o.head.root, objectFetcher(meta, o.backends, o.keys, o.compression), (objects) =>
      progress({ stage: 'tree', done: objects }),
    );
    // After the restore (its blocks keep birth 0: every snapshot may name them).
    computeAggregates(meta);
    if (o.head.snapshots) {
      snapshots = await readSnapshotList(o.backends, o.head.snapshots, o.keys);
      adoptSnapshots(meta, snapshots);
    }
    await meta.sync();
  }
  return {
    packs: scanned.packs.size,
    blocks: locs.size,
    index: source,
    ...(indexProblem ? { indexProblem } : {}),
    problems,
    snapshots: snapshots.length,
  };
}
