/**
 * The publisher: makes the backends hold the current namespace (docs/architecture.md "Publishing").
 * A publish encodes the directories marked dirty since the last one (Meta's pubdirty: a change to
 * an inode marks it and every directory naming it) and their ancestors, bottom-up, into tree
 * objects (./tree.ts); stores the objects not stored before as blocks, refcounted like data so
 * the sweep keeps them; waits until every queued block is in a stored pack; then writes a signed
 * head naming the new top object, one sequence number after the last, on every backend. Only then
 * are the objects the publish replaced unreferenced.
 *
 * Decisions (why):
 * - Encoding reads the local metadata, never the backends, in one synchronous stretch: no
 *   operation runs meanwhile, so the tree is the namespace at one instant. That stretch only
 *   reads; the hashing (keyed split of large directories, object ids) runs after it in the codec
 *   workers, one depth level at a time from the deepest, since a parent names its children's
 *   ids. The FUSE thread keeps serving between the batches. Objects already stored
 *   keep their ids (content addressing) and are neither stored nor referenced twice: a publish
 *   writes the objects of the changed paths only.
 * - Order: blocks and tree objects packed and stored, then the index (seam below), then the head;
 *   a crash anywhere leaves the previous head valid and only unreferenced objects behind.
 * - Data blocks a published tree names that are still waiting for a pack are pinned (one more
 *   reference) until the head is written, so that an overwrite meanwhile cannot have the sweep
 *   drop them before the packer stores them. Pins and replaced objects are released through a
 *   journal in the metadata (`publish.unref`), after the next head that is written: a crash before
 *   it leaves them for the next publish, never a dangling head.
 * - Changes made during a publish carry a newer generation (Meta.beginPublish), so the publish
 *   clears only the dirty marks it covered.
 */
import type { KeyObject } from 'node:crypto';
import { Backend } from '../backend/backend';
import { ObjectKind } from '../block/codec';
import { findHeads, Head, signHead, storeHead } from '../head/head';
import type { BlockStore } from '../store/blockstore';
import { ID_BYTES, layoutBatch, TreeBatch } from '../block/treelayout';
import { Extent, Meta, ROOT_INO, SnapshotRecord } from '../meta/meta';
import {
  CHUNK_LIST_EXTENTS,
  EncodedObject,
  encodeChunkList,
  encodeEntries,
  entryOfInode,
  EntryType,
  INLINE_EXTENTS,
  TreeCodec,
  TreeEntry,
} from './tree';
import { constants as C } from 'node:fs';
import { addEntry, Aggregate, computeAggregates, newSnapshotId } from './snapshots';

/** Where a block lies in a pack (what index objects list). */
export interface BlockLocation {
  id: Buffer;
  pack: string;
  offset: number;
  length: number;
}

export interface PublisherOptions {
  meta: Meta;
  store: BlockStore;
  backends: readonly Backend[];
  codec: TreeCodec;
  repoId: string;
  signing: { privateKey: KeyObject; publicKey: KeyObject };
  host: string;
  /** Resolves when every queued block is in a stored pack (the packer's drain). */
  drain: () => Promise<void>;
  /**
   * Stores index objects for the new locations; returns the whole list the head names (`previous`
   * and the new ones, maybe merged). Absent: the head names the previous list.
   */
  publishIndex?: (newLocations: BlockLocation[], previous: Buffer[]) => Promise<Buffer[]>;
  /**
   * Stores the snapshot list (src/snapshot/snapshots.ts publishSnapshotList) unless `previous` is
   * the same object; returns the id the head names. Absent: heads name no snapshot list.
   */
  publishSnapshots?: (records: SnapshotRecord[], previous: Buffer | undefined) => Promise<Buffer | undefined>;
  /** Backends that failed to take the head (the head is on the others). */
  onWarning?: (message: string) => void;
}

