/**
 * BlockStore: deduplicated, refcounted blocks. Encoded (compressed + encrypted) blocks live in the
 * local tier on disk, one file per block under cache/blocks/xx/; plaintext of hot blocks lives in a
 * memory LRU bounded in bytes. Refcounts live in LMDB (src/meta) and change in the same
 * transaction as the chunk maps that hold the references.
 *
 * The local tier is a cache of the backends for blocks that are safe in a pack (evicted LRU past
 * its size limit, or all at once by `isg cache drop`) and the only copy of blocks still waiting
 * in the upload queue (pinned). A block missing locally is read from its pack's shards and kept.
 *
 * Freeing is deferred: a block whose count falls to 0 is only listed for the sweeper, which drops
 * the row and the file under an exclusive lock. Writers hold the lock shared from "is this block
 * new?" until their transaction commits, so a sweep can never delete a file that a commit is about
 * to reference.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LRUCache } from 'lru-cache';
import { Meta } from '../meta/meta';
import { CodecPool, EncodedBlock, KeptBlock } from '../block/pool';
import { RwLock } from './rwlock';
import { blockFile, blockTmpDir } from '../block/layout';
import { ShardReader } from '../pack/fetch';

export class BlockMissingError extends Error {
  readonly code = 'EIO';
  constructor(readonly idHex: string) {
    super(`block ${idHex.slice(0, 16)}… is missing from the local tier`);
  }
}

/** Plaintext bytes [start, end) of a shared buffer: one chunk to store as a block. */
export interface PlainChunk {
  sab: SharedArrayBuffer;
  start: number;
  end: number;
  /** Its encoding, if already started with `encode`. */
  encoding?: EarlyEncoding;
}

class RetryCommit extends Error {}

/** An encoding started ahead of `ingest`, and the sweep generation it started in. */
export interface EarlyEncoding {
  result: Promise<EncodedBlock>;
  sweeps: number;
}

export interface BlockStoreOptions {
  blocksDir: string;
  meta: Meta;
  pool: CodecPool;
  memoryBytes: number;
  /** Size limit of the local tier; blocks not yet safe on the backends may exceed it. */
  diskBytes?: number;
  /** Where blocks that are not local are read from. */
  remote?: ShardReader;
  /** Reports failures of background work (keeping fetched blocks). */
  onError?: (message: string) => void;
}

export class BlockStore {
  private readonly lru: LRUCache<string, Buffer>;
  private readonly loading = new Map<string, Promise<Buffer>>();
  private readonly lock = new RwLock();
  private unsynced = new Set<string>();
  private readonly madeDirs = new Set<string>();
  /** Local-tier blocks by last use (Map order), with their encoded sizes. */
  private readonly diskLru = new Map<string, number>();
  private diskUsed = 0;
  private evicting: Promise<void> | null = null;
  /** Sweeps that deleted something, counted when done (see `encode`). */
  private sweeps = 0;
  /** Fetched blocks a worker is still writing into the local tier, and who waits for them. */
  private keeping = 0;
  private keepingDone: (() => void)[] = [];

  constructor(private readonly o: BlockStoreOptions) {
    this.lru = new LRUCache<string, Buffer>({
      maxSize: Math.max(1, o.memoryBytes),
      sizeCalculation: (b) => Math.max(1, b.length),
    });
    for (const { id, row } of o.meta.allBlocks()) if (row.local !== false) this.touchDisk(id.toString('hex'), row.stored);
    o.pool.onKept = (k) => this.kept(k);
  }

  private touchDisk(hex: string, bytes: number): void {
    const had = this.diskLru.get(hex);
    if (had !== undefined) this.diskLru.delete(hex);
    else this.diskUsed += bytes;
    this.diskLru.set(hex, bytes);
  }

  get localBytes(): number {
    return this.diskUsed;
  }

  blockPath(hex: string): string {
    return blockFile(this.o.blocksDir, hex);
  }

  /** Plaintext of a block if it is in the memory LRU. */
  cachedPlain(id: Buffer): Buffer | undefined {
    return this.lru.get(id.toString('hex'));
  }

  /** Plaintext of a block: memory LRU, else the local tier (decrypted off-thread). */
  readPlain(id: Buffer): Promise<Buffer> {
    const hex = id.toString('hex');
    const hit = this.lru.get(hex);
    if (hit) return Promise.resolve(hit);
    const inFlight = this.loading.get(hex);
    // Joining a load started earlier (a read-ahead, say): if that one fails, its failure may be
    // stale (a backend that was down then), so this reader tries once more on its own.
    if (inFlight) return inFlight.catch(() => this.readPlainFresh(id, hex));
    return this.readPlainFresh(id, hex);
  }

  private readPlainFresh(id: Buffer, hex: string): Promise<Buffer> {
    const hit = this.lru.get(hex);
    if (hit) return Promise.resolve(hit);
    const p = this.load(id, hex).finally(() => { if (this.loading.get(hex) === p) this.loading.delete(hex); });
    this.loading.set(hex, p);
    return p;
  }

