/**
 * Metadata in LMDB: the only module that opens the database. One synchronous write transaction
 * per filesystem operation, visible at once; durability comes in batches (group commit).
 *
 * LMDB runs in lmdb-js's default mode (overlappingSync on Linux), where every commit of a
 * top-level transaction is durable and the database keeps its integrity across a power loss
 * (never noSync: pages freed after the last sync could be reused and a power loss would then
 * corrupt the file). A durable commit costs ~0.5 ms of fdatasync on this thread, too much for
 * each operation, so operations run as child transactions of an open "epoch" transaction, which
 * commits durably on sync() (fsync, the writeback timer, unmount) and at the latest EPOCH_MS
 * after it began. A child that throws is rolled back alone. Reads on this thread see the
 * children at once; other processes (isg status) see an epoch when it commits. A crash (kill -9
 * or power) loses at most the epoch that was open: operations nobody fsynced, younger than
 * EPOCH_MS. Children never reach the disk before their epoch commits, so what their rows name
 * (block files) is made durable once per epoch, just before it commits (BeforeCommit), as
 * ext4's data=ordered does before a journal commit.
 *
 * Tables. Rows that tell anything of the files (names, sizes, times, modes, owners, symlink
 * targets, xattrs, chunk maps) are sealed (./seal.ts, docs/formats.md "Metadata at rest"): their
 * keys are big-endian binary (u64 inode numbers and offsets, exact up to 2^53, the limit of
 * allocIno; keyed 16-byte name tags), their values AES-256-GCM bound to the key:
 *   inodes3  ino -> sealed inode                    (schema 3; `inodes64` in 2, `inodes` in 1)
 *   dirents3 [parent, tag(name)] -> ino, sealed name
 *   extents3 [ino, offset] -> sealed [length, block id, forced]   the file's chunk map; gaps are holes
 *   blocks   id -> BlockRow                         refcounts of the local block store
 *   gc       id -> true                             blocks whose refcount fell to 0
 *   orphans  ino -> true                            unlinked inodes still open (`orphans64`)
 *   xattrs3  [ino, tag(name)] -> sealed [name, value]
 *   kv       name -> value                          counters and the schema version
 *   upload   seq -> block id                        durable upload queue: blocks not yet in a pack
 *   packs    pack id -> PackRow                     the pack index
 *   locs     block id -> [pack id, offset, length]  where a block lies in its pack
 *   parents  [ino, parent] -> links                 the directories naming an inode (hard links: several)
 *   pubdirty ino -> generation                      inodes changed since the tree was last encoded
 *   pubtree  ino -> ids (32 bytes each)             the tree objects a directory (or a file's chunk
 *                                                   list) was last encoded to, the directory's own first
 *   unindexed pack id -> [[block id, offset, length]]  packs committed since the last index object
 *   pubagg   ino -> [files, bytes]                  a directory's aggregate when last encoded (whole subtree)
 *   snapshots id (8 bytes) -> sealed SnapshotRecord the snapshots (src/snapshot/snapshots.ts)
 *   dead     [death epoch, block id] -> true        blocks at 0 references held by a snapshot
 *
 * Snapshot holds (docs/architecture.md "Snapshots"): kv `snapEpoch` E counts snapshots taken; a
 * block row records `birth` (E when it was made); a snapshot records epoch E and moves E on. A
 * block whose references fall to 0 while some snapshot's epoch >= its birth is held: listed in
 * `dead` under the current E (its `death`) instead of `gc`. Removing a snapshot frees the dead
 * blocks no other snapshot holds, scanning only the deaths between it and the next snapshot.
 *
 * The last four serve the publisher (src/snapshot/publish.ts): every change to an inode marks it
 * and the directories that name it dirty, in the transaction of the change, so a publish encodes
 * only dirty directories and their ancestors; the packer records each committed pack for the next
 * head's index object. They hold numbers and content-addressed ids, no names (nothing beyond the
 * shape of the tree, which dirents3 keys show anyway).
 *
 * Schemas 1 (32-bit inode keys) and 2 (64-bit, rows in plain) are migrated to 3 in one
 * transaction when first opened for writing, and the file is then rewritten compacted, so that no
 * free page keeps a plain row; opened read-only they are refused with a message that says so.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { open, RootDatabase, Database } from 'lmdb';
import { IsgError } from '../errors';
import { fsyncPath } from '../util/fsync';
import { MetaSeal } from './seal';

export const ROOT_INO = 1;
/**
 * 3: rows sealed (inodes3, dirents3, extents3, xattrs3). 2: 64-bit inode numbers, rows in plain
 * (inodes64, orphans64). 1: 32-bit integer keys (inodes, orphans).
 */
export const META_SCHEMA = 3;
/** The largest inode number: FUSE's ino is 64-bit, but it crosses fuse-native as a double (exact to 2^53). */
export const MAX_INO = Number.MAX_SAFE_INTEGER;
/** An epoch of operations commits durably at the latest this long after its first write. */
export const EPOCH_MS = 200;

export interface Inode {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  rdev: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  target?: string; // symlink target
}

/**
 * What must be durable before an epoch commits: the files its rows name. `run` makes what is
 * pending now durable (what is registered meanwhile stays pending) and rejects if it could not,
 * leaving what failed pending. Register in the same tick as the transaction that names it.
 */
export interface BeforeCommit {
  pending(): boolean;
  run(): Promise<void>;
}

/** The open epoch: an LMDB transaction the operations' transactions are children of. */
interface Epoch {
  /** Commits it, synchronously (see beginEpoch). */
  end: () => void;
  /** Settles when it has committed, or failed to. */
  committed: Promise<unknown>;
  timer: NodeJS.Timeout;
  /** Its before-commit pass and commit, once a sync started them. */
  finishing: Promise<void> | null;
}

export interface Extent {
  offset: number;
  length: number;
  id: Buffer;
  /** The chunk ends where the data ran out, not at a content-defined cut: appends re-chunk it. */
  forced: boolean;
}