/** What a publish did (tests count these; `isg status` shows the head). */
export interface PublishResult {
  /** The top object the head names. */
  root: Buffer;
  seq: number;
  /** Directories encoded: the changed ones and their ancestors. */
  dirs: number;
  /** Objects encoded (tree and chunk-list), stored before or not. */
  encoded: number;
  /** Objects stored: the encoded ones no directory held before. */
  written: number;
  /** Objects read from the backends (none: the publisher encodes from the local metadata). */
  read: number;
  /** References dropped after the head: replaced objects and released pins. */
  released: number;
  /** The snapshot this publish took, when asked for one. */
  snapshot?: SnapshotRecord;
}

/** What a publish is asked for beyond the changes (src/snapshot/snapshots.ts). */
export interface PublishRequest {
  /** Record the published tree as a snapshot. */
  snapshot?: { tag?: string };
  /** Publish a head even when nothing changed (the snapshot list did). */
  force?: boolean;
}

/** The last head this data directory wrote (kv `publish.head`). */
export interface PublishedHead {
  seq: number;
  /** Hex. */
  hash: string;
  /** Hex id of its top object. */
  root: string;
  /** ms since the epoch. */
  time: number;
}

/** A directory's rows, read in the synchronous stretch. */
interface DirRows {
  ino: number;
  /** Sorted by name bytes; a subdirectory to encode lacks its `dir`, a long chunk list its `chunks`. */
  entries: TreeEntry[];
  /** Entries (by index) of subdirectories encoded in this publish. */
  subdirs: { at: number; ino: number; depth: number }[];
  /** Entries of files whose chunk lists go to chunk-list objects. */
  lists: { at: number; ino: number; extents: Extent[] }[];
  /** Files with inline chunk lists that had chunk-list objects (released now). */
  fileObjects: number[];
}

interface Rows {
  /** Directories to encode by depth below the root (0). */
  levels: DirRows[][];
  /** The root's entry, without its `dir`. */
  top: TreeEntry;
  pins: Buffer[];
  /** Directories' aggregates (whole subtree), of the same instant as the rows. */
  aggregates: Map<number, Aggregate>;
}

/** A batch for a worker holds about this many bytes of entries. */
const BATCH_BYTES = 256 * 1024;

/** Directories in batches of about BATCH_BYTES (counted by entries: about 100 bytes each). */
function inBatches(dirs: DirRows[]): DirRows[][] {
  const out: DirRows[][] = [];
  let cur: DirRows[] = [];
  let n = 0;
  for (const d of dirs) {
    cur.push(d);
    n += d.entries.length + 1;
    if (n * 100 >= BATCH_BYTES) {
      out.push(cur);
      cur = [];
      n = 0;
    }
  }
  if (cur.length) out.push(cur);
  return out;
}

/** Buffers copied back to back into shared memory (a worker reads it without a copy). */
function shared(parts: Uint8Array[]): { sab: SharedArrayBuffer; ranges: { start: number; end: number }[] } {
  const sab = new SharedArrayBuffer(parts.reduce((n, p) => n + p.length, 0));
  const view = new Uint8Array(sab);
  const ranges: { start: number; end: number }[] = [];
  let at = 0;
  for (const p of parts) {
    view.set(p, at);
    ranges.push({ start: at, end: at + p.length });
    at += p.length;
  }
  return { sab, ranges };
}

const idAt = (ids: Uint8Array, i: number): Buffer => Buffer.from(ids.subarray(i * ID_BYTES, (i + 1) * ID_BYTES));

/** Lets the event loop run (FUSE requests) between two pieces of a publish's work. */
const yieldTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

interface Encoded {
  /** Per inode (directories and files with chunk-list objects): its objects, the directory's own first. */
  objects: Map<number, EncodedObject[]>;
  top: EncodedObject;
  dirs: number;
  /** Queued data blocks the tree names (pinned until the head). */
  pins: Buffer[];
  /** Directories' aggregates computed by this encode (stored with the objects). */
  aggregates: Map<number, Aggregate>;
  /** The snapshot taken with this encode (its epoch taken in the same synchronous stretch). */
  snapshot?: SnapshotRecord;
}