  private async load(id: Buffer, hex: string): Promise<Buffer> {
    // The file is read and decoded off this thread (CodecPool.decodeFile). Blocks known to be
    // evicted skip the attempt.
    const local = this.o.meta.getBlock(id)?.local === false ? null : await this.loadLocal(id, hex);
    if (local) {
      this.lru.set(hex, local);
      const size = this.diskLru.get(hex);
      if (size !== undefined) this.touchDisk(hex, size);
      return local;
    }
    const plain = await this.fetchPlain(id, hex, true);
    this.lru.set(hex, plain);
    return plain;
  }

  /**
   * Plaintext of a block from its pack's shards. Read straight from the data shard(s) first; when
   * that does not decode, once more with every shard range checked, which rebuilds around a
   * damaged shard. With `keep`, a block from a slower tier is kept in the local tier: the worker
   * writes the file after answering, and `kept` records it. One from hot backends is not: reading
   * it there again costs what reading a local copy would, and the copy would cost a write and tier space.
   */
  private async fetchPlain(id: Buffer, hex: string, keep: boolean): Promise<Buffer> {
    const loc = this.o.meta.getLoc(id);
    const pack = loc && this.o.meta.getPack(loc.pack);
    if (!loc || !pack || !this.o.remote) throw new BlockMissingError(hex);
    let checked = false;
    // A block in shard files of local backends is read (pieces on lost shards rebuilt) and
    // decoded in one step off this thread. When that fails, the backend read below reports the
    // failure (a damaged block goes straight to the checked read that finds the bad shard).
    const parts = this.o.remote.localParts(loc, pack, { rebuild: this.o.pool.nativeDecode });
    if (parts) {
      try {
        return await this.o.pool.decodeFile(id, parts);
      } catch (e) {
        checked = (e as { code?: string }).code === 'EIO'; // damage, as either decoder reports it
      }
    }
    for (; ; checked = true) {
      const fetched = await this.o.remote.readBlock(loc, pack, { checked });
      const keepIn = keep && fetched.slow ? this.o.blocksDir : undefined;
      if (keepIn) this.keeping++;
      try {
        return await this.o.pool.decode(id, fetched.encoded, { keepIn, shared: fetched.shared });
      } catch (e) {
        if (keepIn) this.keptOne(); // nothing is written for a block that failed
        if (fetched.checked) throw e;
      }
    }
  }

  /**
   * The block from its local file; null when there is none, or when the file is damaged and the
   * block is safe in a pack: then the file is dropped and the backends serve it.
   */
  private async loadLocal(id: Buffer, hex: string): Promise<Buffer | null> {
    try {
      return await this.o.pool.decodeFile(id, [{ file: this.blockPath(hex) }]);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      if (!this.o.meta.getLoc(id)) throw e;
      this.o.onError?.(`local copy of block ${hex.slice(0, 16)}… is unreadable (${(e as Error).message}); reading it from the backends`);
      this.o.meta.txn(() => this.o.meta.setLocal(id, false));
      this.diskUsed -= this.diskLru.get(hex) ?? 0;
      this.diskLru.delete(hex);
      await fs.promises.rm(this.blockPath(hex), { force: true });
      return null;
    }
  }