export interface BlockRow {
  refs: number;
  plain: number; // plaintext bytes
  stored: number; // encoded bytes
  local?: boolean; // present in the local tier (absent = true, for rows written before packs)
  /** The snapshot epoch (kv snapEpoch) when the block was made (absent: 0). */
  birth?: number;
  /** Set while the block is held (refs 0, listed in `dead`): the epoch it died in. */
  death?: number;
}

/** A snapshot (src/snapshot/snapshots.ts): a published tree kept, with the blocks it names. */
export interface SnapshotRecord {
  /** 16 hex digits. */
  id: string;
  /** ms since the epoch. */
  time: number;
  tag?: string;
  /** Top tree object. */
  root: Buffer;
  files: number;
  /** Logical bytes (sum of file sizes). */
  bytes: number;
  /** The head that first named it. */
  headSeq: number;
  /** kv snapEpoch when it was taken. */
  epoch: number;
}

function encodeSnapshotRow(r: SnapshotRecord): Buffer {
  const { id: _id, root, ...rest } = r;
  return Buffer.concat([Buffer.from([ROW_V1]), Buffer.from(JSON.stringify({ ...rest, root: root.toString('hex') }))]);
}

function decodeSnapshotRow(id: string, b: Buffer): SnapshotRecord {
  if (b.length < 1 || b[0] !== ROW_V1) throw new IsgError('corrupt', `snapshot ${id}: unknown row format ${b[0]}`);
  const v = JSON.parse(b.toString('utf8', 1)) as Omit<SnapshotRecord, 'id' | 'root'> & { root: string };
  return { id, ...v, root: Buffer.from(v.root, 'hex') };
}

export interface PackRow {
  k: number;
  m: number;
  shardSize: number;
  packLength: number;
  /** Backend name of shard i. */
  placement: string[];
  /** Indices of the shards known to be stored. */
  stored: number[];
  /** Segment checksums of every shard, shard after shard (8 bytes each). */
  sums: Buffer;
  created: number;
}

export interface BlockLoc {
  pack: string;
  offset: number;
  length: number;
}

/** Big-endian u64 keys sort as the numbers do. */
function be(...ns: number[]): Buffer {
  const b = Buffer.allocUnsafe(8 * ns.length);
  ns.forEach((n, i) => b.writeBigUInt64BE(BigInt(n), 8 * i));
  return b;
}
function beAt(key: Uint8Array, i: number): number {
  return Number(Buffer.from(key.buffer, key.byteOffset, key.length).readBigUInt64BE(8 * i));
}

/** The format byte that starts every sealed row's plaintext. */
const ROW_V1 = 1;
const INODE_FIXED = 54;

/** Inode plaintext: v, flags (1 = has target), mode, uid, gid, nlink, rdev (u32), size (u64), a/m/ctime ns (i64), target. */
function encodeInode(i: Inode): Buffer {
  const target = i.target === undefined ? undefined : Buffer.from(i.target);
  const b = Buffer.allocUnsafe(INODE_FIXED + (target?.length ?? 0));
  b[0] = ROW_V1;
  b[1] = target ? 1 : 0;
  b.writeUInt32LE(i.mode, 2);
  b.writeUInt32LE(i.uid, 6);
  b.writeUInt32LE(i.gid, 10);
  b.writeUInt32LE(i.nlink, 14);
  b.writeUInt32LE(i.rdev, 18);
  b.writeBigUInt64LE(BigInt(i.size), 22);
  b.writeBigInt64LE(i.atimeNs, 30);
  b.writeBigInt64LE(i.mtimeNs, 38);
  b.writeBigInt64LE(i.ctimeNs, 46);
  target?.copy(b, INODE_FIXED);
  return b;
}

function decodeInode(ino: number, b: Buffer): Inode {
  if (b.length < INODE_FIXED || b[0] !== ROW_V1) throw new IsgError('corrupt', `inode ${ino}: unknown row format ${b[0]}`);
  const i: Inode = {
    ino,
    mode: b.readUInt32LE(2),
    uid: b.readUInt32LE(6),
    gid: b.readUInt32LE(10),
    nlink: b.readUInt32LE(14),
    rdev: b.readUInt32LE(18),
    size: Number(b.readBigUInt64LE(22)),
    atimeNs: b.readBigInt64LE(30),
    mtimeNs: b.readBigInt64LE(38),
    ctimeNs: b.readBigInt64LE(46),
  };
  if (b[1] & 1) i.target = b.toString('utf8', INODE_FIXED);
  return i;
}

/** Extent plaintext: v, forced (0/1), length (u48), block id. */
function encodeExtent(e: Extent): Buffer {
  const b = Buffer.allocUnsafe(8 + e.id.length);
  b[0] = ROW_V1;
  b[1] = e.forced ? 1 : 0;
  b.writeUIntLE(e.length, 2, 6);
  e.id.copy(b, 8);
  return b;
}

function decodeExtent(offset: number, b: Buffer): Extent {
  if (b.length < 8 || b[0] !== ROW_V1) throw new IsgError('corrupt', `extent at ${offset}: unknown row format ${b[0]}`);
  return { offset, length: b.readUIntLE(2, 6), id: b.subarray(8), forced: b[1] === 1 };
}

/** Xattr plaintext: v, name length (u16), name, value. */
function encodeXattr(name: string, value: Buffer): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.allocUnsafe(3 + n.length + value.length);
  b[0] = ROW_V1;
  b.writeUInt16LE(n.length, 1);
  n.copy(b, 3);
  value.copy(b, 3 + n.length);
  return b;
}

function decodeXattr(b: Buffer): { name: string; value: Buffer } {
  if (b.length < 3 || b[0] !== ROW_V1) throw new IsgError('corrupt', `xattr: unknown row format ${b[0]}`);
  const n = b.readUInt16LE(1);
  return { name: b.toString('utf8', 3, 3 + n), value: b.subarray(3 + n) };
}

/** The plain rows of schemas 1 and 2, read once by the migration. */
interface PlainInodeRow {
  m: number;
  u: number;
  g: number;
  n: number;
  s: number;
  r: number;
  a: string;
  t: string;
  c: string;
  l?: string;
}

export function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
}

/** Name of the directory a compacted copy of the database is written to, inside the meta directory. */
const COMPACT_DIR = 'compact.tmp';

