/**
 * The local tier: encoded blocks on disk, one file per block under blocks/xx/ (src/block/layout.ts;
 * the codec workers write most of them). It is a cache of the backends for blocks that are safe in
 * a pack (evicted least recently used past its size limit, or all at once by `isg cache drop`) and
 * the only copy of blocks still waiting in the upload queue (pinned).
 *
 * This module keeps the tier's byte accounting in an LRU of its blocks, evicts, records the files
 * that fetched blocks were kept in, and makes written files durable before the epoch that names
 * them commits (it is the metadata's BeforeCommit). Which blocks exist and how many references
 * they have is the block store's business (src/store/blockstore.ts); eviction runs under the
 * store's lock, exclusively.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { BeforeCommit, Meta } from '../meta/meta';
import type { KeptBlock } from '../block/pool';
import { blockFile, blockTmpDir } from '../block/layout';
import { fsyncPath } from '../util/fsync';
import { RwLock } from './rwlock';
import type { KeepTarget } from './remote';

export interface LocalTierOptions {
  dir: string;
  meta: Meta;
  /** Size limit; blocks not yet safe on the backends may exceed it. */
  diskBytes?: number;
  /** The block store's lock: eviction holds it exclusively. */
  lock: RwLock;
  /** Called by an eviction down to 0 bytes (so that reads afterwards are truly cold). */
  onEvictAll?: () => void;
  /** Reports failures of background work (keeping fetched blocks). */
  onError?: (message: string) => void;
  /** How a file (fdatasync) or a directory (fsync) is made durable; tests inject delays and failures. */
  fsync?: (file: string, kind: 'file' | 'dir') => Promise<void>;
}

export class LocalTier implements KeepTarget, BeforeCommit {
  readonly dir: string;
  private readonly madeDirs = new Set<string>();
  /** Block files written, and directories changed, that the open epoch must find durable. */
  private readonly unsyncedFiles = new Set<string>();
  private readonly unsyncedDirs = new Set<string>();
  /**
   * Local-tier blocks by last use (Map order), with their encoded sizes, and their total: built
   * from the metadata when first needed, not at open (a scan of every block row, 0.3 s for 15k
   * blocks: a read-only session, `isg restore` say, never needs it).
   */
  private accounting: { lru: Map<string, number>; used: number } | null = null;
  private get acct(): { lru: Map<string, number>; used: number } {
    if (!this.accounting) {
      const a = { lru: new Map<string, number>(), used: 0 };
      for (const { id, row } of this.o.meta.allBlocks()) {
        if (row.local === false) continue;
        const hex = id.toString('hex');
        if (!a.lru.has(hex)) a.used += row.stored;
        a.lru.set(hex, row.stored);
      }
      this.accounting = a;
    }
    return this.accounting;
  }
  private evicting: Promise<void> | null = null;
  /** Fetched blocks a worker is still writing into the local tier, and who waits for them. */
  private keeping = 0;
  private keepingDone: (() => void)[] = [];

  constructor(private readonly o: LocalTierOptions) {
    this.dir = o.dir;
    o.meta.setBeforeCommit(this);
  }

  /** Records a block of `bytes` in the tier as just used (new ones are counted). */
  touch(hex: string, bytes: number): void {
    const a = this.acct;
    const had = a.lru.get(hex);
    if (had !== undefined) a.lru.delete(hex);
    else a.used += bytes;
    a.lru.set(hex, bytes);
  }

  /** Records a block as just used if the tier counts it (nothing before the accounting is built). */
  used(hex: string): void {
    const size = this.accounting?.lru.get(hex);
    if (size !== undefined) this.touch(hex, size);
  }

  private forget(hex: string): void {
    const a = this.acct;
    a.used -= a.lru.get(hex) ?? 0;
    a.lru.delete(hex);
  }

  /** Takes a block out of the accounting and deletes its file. */
  async remove(hex: string): Promise<void> {
    this.forget(hex);
    await fs.promises.rm(this.blockPath(hex), { force: true });
  }

  get localBytes(): number {
    return this.acct.used;
  }

  blockPath(hex: string): string {
    return blockFile(this.dir, hex);
  }

  /** A fetched block's file is written (or failed to be); CodecPool.onKept. */
  kept(k: KeptBlock): void {
    void this.keep(k).finally(() => this.keptOne());
  }