  /** A fetched block's file is written (or failed to be). */
  private kept(k: KeptBlock): void {
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
      if (k.wrote) this.unsynced.add(this.blockPath(hex));
      if (k.madeDir) this.unsynced.add(k.madeDir);
      this.o.meta.txn(() => this.o.meta.setLocal(k.id, true));
      this.touchDisk(hex, k.length);
      void this.maybeEvict();
    } finally {
      this.keptOne();
    }
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
    this.evicting = this.evict(limit).then(() => undefined, () => undefined).finally(() => { this.evicting = null; });
    return this.evicting;
  }

  /**
   * Deletes local copies of blocks that are safe in a pack, least recently used first, until the
   * tier holds at most `limit` bytes (0: everything safe). With 0 it also empties the memory LRU
   * and the kept shard rebuilds, so that reads afterwards are truly cold. Returns the bytes freed.
   */
  async evict(limit: number): Promise<number> {
    return this.lock.exclusive(async () => {
      let freed = 0;
      const victims: Buffer[] = [];
      for (const [hex, bytes] of this.diskLru) {
        if (this.diskUsed - freed <= limit) break;
        const id = Buffer.from(hex, 'hex');
        if (!this.o.meta.getLoc(id)) continue; // pinned: not on the backends yet
        victims.push(id);
        freed += bytes;
      }
      if (limit === 0) {
        this.lru.clear();
        this.o.remote?.forgetRebuilt();
      }
      if (!victims.length) return 0;
      this.o.meta.txn(() => { for (const id of victims) this.o.meta.setLocal(id, false); });
      await Promise.all(victims.map(async (id) => {
        const hex = id.toString('hex');
        await fs.promises.rm(this.blockPath(hex), { force: true });
        this.diskUsed -= this.diskLru.get(hex) ?? 0;
        this.diskLru.delete(hex);
      }));
      return freed;
    });
  }

  /** Warms the memory LRU; failures are left for the real read to report. */
  prefetch(ids: Buffer[]): void {
    for (const id of ids) this.readPlain(id).catch(() => undefined);
  }

  /** Reads that must not race a sweep (they hold references that may drop to 0 meanwhile). */
  guard<T>(fn: () => Promise<T>): Promise<T> {
    return this.lock.shared(fn);
  }

  /**
   * Starts encoding a chunk ahead of `ingest`, which takes it in `encoding`. It runs outside the
   * lock, so a sweep may delete a block file it wrote or found: `ingest` encodes again, under the
   * lock, whatever started before the last sweep ended.
   */
  encode(c: PlainChunk): EarlyEncoding {
    const result = this.o.pool.encode(c.sab, c.start, c.end, this.o.blocksDir);
    result.catch(() => undefined); // reported where it is awaited, if it is
    return { result, sweeps: this.sweeps };
  }

  /**
   * Encodes `chunks` (plaintext ranges of shared buffers) in the codec workers, which also write
   * the block files that are not in the local tier yet (deduplication: a known block is neither
   * written nor stored twice), then runs `commit` in one metadata transaction. Inside it,
   * `admit(i)` takes a reference on chunk i's block, adding the block row when it is new;
   * `ids[i]` is its id. The shared lock is held from the first existence check to the commit.
   */
  async ingest(chunks: PlainChunk[], commit: (ids: Buffer[], admit: (i: number) => void) => void): Promise<void> {
    await this.lock.shared(async () => {
      const results = await Promise.all(chunks.map((c) =>
        (c.encoding?.sweeps === this.sweeps ? c.encoding.result : this.o.pool.encode(c.sab, c.start, c.end, this.o.blocksDir))));
      const written = new Set<string>();
      for (const r of results) {
        if (!r.wrote) continue;
        const hex = r.id.toString('hex');
        written.add(hex);
        this.unsynced.add(this.blockPath(hex));
        if (r.madeDir) this.unsynced.add(r.madeDir);
      }
      const ids = results.map((r) => r.id);
      for (;;) {
        const missing: number[] = [];
        try {
          this.o.meta.txn(() => {
            commit(ids, (i) => {
              const { id, length } = results[i];
              const hex = id.toString('hex');
              if (this.o.meta.ref(id)) {
                // An evicted block written again by this flush is local once more.
                if (written.has(hex) && this.o.meta.getBlock(id)?.local === false) {
                  this.o.meta.setLocal(id, true);
                  this.touchDisk(hex, length);
                }
                return;
              }
              if (!written.has(hex)) {
                missing.push(i);
                throw new RetryCommit();
              }
              this.o.meta.addBlock(id, chunks[i].end - chunks[i].start, length);
              this.touchDisk(hex, length);
            });
          });
          return;
        } catch (e) {
          if (!(e instanceof RetryCommit)) throw e;
          // A block file that existed without a row (left by a crash): store it for real.
          for (const i of missing) {
            const hex = results[i].id.toString('hex');
            await this.writeFile(hex, results[i].encoded!); // not written by the worker: it sent the bytes
            written.add(hex);
          }
        }
      }
    });
    void this.maybeEvict();
  }

  private async writeFile(hex: string, data: Buffer): Promise<void> {
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
          try { await fh.sync(); } finally { await fh.close(); }
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
    await fs.promises.rm(blockTmpDir(this.o.blocksDir), { recursive: true, force: true });
  }

  /** Deletes blocks whose refcount is 0. Returns how many were freed. */
  async sweep(): Promise<number> {
    return this.lock.exclusive(async () => {
      const candidates = this.o.meta.gcCandidates();
      if (!candidates.length) return 0;
      const dropped: Buffer[] = [];
      this.o.meta.txn(() => {
        for (const id of candidates) {
          const row = this.o.meta.getBlock(id);
          if (row && row.refs > 0) continue;
          this.o.meta.dropBlock(id);
          dropped.push(id);
        }
      });
      await Promise.all(dropped.map(async (id) => {
        const hex = id.toString('hex');
        this.lru.delete(hex);
        this.diskUsed -= this.diskLru.get(hex) ?? 0;
        this.diskLru.delete(hex);
        await fs.promises.rm(this.blockPath(hex), { force: true });
      }));
      this.sweeps++;
      return dropped.length;
    });
  }

  /** Reads and verifies one block, from the local tier or else from its pack (for `isg check`). */
  async verify(id: Buffer): Promise<void> {
    const encoded = await this.readLocalEncoded(id);
    if (encoded) await this.o.pool.decode(id, encoded);
    else await this.fetchPlain(id, id.toString('hex'), false);
  }
}