export class Meta {
  private readonly root: RootDatabase;
  private readonly inodes: Database<Buffer, Buffer>;
  private readonly dirents: Database<Buffer, Buffer>;
  private readonly extents: Database<Buffer, Buffer>;
  private readonly blocks: Database<BlockRow, Buffer>;
  private readonly gc: Database<boolean, Buffer>;
  private readonly orphans: Database<boolean, number>;
  private readonly xattrs: Database<Buffer, Buffer>;
  private readonly kv: Database<unknown, string>;
  private readonly upload: Database<Buffer, number>;
  private readonly packs: Database<PackRow, string>;
  private readonly locs: Database<[string, number, number], Buffer>;
  private readonly parents: Database<number, Buffer>;
  private readonly pubdirty: Database<number, Buffer>;
  private readonly pubtree: Database<Buffer, Buffer>;
  private readonly unindexed: Database<[Buffer, number, number][], string>;
  private readonly pubagg: Database<[number, number], Buffer>;
  private readonly snapshots: Database<Buffer, Buffer>;
  private readonly dead: Database<boolean, Buffer>;
  /** The largest snapshot epoch (-1: no snapshot), kept from the snapshots table. */
  private holdEpoch = -1;
  /** Changes are marked dirty with this generation; a publish moves it on (see beginPublish). */
  private publishGen = 1;
  private closed = false;
  /** The schema this open migrated from (the file then needs compacting), if any. */
  private migratedFrom: number | undefined;

  /** The open epoch (null before the first write and once it has committed). */
  private epoch: Epoch | null = null;
  /** The last epoch that began to commit, until its commit has settled. */
  private ending: Promise<void> | null = null;
  private beforeCommit: BeforeCommit | null = null;

  /**
   * Opens the database in `dir` with the repository's metadata seal. An older schema is migrated
   * (read-write) or refused (read-only: a read-only user must not write).
   */
  static async open(dir: string, seal: MetaSeal, readOnly = false): Promise<Meta> {
    if (!readOnly) await fs.promises.rm(path.join(dir, COMPACT_DIR), { recursive: true, force: true }); // a crash's leftover
    const meta = new Meta(dir, seal, readOnly);
    if (meta.migratedFrom === undefined) return meta;
    await meta.compactAndClose();
    return new Meta(dir, seal, readOnly);
  }

  private constructor(
    private readonly dir: string,
    private readonly seal: MetaSeal,
    private readonly readOnly: boolean,
  ) {
    // safeRestore: after a crash, start from the last commit known flushed, whatever the boot id.
    this.root = open({ path: dir, maxDbs: 24, readOnly, safeRestore: true } as Parameters<typeof open>[0]);
    this.kv = this.root.openDB({ name: 'kv' });
    const schema = this.kv.get('schema') as number | undefined;
    if (schema !== undefined && schema !== META_SCHEMA && (readOnly || schema > META_SCHEMA)) {
      void this.root.close();
      throw new IsgError(
        'corrupt',
        schema > META_SCHEMA
          ? `metadata schema ${schema} is newer than this isgfs reads (${META_SCHEMA})`
          : `the metadata is in schema ${schema}, older than this isgfs reads read-only (${META_SCHEMA}); mount it read-write once to upgrade it`,
      );
    }
    this.inodes = this.sealedTable('inodes3');
    this.dirents = this.sealedTable('dirents3');
    this.extents = this.sealedTable('extents3');
    this.xattrs = this.sealedTable('xattrs3');
    this.blocks = this.root.openDB({ name: 'blocks', keyEncoding: 'binary' });
    this.gc = this.root.openDB({ name: 'gc', keyEncoding: 'binary' });
    this.orphans = this.root.openDB({ name: 'orphans64', keyEncoding: 'ordered-binary' });
    this.upload = this.root.openDB({ name: 'upload', keyEncoding: 'uint32' });
    this.packs = this.root.openDB({ name: 'packs' });
    this.locs = this.root.openDB({ name: 'locs', keyEncoding: 'binary' });
    this.parents = this.root.openDB({ name: 'parents', keyEncoding: 'binary' });
    this.pubdirty = this.root.openDB({ name: 'pubdirty', keyEncoding: 'binary' });
    this.pubtree = this.root.openDB({ name: 'pubtree', keyEncoding: 'binary', encoding: 'binary' });
    this.unindexed = this.root.openDB({ name: 'unindexed' });
    this.pubagg = this.root.openDB({ name: 'pubagg', keyEncoding: 'binary' });
    this.snapshots = this.sealedTable('snapshots');
    this.dead = this.root.openDB({ name: 'dead', keyEncoding: 'binary' });
    this.holdEpoch = this.computeHoldEpoch();
    this.publishGen = (this.kv.get('publishGen') as number | undefined) ?? 1;
    if (schema !== undefined && schema < META_SCHEMA) this.migrate(schema);
  }

  private sealedTable(name: string): Database<Buffer, Buffer> {
    return this.root.openDB({ name, keyEncoding: 'binary', encoding: 'binary' });
  }

  /**
   * Schemas 1 and 2 -> 3: every plain row is sealed into its schema 3 table and the old tables are
   * dropped, in one transaction (a crash leaves the old schema as it was).
   */
  private migrate(from: number): void {
    const oldInodes = this.root.openDB<PlainInodeRow, number>(
      from === 1 ? { name: 'inodes', keyEncoding: 'uint32' } : { name: 'inodes64', keyEncoding: 'ordered-binary' },
    );
    const oldOrphans = this.root.openDB<boolean, number>({ name: 'orphans', keyEncoding: 'uint32' });
    const oldDirents = this.root.openDB<number, [number, string]>({ name: 'dirents', keyEncoding: 'ordered-binary' });
    const oldExtents = this.root.openDB<[number, Buffer, number], [number, number]>({ name: 'extents', keyEncoding: 'ordered-binary' });
    const oldXattrs = this.root.openDB<Buffer, [number, string]>({ name: 'xattrs', keyEncoding: 'ordered-binary', encoding: 'binary' });
    this.txn(() => {
      for (const { key, value: r } of oldInodes.getRange()) {
        const i: Inode = {
          ino: key,
          mode: r.m,
          uid: r.u,
          gid: r.g,
          nlink: r.n,
          size: r.s,
          rdev: r.r,
          atimeNs: BigInt(r.a),
          mtimeNs: BigInt(r.t),
          ctimeNs: BigInt(r.c),
        };
        if (r.l !== undefined) i.target = r.l;
        this.putInode(i);
      }
      for (const { key, value } of oldDirents.getRange()) this.link(key[0], key[1], value);
      for (const { key, value: v } of oldExtents.getRange())
        this.putExtent(key[0], { offset: key[1], length: v[0], id: Buffer.from(v[1]), forced: v[2] === 1 });
      for (const { key, value } of oldXattrs.getRange()) this.setXattr(key[0], key[1], Buffer.from(value));
      if (from === 1) for (const ino of oldOrphans.getKeys()) this.orphans.putSync(ino, true);
      for (const db of [oldInodes, oldOrphans, oldDirents, oldExtents, oldXattrs]) db.dropSync();
      this.kv.putSync('schema', META_SCHEMA);
    });
    this.migratedFrom = from;
  }

