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
 * Tables (inode numbers are 64-bit keys, ordered-binary numbers: exact up to 2^53, the limit of
 * allocIno; schema 1 had them as 32-bit integer keys in `inodes` and `orphans`, and is migrated
 * to schema 2 when first opened for writing, read as it is when opened read-only):
 *   inodes   ino -> InodeRow                        (`inodes64`; `inodes` in schema 1)
 *   dirents  [parent, name] -> ino
 *   extents  [ino, offset] -> [length, block id]   the file's chunk map; gaps are holes
 *   blocks   id -> BlockRow                         refcounts of the local block store
 *   gc       id -> true                             blocks whose refcount fell to 0
 *   orphans  ino -> true                            unlinked inodes still open (`orphans64`)
 *   xattrs   [ino, name] -> value
 *   kv       name -> value                          counters and the schema version
 *   upload   seq -> block id                        durable upload queue: blocks not yet in a pack
 *   packs    pack id -> PackRow                     the pack index
 *   locs     block id -> [pack id, offset, length]  where a block lies in its pack
 */
import { open, RootDatabase, Database } from 'lmdb';
import { IsgError } from '../errors';

export const ROOT_INO = 1;
/** 2: 64-bit inode numbers (tables inodes64, orphans64). 1: 32-bit integer keys (inodes, orphans). */
export const META_SCHEMA = 2;
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

interface InodeRow {
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
  sealing: Promise<void> | null;
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

type ExtentRow = [number, Buffer, number];

function extentOf(offset: number, v: ExtentRow): Extent {
  return { offset, length: v[0], id: v[1], forced: v[2] === 1 };
}

function toRow(i: Inode): InodeRow {
  const row: InodeRow = {
    m: i.mode,
    u: i.uid,
    g: i.gid,
    n: i.nlink,
    s: i.size,
    r: i.rdev,
    a: i.atimeNs.toString(),
    t: i.mtimeNs.toString(),
    c: i.ctimeNs.toString(),
  };
  if (i.target !== undefined) row.l = i.target;
  return row;
}

function fromRow(ino: number, r: InodeRow): Inode {
  const i: Inode = {
    ino,
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
  return i;
}

export function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
}

export class Meta {
  private readonly root: RootDatabase;
  private readonly inodes: Database<InodeRow, number>;
  private readonly dirents: Database<number, [number, string]>;
  private readonly extents: Database<ExtentRow, [number, number]>;
  private readonly blocks: Database<BlockRow, Buffer>;
  private readonly gc: Database<boolean, Buffer>;
  private readonly orphans: Database<boolean, number>;
  private readonly xattrs: Database<Buffer, [number, string]>;
  private readonly kv: Database<unknown, string>;
  private readonly upload: Database<Buffer, number>;
  private readonly packs: Database<PackRow, string>;
  private readonly locs: Database<[string, number, number], Buffer>;

  /** The open epoch (null before the first write and once it has committed). */
  private epoch: Epoch | null = null;
  /** The last epoch that began to commit, until its commit has settled. */
  private ending: Promise<void> | null = null;
  private beforeCommit: BeforeCommit | null = null;

  constructor(
    dir: string,
    private readonly readOnly = false,
  ) {
    // safeRestore: after a crash, start from the last commit known flushed, whatever the boot id.
    this.root = open({ path: dir, maxDbs: 16, readOnly, safeRestore: true } as Parameters<typeof open>[0]);
    this.kv = this.root.openDB({ name: 'kv' });
    let legacy = this.kv.get('schema') === 1;
    if (legacy && !readOnly) legacy = !this.migrateInodeKeys();
    this.inodes = legacy ? this.root.openDB({ name: 'inodes', keyEncoding: 'uint32' }) : this.openInoTable('inodes64');
    this.dirents = this.root.openDB({ name: 'dirents', keyEncoding: 'ordered-binary' });
    this.extents = this.root.openDB({ name: 'extents', keyEncoding: 'ordered-binary' });
    this.blocks = this.root.openDB({ name: 'blocks', keyEncoding: 'binary' });
    this.gc = this.root.openDB({ name: 'gc', keyEncoding: 'binary' });
    this.orphans = legacy ? this.root.openDB({ name: 'orphans', keyEncoding: 'uint32' }) : this.openInoTable('orphans64');
    this.xattrs = this.root.openDB({ name: 'xattrs', keyEncoding: 'ordered-binary', encoding: 'binary' });
    this.upload = this.root.openDB({ name: 'upload', keyEncoding: 'uint32' });
    this.packs = this.root.openDB({ name: 'packs' });
    this.locs = this.root.openDB({ name: 'locs', keyEncoding: 'binary' });
  }

  private openInoTable<V>(name: string): Database<V, number> {
    return this.root.openDB({ name, keyEncoding: 'ordered-binary' });
  }