const isDir = (mode: number) => (mode & C.S_IFMT) === C.S_IFDIR;
/** Deeper than this, a parent chain is taken for a loop (damage), not followed. */
const MAX_DEPTH = 100_000;

export class Publisher {
  /** The last publish's counts (tests). */
  last?: PublishResult;
  private running: Promise<PublishResult | null> = Promise.resolve(null);

  constructor(private readonly o: PublisherOptions) {}

  /** The head this data directory last wrote. */
  publishedHead(): PublishedHead | undefined {
    return this.o.meta.getPublishValue<PublishedHead>('head');
  }

  /** Directories and inodes changed since the last publish encoded them. */
  unpublishedChanges(): number {
    return this.o.meta.dirtyCount();
  }

  /**
   * Publishes a new head if anything changed since the last (null when nothing did). Publishes
   * run one at a time: a call during one waits for it and then runs.
   */
  publish(req: PublishRequest = {}): Promise<PublishResult | null> {
    const next = this.running.catch(() => null).then(() => this.publishNow(req));
    this.running = next;
    return next;
  }

  private async publishNow(req: PublishRequest): Promise<PublishResult | null> {
    const { meta } = this.o;
    const covered = meta.beginPublish();
    const dirty = meta.dirtyInodes().filter((d) => d.gen <= covered);
    const last = this.publishedHead();
    const pending = meta.getPublishValue<string[]>('unref') ?? [];
    if (!dirty.length && last && !pending.length && meta.getPublishValue<string>('top') === last.root && !req.snapshot && !req.force)
      return null;

    const rows = this.readRows(dirty.map((d) => d.ino));
    // In the synchronous stretch of the rows: the snapshot's epoch agrees with its tree.
    const snapshot = req.snapshot ? this.takeSnapshot(rows, req.snapshot.tag) : undefined;
    try {
      const enc = { ...(await this.encodeRows(rows)), ...(snapshot ? { snapshot } : {}) };
      if (snapshot) meta.txn(() => meta.putSnapshot({ ...meta.getSnapshot(snapshot.id)!, root: enc.top.id }));
      return await this.finishPublish(enc, dirty, covered, last);
    } catch (e) {
      // A snapshot no head names is dropped again (its holds released).
      if (snapshot) meta.txn(() => meta.removeSnapshot(snapshot.id));
      throw e;
    }
  }

  private async finishPublish(
    enc: Encoded,
    dirty: { ino: number; gen: number }[],
    covered: number,
    last: PublishedHead | undefined,
  ): Promise<PublishResult> {
    const { meta } = this.o;
    const written = await this.storeObjects(
      enc,
      dirty.map((d) => d.ino),
      covered,
    );
    await this.o.drain();
    // After the drain: the packs of this publish's objects are committed, so listed here.
    const unindexed = meta.unindexedPacks();
    const previous = (meta.getPublishValue<string[]>('index') ?? []).map((h) => Buffer.from(h, 'hex'));
    const newLocations = unindexed.flatMap((u) => u.entries.map((e) => ({ ...e, pack: u.pack })));
    const index = this.o.publishIndex ? await this.o.publishIndex(newLocations, previous) : previous;
    const prev = await this.previousHead(last);
    const snapshots = await this.storeSnapshotList(enc, prev);
    const head = await this.writeHead(enc.top.id, index, prev, snapshots);
    meta.txn(() => {
      meta.clearUnindexed(unindexed.map((u) => u.pack));
      meta.setPublishValue(
        'index',
        index.map((b) => b.toString('hex')),
      );
    });
    const released = this.release();
    const result: PublishResult = {
      root: enc.top.id,
      seq: head.seq,
      dirs: enc.dirs,
      encoded: [...enc.objects.values()].reduce((n, l) => n + l.length, 1),
      written,
      read: 0,
      released,
      ...(enc.snapshot ? { snapshot: meta.getSnapshot(enc.snapshot.id) } : {}),
    };
    this.last = result;
    return result;
  }