  /**
   * After a migration: the plain rows it replaced lie on free pages of the file until reused.
   * The database is copied compacted (free pages are not copied), and the copy, made durable,
   * replaces the file.
   */
  private async compactAndClose(): Promise<void> {
    await this.sync();
    const tmp = path.join(this.dir, COMPACT_DIR);
    await fs.promises.mkdir(tmp);
    await this.root.backup(tmp, true);
    await this.root.close();
    await fsyncPath(path.join(tmp, 'data.mdb'), 'file');
    await fs.promises.rename(path.join(tmp, 'data.mdb'), path.join(this.dir, 'data.mdb'));
    await fsyncPath(this.dir, 'dir');
    await fs.promises.rm(tmp, { recursive: true, force: true });
  }

  /** Creates the root directory on a new database. */
  initialise(uid: number, gid: number): void {
    this.txn(() => {
      if (this.kv.get('schema') !== undefined) {
        const v = this.kv.get('schema');
        if (v !== META_SCHEMA) throw new Error(`metadata schema ${String(v)} is not supported (want ${META_SCHEMA})`);
        return;
      }
      const t = nowNs();
      this.putInode({ ino: ROOT_INO, mode: 0o040755, uid, gid, nlink: 2, size: 0, rdev: 0, atimeNs: t, mtimeNs: t, ctimeNs: t });
      this.kv.putSync('nextIno', ROOT_INO + 1);
      this.kv.putSync('schema', META_SCHEMA);
    });
    this.preparePublishState();
  }

  /**
   * A database written before publishing existed: the parents table is built from the dirents
   * (their keys and values are plain numbers), and every inode is marked dirty, so the first
   * publish encodes the whole tree.
   */
  private preparePublishState(): void {
    if (this.kv.get('publishState') === 1) return;
    this.txn(() => {
      for (const key of [...this.parents.getKeys()]) this.parents.removeSync(Buffer.from(key)); // a migration's, counted again
      for (const { key, value } of this.dirents.getRange()) this.addParent(beAt(value, 0), beAt(key, 0));
      for (const key of this.inodes.getKeys()) this.pubdirty.putSync(Buffer.from(key), this.publishGen);
      this.kv.putSync('publishState', 1);
    });
  }

  /** What every epoch makes durable before it commits (the local tier's block files). */
  setBeforeCommit(b: BeforeCommit): void {
    this.beforeCommit = b;
  }

  /**
   * Runs fn in one synchronous write transaction (a child of the open epoch); an exception aborts
   * it. Committed when fn returns: visible at once, durable at the next sync().
   */
  txn<T>(fn: () => T): T {
    if (this.closed) throw new IsgError('unavailable', 'the metadata database is closed');
    if (!this.epoch && !this.readOnly) this.beginEpoch();
    return this.root.transactionSync(fn);
  }

  private beginEpoch(): void {
    // lmdb-js keeps a transaction whose callback returns a promise-like open until it settles
    // (the transactions started meanwhile on this thread are its children), and commits it in
    // the callback it passes to `then`. Given this thenable, that callback runs when `end` is
    // called, in that very tick: nothing can join the epoch between the last check of the
    // before-commit pass and the commit, and the next transaction starts a new epoch.
    let end!: () => void;
    const open = {
      then: (onEnd: (v: undefined) => unknown) =>
        new Promise((resolve, reject) => {
          end = () => {
            try {
              resolve(onEnd(undefined));
            } catch (e) {
              reject(e instanceof Error ? e : new Error(String(e)));
            }
          };
        }),
    };
    const committed = this.root.transactionSync(() => open) as unknown as Promise<unknown>;
    committed.catch(() => undefined); // reported by the sync that ended it
    const timer = setTimeout(() => void this.sync().catch(() => undefined), EPOCH_MS);
    timer.unref();
    this.epoch = { end, committed, timer, finishing: null };
  }

  /**
   * Resolves when everything committed so far is durable: the before-commit pass makes the open
   * epoch's files durable (again while it finds more), then the epoch commits (a durable LMDB
   * commit: data pages fdatasynced, then the meta page). Callers that come meanwhile share it:
   * their transactions joined the same epoch. Rejects if the pass or the commit failed; after a
   * failed pass the epoch stays open (its rows must not reach the disk before their files) and
   * the next sync, at the latest EPOCH_MS later, tries again.
   */
  sync(): Promise<void> {
    const e = this.epoch;
    if (!e) return this.ending ?? Promise.resolve();
    if (!e.finishing) {
      clearTimeout(e.timer);
      e.finishing = this.finishEpoch(e);
    }
    return e.finishing;
  }

  private async finishEpoch(e: Epoch): Promise<void> {
    try {
      while (this.beforeCommit?.pending()) await this.beforeCommit.run();
    } catch (err) {
      e.finishing = null;
      e.timer = setTimeout(() => void this.sync().catch(() => undefined), EPOCH_MS);
      e.timer.unref();
      throw err;
    }
    // Same tick as the last check: the epoch commits with nothing unsynced in it.
    this.epoch = null;
    e.end();
    const ending = e.committed.then(
      () => undefined,
      (err: Error) => {
        throw new Error(`metadata commit failed: ${err.message}`, { cause: err });
      },
    );
    this.ending = ending;
    try {
      await ending;
    } finally {
      if (this.ending === ending) this.ending = null;
    }
  }