  /**
   * Schema 1 -> 2: copies the 32-bit keyed inodes and orphans into their 64-bit keyed tables and
   * drops the old ones, in one transaction (a crash leaves schema 1 as it was). True when done.
   */
  private migrateInodeKeys(): boolean {
    const oldInodes = this.root.openDB<InodeRow, number>({ name: 'inodes', keyEncoding: 'uint32' });
    const oldOrphans = this.root.openDB<boolean, number>({ name: 'orphans', keyEncoding: 'uint32' });
    const inodes = this.openInoTable<InodeRow>('inodes64');
    const orphans = this.openInoTable<boolean>('orphans64');
    this.txn(() => {
      for (const { key, value } of oldInodes.getRange()) inodes.putSync(key, value);
      for (const { key, value } of oldOrphans.getRange()) orphans.putSync(key, value);
      oldInodes.dropSync();
      oldOrphans.dropSync();
      this.kv.putSync('schema', META_SCHEMA);
    });
    return true;
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
    this.epoch = { end, committed, timer, sealing: null };
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
    if (!e.sealing) {
      clearTimeout(e.timer);
      e.sealing = this.seal(e);
    }
    return e.sealing;
  }

  private async seal(e: Epoch): Promise<void> {
    try {
      while (this.beforeCommit?.pending()) await this.beforeCommit.run();
    } catch (err) {
      e.sealing = null;
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

  async close(): Promise<void> {
    await this.sync();
    await this.root.close();
  }

  // inodes
  getInode(ino: number): Inode | undefined {
    const r = this.inodes.get(ino);
    return r ? fromRow(ino, r) : undefined;
  }
  putInode(i: Inode): void {
    this.inodes.putSync(i.ino, toRow(i));
  }
  deleteInode(ino: number): void {
    this.inodes.removeSync(ino);
  }
  allocIno(): number {
    const ino = this.kv.get('nextIno') as number;
    if (ino > MAX_INO) throw new IsgError('no-space', `inode numbers are exhausted (the largest is ${MAX_INO})`);
    this.kv.putSync('nextIno', ino + 1);
    return ino;
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
    for (const { key, value } of this.inodes.getRange()) yield fromRow(key, value);
  }

  // directory entries
  lookup(parent: number, name: string): number | undefined {
    return this.dirents.get([parent, name]);
  }
  link(parent: number, name: string, ino: number): void {
    this.dirents.putSync([parent, name], ino);
  }
  unlinkEntry(parent: number, name: string): void {
    this.dirents.removeSync([parent, name]);
  }
  *entries(parent: number): Iterable<{ name: string; ino: number }> {
    for (const { key, value } of this.dirents.getRange({ start: [parent], end: [parent + 1] })) {
      yield { name: key[1], ino: value };
    }
  }
  hasEntries(parent: number): boolean {
    for (const _ of this.dirents.getKeys({ start: [parent], end: [parent + 1], limit: 1 })) return true;
    return false;
  }

  // extents (chunk map)
  extentsOf(ino: number, from = 0, to = Number.MAX_SAFE_INTEGER): Extent[] {
    // The extent containing `from` starts before it: step back one entry.
    const out: Extent[] = [];
    for (const { key, value } of this.extents.getRange({ start: [ino, from], end: [ino], reverse: true, limit: 1 })) {
      if (key[1] + value[0] > from) out.push(extentOf(key[1], value));
    }
    for (const { key, value } of this.extents.getRange({ start: [ino, from], end: [ino, to] })) {
      if (out.length && out[0].offset === key[1]) continue;
      out.push(extentOf(key[1], value));
    }
    return out;
  }
  putExtent(ino: number, e: Extent): void {
    this.extents.putSync([ino, e.offset], [e.length, e.id, e.forced ? 1 : 0]);
  }
  deleteExtent(ino: number, offset: number): void {
    this.extents.removeSync([ino, offset]);
  }
  *allExtents(): Iterable<{ ino: number; extent: Extent }> {
    for (const { key, value } of this.extents.getRange()) yield { ino: key[0], extent: extentOf(key[1], value) };
  }

  // blocks
  getBlock(id: Buffer): BlockRow | undefined {
    return this.blocks.get(id);
  }
  /** +1 reference; returns false when the block is unknown (its data must be stored first). */
  ref(id: Buffer): boolean {
    const b = this.blocks.get(id);
    if (!b) return false;
    if (b.refs === 0) this.gc.removeSync(id);
    this.blocks.putSync(id, { ...b, refs: b.refs + 1 });
    return true;
  }
  /** A new block, present in the local tier; it joins the upload queue. */
  addBlock(id: Buffer, plain: number, stored: number): void {
    this.blocks.putSync(id, { refs: 1, plain, stored, local: true });
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
    this.blocks.putSync(id, { ...b, refs: b.refs - 1 });
    if (b.refs - 1 === 0) this.gc.putSync(id, true);
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

  // xattrs
  getXattr(ino: number, name: string): Buffer | undefined {
    return this.xattrs.get([ino, name]);
  }
  setXattr(ino: number, name: string, value: Buffer): void {
    this.xattrs.putSync([ino, name], value);
  }
  removeXattr(ino: number, name: string): void {
    this.xattrs.removeSync([ino, name]);
  }
  xattrNames(ino: number): string[] {
    return [...this.xattrs.getKeys({ start: [ino], end: [ino + 1] })].map((k) => k[1]);
  }
  /** Whether any inode has an xattr of this name (a scan of every xattr: they are few). */
  anyXattrNamed(name: string): boolean {
    for (const k of this.xattrs.getKeys()) if (k[1] === name) return true;
    return false;
  }
  removeAllXattrs(ino: number): void {
    for (const name of this.xattrNames(ino)) this.removeXattr(ino, name);
  }
}