  /**
   * Records a kept block as local, its file (and the directory it was renamed into) to be made
   * durable before that commit: after a power loss a row saying `local` must find the whole file
   * (isg check reads it).
   */
  private async keep(k: KeptBlock): Promise<void> {
    const hex = k.id.toString('hex');
    if (k.error) {
      this.o.onError?.(`keeping block ${hex.slice(0, 16)}… locally failed: ${k.error}`);
      return;
    }
    if (!this.o.meta.getBlock(k.id)) {
      // Freed while it was being written: the file must not outlive its row.
      if (k.wrote) await fs.promises.rm(this.blockPath(hex), { force: true });
      return;
    }
    if (k.wrote) this.ordered([hex], k.madeDir ? [k.madeDir] : []);
    this.o.meta.txn(() => this.o.meta.setLocal(k.id, true));
    this.touch(hex, k.length);
    void this.maybeEvict();
  }

  begin(): void {
    this.keeping++;
  }

  abandon(): void {
    this.keptOne(); // nothing is written for a block that failed
  }

  private keptOne(): void {
    if (--this.keeping > 0) return;
    for (const wake of this.keepingDone.splice(0)) wake();
  }

  /** Resolves when every fetched block being kept is written and recorded, and a running eviction is done (before closing). */
  keptAll(): Promise<void> {
    const kept = this.keeping === 0 ? Promise.resolve() : new Promise<void>((resolve) => this.keepingDone.push(resolve));
    return kept.then(() => this.evicting ?? undefined); // an eviction writes the metadata too
  }