  /**
   * Commits what is open and closes the database. A transaction that background work (an
   * eviction, a publish's release) starts while the last epoch commits opens another epoch: that
   * one is committed too, never left open under the closing environment. After close, txn throws.
   */
  async close(): Promise<void> {
    while (this.epoch || this.ending) await this.sync();
    this.closed = true;
    await this.root.close();
  }

  // inodes
  getInode(ino: number): Inode | undefined {
    const key = be(ino);
    const v = this.inodes.get(key);
    return v ? decodeInode(ino, this.seal.open('inode', key, v)) : undefined;
  }
  putInode(i: Inode): void {
    const key = be(i.ino);
    this.inodes.putSync(key, this.seal.seal('inode', key, encodeInode(i)));
    this.changed(i.ino);
  }
  deleteInode(ino: number): void {
    this.inodes.removeSync(be(ino));
    this.changed(ino);
  }
  allocIno(): number {
    const ino = this.kv.get('nextIno') as number;
    if (ino > MAX_INO) throw new IsgError('no-space', `inode numbers are exhausted (the largest is ${MAX_INO})`);
    this.kv.putSync('nextIno', ino + 1);
    return ino;
  }
  /** `n` consecutive new inode numbers in one read and one write; returns the first. */
  allocInos(n: number): number {
    const ino = this.kv.get('nextIno') as number;
    if (ino + n - 1 > MAX_INO) throw new IsgError('no-space', `inode numbers are exhausted (the largest is ${MAX_INO})`);
    this.kv.putSync('nextIno', ino + n);
    return ino;
  }
  /**
   * Rows of a batch of fresh inodes (numbers from allocInos in this transaction, named only by
   * entries of the batch, in directories of the batch; `isg clone`): each is one write, none of
   * the reads an ordinary change does (a row to replace, the parents to mark dirty: there are
   * none yet). The inode is marked dirty once, when its row is put; its directory, a fresh inode
   * too, is dirty already. The batch's top is named with putInode and link as any new inode.
   */
  putFreshInode(i: Inode): void {
    const key = be(i.ino);
    this.inodes.putSync(key, this.seal.seal('inode', key, encodeInode(i)));
    this.pubdirty.putSync(key, this.publishGen);
  }
  /** A fresh name (see putFreshInode); `links`: the names of `ino` in `parent` so far, this one included. */
  linkFresh(parent: number, name: string, ino: number, links: number): void {
    const key = this.direntKey(parent, name);
    const inoBytes = be(ino);
    this.dirents.putSync(key, Buffer.concat([inoBytes, this.seal.seal('dirent', Buffer.concat([key, inoBytes]), Buffer.from(name))]));
    this.parents.putSync(be(ino, parent), links);
  }
  /** A chunk map entry of a fresh inode (see putFreshInode). */
  putFreshExtent(ino: number, e: Extent): void {
    const key = be(ino, e.offset);
    this.extents.putSync(key, this.seal.seal('extent', key, encodeExtent(e)));
  }
  /** An xattr of a fresh inode (see putFreshInode). */
  setFreshXattr(ino: number, name: string, value: Buffer): void {
    const key = this.xattrKey(ino, name);
    this.xattrs.putSync(key, this.seal.seal('xattr', key, encodeXattr(name, value)));
  }
  /** The next inode number to give (tests; numbers are never reused, so only upward makes sense). */
  setNextIno(ino: number): void {
    if (!Number.isSafeInteger(ino) || ino <= ROOT_INO) throw new RangeError(`bad inode number ${ino}`);
    this.txn(() => this.kv.putSync('nextIno', ino));
  }
  inodeCount(): number {
    return (this.inodes.getStats() as { entryCount: number }).entryCount;
  }
  *allInodes(): Iterable<Inode> {
    for (const { key, value } of this.inodes.getRange()) yield decodeInode(beAt(key, 0), this.seal.open('inode', key, value));
  }

  // directory entries: [parent, tag(name)] -> ino (8 bytes), then the name sealed with key and ino
  private direntKey(parent: number, name: string): Buffer {
    return Buffer.concat([be(parent), this.seal.nameTag(parent, name)]);
  }
  lookup(parent: number, name: string): number | undefined {
    const v = this.dirents.get(this.direntKey(parent, name));
    return v ? beAt(v, 0) : undefined;
  }
  link(parent: number, name: string, ino: number): void {
    const key = this.direntKey(parent, name);
    const inoBytes = be(ino);
    const before = this.dirents.get(key);
    if (before) this.removeParent(beAt(before, 0), parent);
    this.dirents.putSync(key, Buffer.concat([inoBytes, this.seal.seal('dirent', Buffer.concat([key, inoBytes]), Buffer.from(name))]));
    this.addParent(ino, parent);
    this.markDirty(parent);
  }
  unlinkEntry(parent: number, name: string): void {
    const key = this.direntKey(parent, name);
    const before = this.dirents.get(key);
    if (!before) return;
    this.dirents.removeSync(key);
    this.removeParent(beAt(before, 0), parent);
    this.markDirty(parent);
  }