  /**
   * Synchronous: the rows of the directories to encode, the namespace at one instant (no await
   * from the first read to the last). Only reads and plain objects here: hashing and encoding
   * come after, off this thread (encodeRows). Something that must see the same instant as the
   * tree (an epoch, totals per directory) belongs in this stretch.
   */
  private readRows(dirtyInos: number[]): Rows {
    const { meta } = this.o;
    const toEncode = new Set<number>([ROOT_INO]);
    for (const ino of dirtyInos) {
      const i = meta.getInode(ino);
      if (!i || !isDir(i.mode)) continue;
      // Up to the root (or a directory already on the way); one that does not reach it is unlinked.
      const chain: number[] = [];
      let reached = false;
      for (let at: number | undefined = ino; at !== undefined && chain.length <= MAX_DEPTH; at = meta.parentsOf(at)[0]) {
        if (toEncode.has(at)) {
          reached = true;
          break;
        }
        chain.push(at);
      }
      if (reached) for (const d of chain) toEncode.add(d);
    }
    const levels: DirRows[][] = [];
    const pins = new Map<string, Buffer>();
    const visited = new Set<number>();
    const aggregates = new Map<number, Aggregate>();
    const readDir = (ino: number, depth: number): DirRows => {
      const dir: DirRows = { ino, entries: [], subdirs: [], lists: [], fileObjects: [] };
      // Without the subdirectories encoded now: added bottom-up once every level is read.
      const agg: Aggregate = { files: 0, bytes: 0 };
      const named = [...meta.entries(ino)].map((e) => ({ name: Buffer.from(e.name), ino: e.ino }));
      named.sort((a, b) => Buffer.compare(a.name, b.name));
      for (const { name, ino: child } of named) {
        const i = meta.getInode(child);
        if (!i) continue; // a name left by a crash without its inode: fsck's business, not the tree's
        const e = entryOfInode(name, i, meta.xattrsOf(child));
        if (e.type === EntryType.dir) {
          const published = toEncode.has(child) ? undefined : meta.publishedObjects(child)?.[0];
          if (published) {
            e.dir = published;
            addEntry(agg, i.mode, i.size, meta.getAggregate(child) ?? computeAggregates(meta, child, false, aggregates));
          } else dir.subdirs.push({ at: dir.entries.length, ino: child, depth: depth + 1 });
        } else if (e.type === EntryType.file) {
          const extents = meta.extentsOf(child);
          for (const x of extents) {
            if (meta.getLoc(x.id) === undefined && !pins.has(x.id.toString('hex'))) pins.set(x.id.toString('hex'), x.id);
          }
          if (extents.length <= INLINE_EXTENTS) {
            e.chunks = { inline: extents };
            if (meta.publishedObjects(child)) dir.fileObjects.push(child);
          } else dir.lists.push({ at: dir.entries.length, ino: child, extents });
        }
        if (e.type !== EntryType.dir) addEntry(agg, i.mode, i.size);
        dir.entries.push(e);
      }
      aggregates.set(ino, agg);
      (levels[depth] ??= []).push(dir);
      return dir;
    };
    // Breadth first from the root (a directory not yet published is encoded whether or not it
    // was marked), then any marked directory the walk did not reach, as the walk from the root did.
    const walk = (start: number) => {
      const queue = [{ ino: start, depth: 0 }];
      visited.add(start);
      while (queue.length) {
        const { ino, depth } = queue.shift()!;
        for (const sub of readDir(ino, depth).subdirs) {
          if (visited.has(sub.ino)) continue;
          visited.add(sub.ino);
          queue.push(sub);
        }
      }
    };
    walk(ROOT_INO);
    for (const ino of toEncode) if (!visited.has(ino)) walk(ino);
    for (let depth = levels.length - 1; depth >= 0; depth--)
      for (const d of levels[depth] ?? []) {
        const agg = aggregates.get(d.ino)!;
        for (const sub of d.subdirs) addEntry(agg, C.S_IFDIR, 0, aggregates.get(sub.ino));
      }
    const rootInode = meta.getInode(ROOT_INO)!;
    return {
      levels,
      top: entryOfInode(Buffer.alloc(0), rootInode, meta.xattrsOf(ROOT_INO)),
      pins: [...pins.values()],
      aggregates,
    };
  }