  /** The encoded bytes of a block in the local tier, or null when it is not there. */
  async readLocalEncoded(id: Buffer): Promise<Buffer | null> {
    try {
      return await fs.promises.readFile(this.blockPath(id.toString('hex')));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  /** Starts evicting safe blocks when the local tier is over its limit; resolves when done. */
  maybeEvict(): Promise<void> {
    const limit = this.o.diskBytes;
    if (this.evicting) return this.evicting;
    if (limit === undefined || this.acct.used <= limit) return Promise.resolve();
    this.evicting = this.evict(limit)
      .then(
        () => undefined,
        () => undefined,
      )
      .finally(() => {
        this.evicting = null;
      });
    return this.evicting;
  }

  /**
   * Whether the block's local copy may go: it lies in a pack whose k + m shards are ALL stored (a
   * pack with only k has no redundancy left, so its blocks stay pinned until the repairer is done).
   */
  private evictable(id: Buffer, packs: Map<string, boolean>): boolean {
    const loc = this.o.meta.getLoc(id);
    if (!loc) return false; // not on the backends yet
    let whole = packs.get(loc.pack);
    if (whole === undefined) {
      const p = this.o.meta.getPack(loc.pack);
      whole = p !== undefined && new Set(p.stored).size >= p.k + p.m;
      packs.set(loc.pack, whole);
    }
    return whole;
  }

  /**
   * Deletes local copies of blocks that are safe in a pack, least recently used first, until the
   * tier holds at most `limit` bytes (0: everything safe, and onEvictAll). Returns the bytes freed.
   * The files go only once the metadata that makes that safe (the pack's commit, and local=false)
   * is durable: a power loss must not leave a block whose only copy was deleted.
   */
  async evict(limit: number): Promise<number> {
    return this.o.lock.exclusive(async () => {
      let freed = 0;
      const victims: Buffer[] = [];
      const packs = new Map<string, boolean>();
      for (const [hex, bytes] of this.acct.lru) {
        if (this.acct.used - freed <= limit) break;
        const id = Buffer.from(hex, 'hex');
        if (!this.evictable(id, packs)) continue; // pinned
        victims.push(id);
        freed += bytes;
      }
      if (limit === 0) this.o.onEvictAll?.();
      if (!victims.length) return 0;
      this.o.meta.txn(() => {
        for (const id of victims) this.o.meta.setLocal(id, false);
      });
      await this.o.meta.sync();
      await Promise.all(
        victims.map(async (id) => {
          const hex = id.toString('hex');
          await fs.promises.rm(this.blockPath(hex), { force: true });
          this.forget(hex);
        }),
      );
      return freed;
    });
  }

  /**
   * Writes a block file itself (one a worker found but did not write); returns the directory it
   * had to make, if any. The caller registers it (ordered) with the commit that names it.
   */
  async writeFile(hex: string, data: Buffer): Promise<string | undefined> {
    const file = this.blockPath(hex);
    const dir = path.dirname(file);
    let made: string | undefined;
    if (!this.madeDirs.has(dir)) {
      made = (await fs.promises.mkdir(dir, { recursive: true })) !== undefined ? dir : undefined;
      this.madeDirs.add(dir);
    }
    // Under a temporary name, renamed into place: a flush that wrote this block and is making it
    // durable must never see it cut short.
    const tmpDir = blockTmpDir(this.dir);
    await fs.promises.mkdir(tmpDir, { recursive: true });
    const tmp = path.join(tmpDir, `${hex}.${randomBytes(6).toString('hex')}`);
    await fs.promises.writeFile(tmp, data, { flag: 'wx' });
    await fs.promises.rename(tmp, file);
    return made;
  }

  /**
   * Makes block files durable, then the directories they were renamed into (and the parents of
   * directories made for them), 8 at a time. Files that are gone (swept meanwhile) are skipped.
   * Throws the first failure after every path was tried.
   */
  private async fsyncAll(files: string[], dirs: string[]): Promise<void> {
    const fsync = this.o.fsync ?? fsyncPath;
    let first: unknown = null;
    const pass = async (paths: string[], kind: 'file' | 'dir') => {
      const worker = async () => {
        for (let f = paths.pop(); f !== undefined; f = paths.pop()) {
          try {
            await fsync(f, kind);
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
            first ??= e;
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(8, paths.length) }, worker));
    };
    await pass(files, 'file');
    await pass(dirs, 'dir');
    if (first) throw first as Error;
  }

  /**
   * Block files a flush (or a kept fetch) wrote, with the directories they were renamed into,
   * to be made durable before the epoch whose transaction names them commits: call it in the
   * same tick as that transaction. LMDB makes the epoch's rows durable only when it commits, so
   * a row never reaches the disk before its file, and one pass per epoch (Meta.sync) serves
   * every flush in it.
   */
  ordered(hexes: Iterable<string>, madeDirs: Iterable<string> = []): void {
    for (const h of hexes) {
      const file = this.blockPath(h);
      this.unsyncedFiles.add(file);
      this.unsyncedDirs.add(path.dirname(file));
    }
    for (const d of madeDirs) this.unsyncedDirs.add(path.dirname(d));
  }

  /** BeforeCommit: whether written files wait to be made durable. */
  pending(): boolean {
    return this.unsyncedFiles.size > 0 || this.unsyncedDirs.size > 0;
  }

  /**
   * BeforeCommit: makes the files and directories registered so far durable. On a failure they
   * all stay registered, for the next pass (the epoch does not commit meanwhile).
   */
  async run(): Promise<void> {
    const files = [...this.unsyncedFiles];
    const dirs = [...this.unsyncedDirs];
    this.unsyncedFiles.clear();
    this.unsyncedDirs.clear();
    try {
      await this.fsyncAll([...files], [...dirs]);
    } catch (e) {
      for (const f of files) this.unsyncedFiles.add(f);
      for (const d of dirs) this.unsyncedDirs.add(d);
      throw e;
    }
  }

  /** After a crash: block files that were never renamed into place are deleted. */
  async removeTemporaries(): Promise<void> {
    await fs.promises.rm(blockTmpDir(this.dir), { recursive: true, force: true });
  }

  /**
   * At a writable open, before anything writes: block files the metadata does not count as local
   * are deleted. A crash leaves them when it comes between a block file's write and the commit
   * that adds its row (the flush never committed), or between the durable commit that dropped or
   * evicted a block and the deletion of its file. Costs a readdir of each of the 256 directories
   * and one LMDB lookup per file. Returns how many were deleted.
   */
  async removeStrays(): Promise<number> {
    let removed = 0;
    const tmp = path.basename(blockTmpDir(this.dir));
    let subdirs: string[];
    try {
      subdirs = await fs.promises.readdir(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw e;
    }
    for (const sub of subdirs) {
      if (sub === tmp || sub.length !== 2) continue;
      let names: string[];
      try {
        names = await fs.promises.readdir(path.join(this.dir, sub));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') continue;
        throw e;
      }
      for (const name of names) {
        if (!/^[0-9a-f]+$/.test(name) || name.length % 2) continue;
        const row = this.o.meta.getBlock(Buffer.from(name, 'hex'));
        if (row && row.local !== false) continue;
        await fs.promises.rm(path.join(this.dir, sub, name), { force: true });
        removed++;
      }
    }
    return removed;
  }
}