  // publishing state (src/snapshot/publish.ts): parents, dirty inodes, last encoded objects
  private addParent(ino: number, parent: number): void {
    const key = be(ino, parent);
    this.parents.putSync(key, (this.parents.get(key) ?? 0) + 1);
  }
  private removeParent(ino: number, parent: number): void {
    const key = be(ino, parent);
    const n = (this.parents.get(key) ?? 0) - 1;
    if (n > 0) this.parents.putSync(key, n);
    else this.parents.removeSync(key);
  }
  /** The directories with an entry naming `ino` (one per directory, however many names). */
  parentsOf(ino: number): number[] {
    return [...this.parents.getKeys({ start: be(ino), end: be(ino + 1) })].map((k) => beAt(k, 1));
  }
  private markDirty(ino: number): void {
    const key = be(ino);
    if (this.pubdirty.get(key) !== this.publishGen) this.pubdirty.putSync(key, this.publishGen);
  }
  /** An inode changed (attributes, data, xattrs, or deleted): it and every directory naming it are dirty. */
  private changed(ino: number): void {
    this.markDirty(ino);
    for (const p of this.parentsOf(ino)) this.markDirty(p);
  }
  /**
   * Starts a publish: changes from now on are marked with a new generation, so that the publish
   * clears (clearDirty) only what it encoded. Returns the generation the publish covers.
   */
  beginPublish(): number {
    const covered = this.publishGen;
    this.txn(() => this.kv.putSync('publishGen', covered + 1));
    this.publishGen = covered + 1;
    return covered;
  }
  /** Dirty inodes, with the generation they were last marked in. */
  dirtyInodes(): { ino: number; gen: number }[] {
    return [...this.pubdirty.getRange()].map(({ key, value }) => ({ ino: beAt(key, 0), gen: value }));
  }
  dirtyCount(): number {
    return (this.pubdirty.getStats() as { entryCount: number }).entryCount;
  }
  /** Clears the dirty mark of `ino` unless it was marked again after generation `covered`. */
  clearDirty(ino: number, covered: number): void {
    const key = be(ino);
    const gen = this.pubdirty.get(key);
    if (gen !== undefined && gen <= covered) this.pubdirty.removeSync(key);
  }
  /** Every dirty mark goes (a restore: the state is the published one). */
  clearAllDirty(): void {
    for (const key of [...this.pubdirty.getKeys()]) this.pubdirty.removeSync(Buffer.from(key));
  }
  /** The tree objects `ino` was last encoded to (a directory's own first), or undefined. */
  publishedObjects(ino: number): Buffer[] | undefined {
    const v = this.pubtree.get(be(ino));
    if (!v) return undefined;
    const out: Buffer[] = [];
    for (let at = 0; at < v.length; at += 32) out.push(Buffer.from(v.subarray(at, at + 32)));
    return out;
  }
  setPublishedObjects(ino: number, ids: Buffer[] | undefined): void {
    if (ids && ids.length) this.pubtree.putSync(be(ino), Buffer.concat(ids));
    else {
      this.pubtree.removeSync(be(ino));
      this.pubagg.removeSync(be(ino));
    }
  }
  /** A directory's aggregate (files, logical bytes of its whole subtree) when last encoded. */
  getAggregate(ino: number): { files: number; bytes: number } | undefined {
    const v = this.pubagg.get(be(ino));
    return v ? { files: v[0], bytes: v[1] } : undefined;
  }
  setAggregate(ino: number, a: { files: number; bytes: number }): void {
    this.pubagg.putSync(be(ino), [a.files, a.bytes]);
  }
  /** A pack committed since the last index object: its block locations, for the next publish. */
  markUnindexed(pack: string, entries: { id: Buffer; offset: number; length: number }[]): void {
    this.unindexed.putSync(
      pack,
      entries.map((e) => [e.id, e.offset, e.length]),
    );
  }
  unindexedPacks(): { pack: string; entries: { id: Buffer; offset: number; length: number }[] }[] {
    return [...this.unindexed.getRange()].map(({ key, value }) => ({
      pack: key,
      entries: value.map(([id, offset, length]) => ({ id: Buffer.from(id), offset, length })),
    }));
  }
  clearUnindexed(packs: string[]): void {
    for (const p of packs) this.unindexed.removeSync(p);
  }
  /**
   * The block references the publish state holds, one per naming: every inode's published
   * objects, the top object, and the references waiting for the next head (`isg check` counts them).
   */
  *publishReferences(): Iterable<Buffer> {
    for (const { value } of this.pubtree.getRange())
      for (let at = 0; at < value.length; at += 32) yield Buffer.from(value.subarray(at, at + 32));
    const top = this.getPublishValue<string>('top');
    if (top) yield Buffer.from(top, 'hex');
    for (const hex of this.getPublishValue<string[]>('unref') ?? []) yield Buffer.from(hex, 'hex');
  }
  /** A value of the publisher's own (its last head, its index list, objects waiting to be unreferenced). */
  getPublishValue<T>(name: 'head' | 'top' | 'unref' | 'index' | 'snapshots'): T | undefined {
    return this.kv.get(`publish.${name}`) as T | undefined;
  }
  setPublishValue(name: 'head' | 'top' | 'unref' | 'index' | 'snapshots', value: unknown): void {
    if (value === undefined) this.kv.removeSync(`publish.${name}`);
    else this.kv.putSync(`publish.${name}`, value);
  }
  /** In the order of the name tags (no order a user should rely on, like most filesystems'). */
  *entries(parent: number): Iterable<{ name: string; ino: number }> {
    for (const { key, value } of this.dirents.getRange({ start: be(parent), end: be(parent + 1) })) {
      const inoBytes = value.subarray(0, 8);
      const name = this.seal.open('dirent', Buffer.concat([key, inoBytes]), value.subarray(8)).toString();
      yield { name, ino: beAt(inoBytes, 0) };
    }
  }
  hasEntries(parent: number): boolean {
    for (const _ of this.dirents.getKeys({ start: be(parent), end: be(parent + 1), limit: 1 })) return true;
    return false;
  }

  // extents (chunk map): [ino, offset] -> sealed [length, id, forced]
  private extentAt(key: Buffer, value: Buffer): Extent {
    return decodeExtent(beAt(key, 1), this.seal.open('extent', key, value));
  }
  extentsOf(ino: number, from = 0, to = Number.MAX_SAFE_INTEGER): Extent[] {
    // The extent containing `from` starts before it: step back one entry (none starts before 0:
    // a whole file's list, as a publish reads it for every file, takes one range read).
    const out: Extent[] = [];
    if (from > 0)
      for (const { key, value } of this.extents.getRange({ start: be(ino, from), end: be(ino), reverse: true, limit: 1 })) {
        const e = this.extentAt(key, value);
        if (e.offset + e.length > from) out.push(e);
      }
    for (const { key, value } of this.extents.getRange({ start: be(ino, from), end: be(ino, to) })) {
      if (out.length && out[0].offset === beAt(key, 1)) continue;
      out.push(this.extentAt(key, value));
    }
    return out;
  }
  putExtent(ino: number, e: Extent): void {
    const key = be(ino, e.offset);
    this.extents.putSync(key, this.seal.seal('extent', key, encodeExtent(e)));
    this.changed(ino);
  }
  deleteExtent(ino: number, offset: number): void {
    this.extents.removeSync(be(ino, offset));
    this.changed(ino);
  }
  *allExtents(): Iterable<{ ino: number; extent: Extent }> {
    for (const { key, value } of this.extents.getRange()) yield { ino: beAt(key, 0), extent: this.extentAt(key, value) };
  }