  /**
   * The objects of the rows, bottom-up: chunk-list objects first, then each depth level of
   * directories, deepest first (a parent names its children's ids), then the top object. The
   * entries are encoded here in batches, with a turn of the event loop between them; the split
   * and the hashing run in the codec workers (codec.layout), else in this thread.
   */
  private async encodeRows(rows: Rows): Promise<Encoded> {
    const { codec } = this.o;
    const run = (batch: TreeBatch) =>
      codec.layout ? codec.layout(batch, codec.splitKey) : Promise.resolve(layoutBatch(batch, codec.splitKey, codec.idOf));
    const objects = new Map<number, EncodedObject[]>();
    const dirRoots = new Map<number, Buffer>();
    const all = rows.levels.flat();

    // Chunk-list objects: only hashed.
    const lists = all.flatMap((d) => d.lists.map((l) => ({ dir: d, ...l })));
    for (let i = 0; i < lists.length;) {
      const plains: Buffer[] = [];
      const owners: { list: (typeof lists)[number]; count: number }[] = [];
      let bytes = 0;
      for (; i < lists.length && bytes < BATCH_BYTES; i++) {
        const list = lists[i];
        let count = 0;
        for (let at = 0; at < list.extents.length; at += CHUNK_LIST_EXTENTS) {
          const plain = encodeChunkList(list.extents.slice(at, at + CHUNK_LIST_EXTENTS));
          plains.push(plain);
          bytes += plain.length;
          count++;
        }
        owners.push({ list, count });
      }
      const { sab, ranges } = shared(plains);
      const r = await run({ sab, dirs: [], raw: ranges });
      let k = 0;
      for (const { list, count } of owners) {
        const made: EncodedObject[] = [];
        for (let j = 0; j < count; j++, k++) {
          const { start, end } = ranges[k];
          made.push({ id: idAt(r.ids, k), plain: Buffer.from(sab, start, end - start), kind: ObjectKind.chunkList });
        }
        objects.set(list.ino, made);
        list.dir.entries[list.at].chunks = { objects: made.map((o) => o.id), extents: list.extents.length };
      }
    }
    for (const d of all) for (const ino of d.fileObjects) objects.set(ino, []);

    // Directories, deepest level first; each level in batches spread over the workers.
    const layout = async (dirs: DirRows[][]) => {
      const batches: { dirs: DirRows[]; batch: TreeBatch }[] = [];
      for (const group of dirs) {
        const encoded = group.map((d) => {
          for (const s of d.subdirs) d.entries[s.at].dir = dirRoots.get(s.ino);
          return encodeEntries(d.entries);
        });
        const { sab, ranges } = shared(encoded.map((e) => e.bytes));
        batches.push({ dirs: group, batch: { sab, raw: [], dirs: encoded.map((e, i) => ({ start: ranges[i].start, ends: e.ends })) } });
        await yieldTurn();
      }
      const results = await Promise.all(batches.map((b) => run(b.batch)));
      batches.forEach((b, n) => {
        const r = results[n];
        let k = 0;
        b.dirs.forEach((d, i) => {
          const made: EncodedObject[] = [];
          for (let j = 0; j < r.counts[i]; j++, k++) {
            const start = k === 0 ? 0 : r.ends[k - 1];
            made.push({ id: idAt(r.ids, k), plain: Buffer.from(r.sab, start, r.ends[k] - start), kind: ObjectKind.tree });
          }
          objects.set(d.ino, made);
          dirRoots.set(d.ino, made[0].id);
        });
      });
    };
    for (let depth = rows.levels.length - 1; depth >= 0; depth--) await layout(inBatches(rows.levels[depth]));

    const top = { ...rows.top, dir: dirRoots.get(ROOT_INO) };
    const topDir: DirRows = { ino: -1, entries: [top], subdirs: [], lists: [], fileObjects: [] };
    await layout([[topDir]]);
    const topObject = objects.get(-1)![0];
    objects.delete(-1);
    dirRoots.delete(-1);
    return { objects, top: topObject, dirs: all.length, pins: rows.pins, aggregates: rows.aggregates };
  }

