/**
 * The local tier: encoded blocks on disk, one file per block under blocks/xx/ (src/block/layout.ts;
 * the codec workers write most of them). It is a cache of the backends for blocks that are safe in
 * a pack (evicted least recently used past its size limit, or all at once by `isg cache drop`) and
 * the only copy of blocks still waiting in the upload queue (pinned).
 *
 * This module keeps the tier's byte accounting in an LRU of its blocks, evicts, records the files
 * that fetched blocks were kept in, and fsyncs what was written. Which blocks exist and how many
 * references they have is the block store's business (src/store/blockstore.ts); eviction runs
 * under the store's lock, exclusively.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Meta } from '../meta/meta';
import type { KeptBlock } from '../block/pool';
import { blockFile, blockTmpDir } from '../block/layout';
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
}

export class LocalTier implements KeepTarget {
  readonly dir: string;
  private unsynced = new Set<string>();
  private readonly madeDirs = new Set<string>();
  /** Local-tier blocks by last use (Map order), with their encoded sizes. */
  private readonly diskLru = new Map<string, number>();
  private diskUsed = 0;
  private evicting: Promise<void> | null = null;
  /** Fetched blocks a worker is still writing into the local tier, and who waits for them. */
  private keeping = 0;
  private keepingDone: (() => void)[] = [];

  constructor(private readonly o: LocalTierOptions) {
    this.dir = o.dir;
    for (const { id, row } of o.meta.allBlocks()) if (row.local !== false) this.touch(id.toString('hex'), row.stored);
  }

  /** Records a block of `bytes` in the tier as just used (new ones are counted). */
  touch(hex: string, bytes: number): void {
    const had = this.diskLru.get(hex);
    if (had !== undefined) this.diskLru.delete(hex);
    else this.diskUsed += bytes;
    this.diskLru.set(hex, bytes);
  }

  /** Records a block as just used if the tier counts it. */
  used(hex: string): void {
    const size = this.diskLru.get(hex);
    if (size !== undefined) this.touch(hex, size);
  }

  private forget(hex: string): void {
    this.diskUsed -= this.diskLru.get(hex) ?? 0;
    this.diskLru.delete(hex);
  }

  /** Takes a block out of the accounting and deletes its file. */
  async remove(hex: string): Promise<void> {
    this.forget(hex);
    await fs.promises.rm(this.blockPath(hex), { force: true });
  }

  get localBytes(): number {
    return this.diskUsed;
  }

  blockPath(hex: string): string {
    return blockFile(this.dir, hex);
  }

  /** A block file a worker wrote (and the directory it made): fsynced by the next syncPending. */
  wrote(hex: string, madeDir?: string): void {
    this.unsynced.add(this.blockPath(hex));
    if (madeDir) this.unsynced.add(madeDir);
  }

  /** A fetched block's file is written (or failed to be); CodecPool.onKept. */
  kept(k: KeptBlock): void {
    try {
      const hex = k.id.toString('hex');
      if (k.error) {
        this.o.onError?.(`keeping block ${hex.slice(0, 16)}… locally failed: ${k.error}`);
        return;
      }
      if (!this.o.meta.getBlock(k.id)) {
        // Freed while it was being written: the file must not outlive its row.
        if (k.wrote) void fs.promises.rm(this.blockPath(hex), { force: true });
        return;
      }
      if (k.wrote) this.wrote(hex, k.madeDir);
      this.o.meta.txn(() => this.o.meta.setLocal(k.id, true));
      this.touch(hex, k.length);
      void this.maybeEvict();
    } finally {
      this.keptOne();
    }
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

  /** Resolves when every fetched block being kept is written and recorded (before closing). */
  keptAll(): Promise<void> {
    return this.keeping === 0 ? Promise.resolve() : new Promise((resolve) => this.keepingDone.push(resolve));
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
    if (limit === undefined || this.diskUsed <= limit) return Promise.resolve();
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
   * Deletes local copies of blocks that are safe in a pack, least recently used first, until the
   * tier holds at most `limit` bytes (0: everything safe, and onEvictAll). Returns the bytes freed.
   */
  async evict(limit: number): Promise<number> {
    return this.o.lock.exclusive(async () => {
      let freed = 0;
      const victims: Buffer[] = [];
      for (const [hex, bytes] of this.diskLru) {
        if (this.diskUsed - freed <= limit) break;
        const id = Buffer.from(hex, 'hex');
        if (!this.o.meta.getLoc(id)) continue; // pinned: not on the backends yet
        victims.push(id);
        freed += bytes;
      }
      if (limit === 0) this.o.onEvictAll?.();
      if (!victims.length) return 0;
      this.o.meta.txn(() => {
        for (const id of victims) this.o.meta.setLocal(id, false);
      });
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

  /** Writes a block file itself (one a worker found but did not write). */
  async writeFile(hex: string, data: Buffer): Promise<void> {
    const file = this.blockPath(hex);
    const dir = path.dirname(file);
    if (!this.madeDirs.has(dir)) {
      await fs.promises.mkdir(dir, { recursive: true });
      this.madeDirs.add(dir);
      this.unsynced.add(dir);
    }
    await fs.promises.writeFile(file, data);
    this.unsynced.add(file);
  }

  /** fsyncs every block file (and new directory) written since the last call. */
  async syncPending(): Promise<void> {
    const queue = [...this.unsynced];
    this.unsynced = new Set();
    const worker = async () => {
      for (let f = queue.pop(); f !== undefined; f = queue.pop()) {
        try {
          let fh: fs.promises.FileHandle;
          try {
            fh = await fs.promises.open(f, 'r');
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // swept meanwhile
            throw e;
          }
          try {
            await fh.sync();
          } finally {
            await fh.close();
          }
        } catch (e) {
          // Not durable: the file and everything not tried yet wait for the next sync.
          this.unsynced.add(f);
          for (const q of queue.splice(0)) this.unsynced.add(q);
          throw e;
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
  }

  /** After a crash: block files that were never renamed into place are deleted. */
  async removeTemporaries(): Promise<void> {
    await fs.promises.rm(blockTmpDir(this.dir), { recursive: true, force: true });
  }
}