  // blocks
  getBlock(id: Buffer): BlockRow | undefined {
    return this.blocks.get(id);
  }
  /** +n references (1 by default); returns false when the block is unknown (its data must be stored first). */
  ref(id: Buffer, n = 1): boolean {
    const b = this.blocks.get(id);
    if (!b) return false;
    const row = { ...b, refs: b.refs + n };
    if (b.refs === 0) {
      this.gc.removeSync(id);
      if (b.death !== undefined) {
        this.dead.removeSync(Buffer.concat([be(b.death), id])); // held, live again
        delete row.death;
      }
    }
    this.blocks.putSync(id, row);
    return true;
  }
  /**
   * A block known to be on the backends but not in the local tier (a restore): +1 reference, or a
   * new row with one (`n`: that many). `stored`: its encoded size, when known (the pack index gives it), else 0.
   */
  refRemote(id: Buffer, plain: number, stored: number, n = 1): void {
    if (this.ref(id, n)) return;
    this.blocks.putSync(id, { refs: n, plain, stored, local: false, birth: this.snapEpoch() });
  }
  /** A new block, present in the local tier; it joins the upload queue. */
  addBlock(id: Buffer, plain: number, stored: number): void {
    this.blocks.putSync(id, { refs: 1, plain, stored, local: true, birth: this.snapEpoch() });
    const seq = ((this.kv.get('uploadSeq') as number | undefined) ?? 0) + 1;
    this.kv.putSync('uploadSeq', seq);
    this.upload.putSync(seq, id);
  }
  setLocal(id: Buffer, local: boolean): void {
    const b = this.blocks.get(id);
    if (b) this.blocks.putSync(id, { ...b, local });
  }
  unref(id: Buffer): void {
    const b = this.blocks.get(id);
    if (!b) throw new Error(`unref of unknown block ${id.toString('hex')}`);
    if (b.refs - 1 > 0) {
      this.blocks.putSync(id, { ...b, refs: b.refs - 1 });
      return;
    }
    if (this.holdEpoch >= (b.birth ?? 0)) {
      // A snapshot names it: held, not a gc candidate (see the table notes above).
      const death = this.snapEpoch();
      this.blocks.putSync(id, { ...b, refs: 0, death });
      this.dead.putSync(Buffer.concat([be(death), id]), true);
    } else {
      this.blocks.putSync(id, { ...b, refs: 0 });
      this.gc.putSync(id, true);
    }
  }
  /** Lowers a block's birth to `epoch` (objects a snapshot publish stores after its epoch moved on). */
  lowerBirth(id: Buffer, epoch: number): void {
    const b = this.blocks.get(id);
    if (b && (b.birth ?? 0) > epoch) this.blocks.putSync(id, { ...b, birth: epoch });
  }
  /** Blocks held by snapshots (at 0 references, kept): how many, and their stored bytes. */
  heldBlocks(): number {
    return (this.dead.getStats() as { entryCount: number }).entryCount;
  }

  // snapshots: records and epochs
  /** kv snapEpoch: the epoch the next snapshot takes. */
  snapEpoch(): number {
    return (this.kv.get('snapEpoch') as number | undefined) ?? 0;
  }
  /** Moves the epoch on past every snapshot (connect, after filling the table from the backends). */
  setSnapEpoch(e: number): void {
    this.kv.putSync('snapEpoch', e);
  }
  private computeHoldEpoch(): number {
    let max = -1;
    for (const { key, value } of this.snapshots.getRange()) max = Math.max(max, this.openSnapshot(key, value).epoch);
    return max;
  }
  private openSnapshot(key: Uint8Array, value: Buffer): SnapshotRecord {
    const k = Buffer.from(key);
    return decodeSnapshotRow(k.toString('hex'), this.seal.open('snapshot', k, value));
  }
  /**
   * Takes a snapshot's epoch: returns E and moves it to E + 1. Call in the same synchronous
   * stretch as the encode of the tree the snapshot names (in a transaction).
   */
  takeSnapEpoch(): number {
    const e = this.snapEpoch();
    this.kv.putSync('snapEpoch', e + 1);
    return e;
  }
  putSnapshot(r: SnapshotRecord): void {
    if (!/^[0-9a-f]{16}$/.test(r.id)) throw new RangeError(`bad snapshot id ${r.id}`);
    const key = Buffer.from(r.id, 'hex');
    this.snapshots.putSync(key, this.seal.seal('snapshot', key, encodeSnapshotRow(r)));
    this.holdEpoch = Math.max(this.holdEpoch, r.epoch);
  }
  getSnapshot(id: string): SnapshotRecord | undefined {
    if (!/^[0-9a-f]{16}$/.test(id)) return undefined;
    const key = Buffer.from(id, 'hex');
    const v = this.snapshots.get(key);
    return v ? this.openSnapshot(key, v) : undefined;
  }
  /** Every snapshot, oldest (smallest epoch) first. */
  allSnapshots(): SnapshotRecord[] {
    return [...this.snapshots.getRange()].map(({ key, value }) => this.openSnapshot(key, value)).sort((a, b) => a.epoch - b.epoch);
  }
  /**
   * Removes a snapshot and frees the blocks it alone held: with prev / next the epochs of the
   * snapshots around it (-1 / none), the dead blocks that died in (epoch, next] and were born
   * after prev become gc candidates; those that died after next stay (next holds them). Cost: the
   * dead blocks in that range. Returns how many were freed.
   */
  removeSnapshot(id: string): number {
    const r = this.getSnapshot(id);
    if (!r) return 0;
    this.snapshots.removeSync(Buffer.from(id, 'hex'));
    const rest = this.allSnapshots();
    this.holdEpoch = rest.length ? rest[rest.length - 1].epoch : -1;
    const prev = rest.filter((s) => s.epoch < r.epoch).pop()?.epoch ?? -1;
    const next = rest.find((s) => s.epoch > r.epoch)?.epoch;
    const end = next === undefined ? undefined : be(next + 1);
    let freed = 0;
    for (const key of [...this.dead.getKeys({ start: be(r.epoch + 1), ...(end ? { end } : {}) })]) {
      const k = Buffer.from(key);
      const id = k.subarray(8);
      const b = this.blocks.get(id);
      if (b && b.refs === 0 && (b.birth ?? 0) <= prev) continue; // prev holds it
      this.dead.removeSync(k);
      if (b && b.refs === 0) {
        const { death: _death, ...row } = b;
        this.blocks.putSync(id, row);
        this.gc.putSync(id, true);
        freed++;
      }
    }
    return freed;
  }
  *allBlocks(): Iterable<{ id: Buffer; row: BlockRow }> {
    for (const { key, value } of this.blocks.getRange()) yield { id: key, row: value };
  }
  gcCandidates(limit = 10_000): Buffer[] {
    return [...this.gc.getKeys({ limit })];
  }
  dropBlock(id: Buffer): void {
    this.gc.removeSync(id);
    this.blocks.removeSync(id);
    this.locs.removeSync(id);
  }