  /**
   * Records the tree being published as a snapshot: its epoch is taken (and the counter moved on)
   * and the record put, in one transaction in the synchronous stretch of the rows, so that the
   * tree and the epoch agree and every block the tree names is held from here on. The top
   * object's id (hashed after the stretch) and headSeq are filled in before the list is stored.
   */
  private takeSnapshot(rows: Rows, tag: string | undefined): SnapshotRecord {
    const { meta } = this.o;
    const root = rows.aggregates.get(ROOT_INO) ?? { files: 0, bytes: 0 };
    let record: SnapshotRecord | undefined;
    meta.txn(() => {
      record = {
        id: newSnapshotId(),
        time: Date.now(),
        ...(tag !== undefined ? { tag } : {}),
        root: Buffer.alloc(32),
        files: root.files,
        bytes: root.bytes,
        headSeq: 0,
        epoch: meta.takeSnapEpoch(),
      };
      meta.putSnapshot(record);
    });
    return record!;
  }

  /** In storeObjects' transaction: the aggregates, and the snapshot's objects born in its epoch. */
  private noteStored(enc: Encoded): void {
    const { meta } = this.o;
    for (const [ino, a] of enc.aggregates) if (meta.getInode(ino)) meta.setAggregate(ino, a);
    if (!enc.snapshot) return;
    for (const objs of enc.objects.values()) for (const o of objs) meta.lowerBirth(o.id, enc.snapshot.epoch);
    meta.lowerBirth(enc.top.id, enc.snapshot.epoch);
  }

  /** The snapshot list the head names: stored again only when it changed (src/snapshot/snapshots.ts). */
  private async storeSnapshotList(enc: Encoded, prev: { seq: number } | undefined): Promise<Buffer | undefined> {
    const { meta } = this.o;
    if (enc.snapshot) {
      const r = { ...meta.getSnapshot(enc.snapshot.id)!, headSeq: prev ? prev.seq + 1 : 1 };
      meta.txn(() => meta.putSnapshot(r));
    }
    if (!this.o.publishSnapshots) return undefined;
    const previous = meta.getPublishValue<string>('snapshots');
    const id = await this.o.publishSnapshots(meta.allSnapshots(), previous ? Buffer.from(previous, 'hex') : undefined);
    return id;
  }

  /**
   * Stores the objects no inode held before, and in one transaction: references for them, the
   * inodes' object lists, the journal of what to release after the head, the pins, the cleared
   * dirty marks. Returns how many objects were stored.
   */
  private async storeObjects(enc: Encoded, dirtyInos: number[], covered: number): Promise<number> {
    const { meta, store } = this.o;
    const unique = new Map<string, EncodedObject>();
    const added: { ino: number; hex: string }[] = [];
    const oldTop = meta.getPublishValue<string>('top');
    for (const [ino, objs] of enc.objects) {
      const before = new Set((meta.publishedObjects(ino) ?? []).map((id) => id.toString('hex')));
      for (const o of objs) {
        const hex = o.id.toString('hex');
        if (before.has(hex)) continue;
        added.push({ ino, hex });
        unique.set(hex, o);
      }
    }
    const topHex = enc.top.id.toString('hex');
    if (topHex !== oldTop) unique.set(topHex, enc.top);
    const list = [...unique.values()];
    const position = new Map(list.map((o, i) => [o.id.toString('hex'), i]));
    const chunks = list.map((o) => {
      // The workers' objects are in shared memory already.
      if (o.plain.buffer instanceof SharedArrayBuffer)
        return { sab: o.plain.buffer, start: o.plain.byteOffset, end: o.plain.byteOffset + o.plain.length, kind: o.kind };
      const sab = new SharedArrayBuffer(o.plain.length);
      Buffer.from(sab).set(o.plain);
      return { sab, start: 0, end: o.plain.length, kind: o.kind };
    });
    await store.ingest(chunks, (ids, admit) => {
      const release: string[] = [...(meta.getPublishValue<string[]>('unref') ?? [])];
      for (const a of added) admit(position.get(a.hex)!);
      for (const [ino, objs] of enc.objects) {
        const now = new Set(objs.map((o) => o.id.toString('hex')));
        for (const id of meta.publishedObjects(ino) ?? []) if (!now.has(id.toString('hex'))) release.push(id.toString('hex'));
        meta.setPublishedObjects(
          ino,
          objs.map((o) => o.id),
        );
      }
      if (topHex !== oldTop) {
        admit(position.get(topHex)!);
        if (oldTop) release.push(oldTop);
        meta.setPublishValue('top', topHex);
      }
      // Dirty inodes no encoded directory reached are gone (deleted, or unlinked and open).
      for (const ino of dirtyInos) {
        if (!enc.objects.has(ino) && !meta.getInode(ino)) {
          for (const id of meta.publishedObjects(ino) ?? []) release.push(id.toString('hex'));
          meta.setPublishedObjects(ino, undefined);
        }
        meta.clearDirty(ino, covered);
      }
      for (const id of enc.pins) if (meta.ref(id)) release.push(id.toString('hex'));
      this.noteStored(enc);
      meta.setPublishValue('unref', release.length ? release : undefined);
      void ids;
    });
    return list.length;
  }

  /** The head the next one follows: the last written from here, else the chain the backends hold. */
  private async previousHead(last: PublishedHead | undefined): Promise<{ seq: number; hash: Buffer } | undefined> {
    const { o } = this;
    if (last) return { seq: last.seq, hash: Buffer.from(last.hash, 'hex') };
    const found = await findHeads(o.backends, { repoId: o.repoId, publicKey: o.signing.publicKey });
    return found.head ? { seq: found.head.seq, hash: found.head.hash } : undefined;
  }

  private async writeHead(
    root: Buffer,
    index: Buffer[],
    prev: { seq: number; hash: Buffer } | undefined,
    snapshots: Buffer | undefined,
  ): Promise<{ seq: number }> {
    const { o } = this;
    const head: Head = {
      repoId: o.repoId,
      seq: prev ? prev.seq + 1 : 1,
      prev: prev ? prev.hash : Buffer.alloc(32),
      root,
      index,
      time: Date.now(),
      host: o.host.slice(0, 200) || 'unknown',
      ...(snapshots ? { snapshots } : {}),
    };
    const signed = signHead(head, o.signing.privateKey);
    const stored = await storeHead(o.backends, signed);
    if (!stored.ok.length)
      throw new Error(
        `head ${head.seq} was stored on no backend: ${stored.failed.map((f) => `${f.backend}: ${f.error.message}`).join('; ')}`,
      );
    for (const f of stored.failed) o.onWarning?.(`head ${head.seq} not stored on ${f.backend}: ${f.error.message}`);
    const record: PublishedHead = { seq: head.seq, hash: signed.hash.toString('hex'), root: root.toString('hex'), time: head.time };
    o.meta.txn(() => {
      o.meta.setPublishValue('head', record);
      o.meta.setPublishValue('snapshots', snapshots?.toString('hex'));
    });
    return { seq: head.seq };
  }

  /** After a head: the journal's references go (replaced objects, pins). */
  private release(): number {
    const { meta } = this.o;
    let n = 0;
    meta.txn(() => {
      for (const hex of meta.getPublishValue<string[]>('unref') ?? []) {
        const id = Buffer.from(hex, 'hex');
        if (meta.getBlock(id)) {
          meta.unref(id);
          n++;
        }
      }
      meta.setPublishValue('unref', undefined);
    });
    return n;
  }
}