  // upload queue, packs, block locations
  queued(limit = 100_000): { seq: number; id: Buffer }[] {
    return [...this.upload.getRange({ limit })].map(({ key, value }) => ({ seq: key, id: value }));
  }
  dequeue(seq: number): void {
    this.upload.removeSync(seq);
  }
  queueLength(): number {
    return (this.upload.getStats() as { entryCount: number }).entryCount;
  }
  getPack(id: string): PackRow | undefined {
    return this.packs.get(id);
  }
  putPack(id: string, row: PackRow): void {
    this.packs.putSync(id, row);
  }
  *allPacks(): Iterable<{ id: string; row: PackRow }> {
    for (const { key, value } of this.packs.getRange()) yield { id: key, row: value };
  }
  getLoc(id: Buffer): BlockLoc | undefined {
    const v = this.locs.get(id);
    return v ? { pack: v[0], offset: v[1], length: v[2] } : undefined;
  }
  putLoc(id: Buffer, loc: BlockLoc): void {
    this.locs.putSync(id, [loc.pack, loc.offset, loc.length]);
  }

  /**
   * Queued blocks of live files whose local copy the packer found missing or damaged (hex ids):
   * they stay queued, and `isg status` can count them.
   */
  damagedBlocks(): string[] {
    return (this.kv.get('damagedBlocks') as string[] | undefined) ?? [];
  }
  setDamagedBlocks(hexes: string[]): void {
    if (hexes.length) this.kv.putSync('damagedBlocks', hexes);
    else this.kv.removeSync('damagedBlocks');
  }

  // names libfuse hid open-unlinked files under (cleaned at mount after a crash)
  rememberHidden(parent: number, name: string): void {
    const list = (this.kv.get('hidden') as [number, string][] | undefined) ?? [];
    this.kv.putSync('hidden', [...list, [parent, name]]);
  }
  forgetHidden(parent: number, name: string): void {
    const list = (this.kv.get('hidden') as [number, string][] | undefined) ?? [];
    this.kv.putSync(
      'hidden',
      list.filter(([p, n]) => p !== parent || n !== name),
    );
  }
  hiddenNames(): { parent: number; name: string }[] {
    return ((this.kv.get('hidden') as [number, string][] | undefined) ?? []).map(([parent, name]) => ({ parent, name }));
  }

  // orphans
  addOrphan(ino: number): void {
    this.orphans.putSync(ino, true);
  }
  removeOrphan(ino: number): void {
    this.orphans.removeSync(ino);
  }
  orphanList(): number[] {
    return [...this.orphans.getKeys()];
  }

  // xattrs: [ino, tag(name)] -> sealed [name, value]
  private xattrKey(ino: number, name: string): Buffer {
    return Buffer.concat([be(ino), this.seal.nameTag(ino, name)]);
  }
  private *xattrRows(start: Buffer | undefined, end: Buffer | undefined): Iterable<{ key: Buffer; name: string; value: Buffer }> {
    for (const { key, value } of this.xattrs.getRange(start && end ? { start, end } : {})) {
      yield { key: Buffer.from(key), ...decodeXattr(this.seal.open('xattr', key, value)) };
    }
  }
  getXattr(ino: number, name: string): Buffer | undefined {
    const key = this.xattrKey(ino, name);
    const v = this.xattrs.get(key);
    if (!v) return undefined;
    const x = decodeXattr(this.seal.open('xattr', key, v));
    return x.name === name ? x.value : undefined;
  }
  setXattr(ino: number, name: string, value: Buffer): void {
    const key = this.xattrKey(ino, name);
    this.xattrs.putSync(key, this.seal.seal('xattr', key, encodeXattr(name, value)));
    this.changed(ino);
  }
  removeXattr(ino: number, name: string): void {
    this.xattrs.removeSync(this.xattrKey(ino, name));
    this.changed(ino);
  }
  xattrNames(ino: number): string[] {
    return [...this.xattrRows(be(ino), be(ino + 1))].map((x) => x.name);
  }
  /** Whether any inode has an xattr of this name (a scan of every xattr: they are few). */
  anyXattrNamed(name: string): boolean {
    for (const x of this.xattrRows(undefined, undefined)) if (x.name === name) return true;
    return false;
  }
  removeAllXattrs(ino: number): void {
    for (const { key } of [...this.xattrRows(be(ino), be(ino + 1))]) this.xattrs.removeSync(key);
    this.changed(ino);
  }
  /** Every xattr of an inode, name and value. */
  xattrsOf(ino: number): { name: string; value: Buffer }[] {
    return [...this.xattrRows(be(ino), be(ino + 1))].map(({ name, value }) => ({ name, value }));
  }
}
