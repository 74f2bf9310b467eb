/**
 * BlockStore: deduplicated, refcounted blocks. Encoded (compressed + encrypted) blocks live in the
 * local tier on disk, one file per block under cache/blocks/xx/ (src/store/localtier.ts); plaintext
 * of hot blocks lives in a memory LRU bounded in bytes. Refcounts live in LMDB (src/meta) and change
 * in the same transaction as the chunk maps that hold the references.
 *
 * The local tier is a cache of the backends for blocks that are safe in a pack and the only copy of
 * blocks still waiting in the upload queue. A block missing locally is read from the backends
 * (`remote`, src/store/remote.ts, implemented in src/pack/remote.ts) and kept when that was slow.
 *
 * Freeing is deferred: a block whose count falls to 0 is only listed for the sweeper, which drops
 * the row and the file under an exclusive lock. Writers hold the lock shared from "is this block
 * new?" until their transaction commits, so a sweep can never delete a file that a commit is about
 * to reference.
 */
import { LRUCache } from 'lru-cache';
import { Meta } from '../meta/meta';
import { IsgError, registerErrorClass } from '../errors';
import { CodecPool, EncodedBlock, FilePart } from '../block/pool';
import type { ObjectKind } from '../block/codec';
import { RwLock } from './rwlock';
import { LocalTier, LocalTierOptions } from './localtier';
import type { RemoteBlocks } from './remote';

/** A block neither in the local tier nor in any pack (kind 'missing'). */
export class BlockMissingError extends IsgError {
  constructor(readonly idHex: string) {
    super('missing', `block ${idHex.slice(0, 16)}… is missing from the local tier`);
  }
}
registerErrorClass(BlockMissingError);

/** Plaintext bytes [start, end) of a shared buffer: one chunk to store as a block. */
export interface PlainChunk {
  sab: SharedArrayBuffer;
  start: number;
  end: number;
  /** Its encoding, if already started with `encode`. */
  encoding?: EarlyEncoding;
  /** The object kind its block header names (data when absent). */
  kind?: ObjectKind;
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
  remote?: RemoteBlocks;
  /** Reports failures of background work (keeping fetched blocks). */
  onError?: (message: string) => void;
  /** A read-only mount: blocks fetched from the backends stay in memory, nothing is written. */
  readOnly?: boolean;
  /** How the local tier makes a file or directory durable (tests inject delays and failures). */
  fsync?: LocalTierOptions['fsync'];
}

export class BlockStore {
  private readonly lru: LRUCache<string, Buffer>;
  private readonly loading = new Map<string, Promise<Buffer>>();
  private readonly lock = new RwLock();
  private readonly tier: LocalTier;
  /** Sweeps that deleted something, counted when done (see `encode`). */
  private sweeps = 0;

  constructor(private readonly o: BlockStoreOptions) {
    this.lru = new LRUCache<string, Buffer>({
      maxSize: Math.max(1, o.memoryBytes),
      sizeCalculation: (b) => Math.max(1, b.length),
    });
    this.tier = new LocalTier({
      dir: o.blocksDir,
      meta: o.meta,
      diskBytes: o.diskBytes,
      lock: this.lock,
      onError: o.onError,
      fsync: o.fsync,
      // Emptied with the memory LRU and the kept shard rebuilds, so that reads afterwards are truly cold.
      onEvictAll: () => {
        this.lru.clear();
        this.o.remote?.forgetRebuilt();
      },
    });
    o.pool.onKept = (k) => this.tier.kept(k);
  }

  get localBytes(): number {
    return this.tier.localBytes;
  }

  blockPath(hex: string): string {
    return this.tier.blockPath(hex);
  }

  /** Plaintext of a block if it is in the memory LRU. */
  cachedPlain(id: Buffer): Buffer | undefined {
    return this.lru.get(id.toString('hex'));
  }

  /**
   * Where a block's encoded bytes lie in files: its local-tier file, else ranges of its pack's
   * shard files on local backends (RemoteBlocks.localParts). For a caller that decodes them
   * itself (CodecPool.writeFiles) and uses readPlain when that fails (a local file gone, damage);
   * null when readPlain does better (in memory or loading, or not in local files).
   */
  localParts(id: Buffer): FilePart[] | null {
    const hex = id.toString('hex');
    if (this.lru.has(hex) || this.loading.has(hex)) return null;
    if (this.o.meta.getBlock(id)?.local !== false) return [{ file: this.blockPath(hex) }];
    return this.o.remote?.localParts?.(id) ?? null;
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
    const p = this.load(id, hex).finally(() => {
      if (this.loading.get(hex) === p) this.loading.delete(hex);
    });
    this.loading.set(hex, p);
    return p;
  }

  private async load(id: Buffer, hex: string): Promise<Buffer> {
    // The file is read and decoded off this thread (CodecPool.decodeFile). Blocks known to be
    // evicted skip the attempt.
    const local = this.o.meta.getBlock(id)?.local === false ? null : await this.loadLocal(id, hex);
    if (local) {
      this.lru.set(hex, local);
      this.tier.used(hex);
      return local;
    }
    const plain = await this.fetchPlain(id, hex, !this.o.readOnly);
    this.lru.set(hex, plain);
    return plain;
  }

  /** Plaintext of a block from the backends; with `keep`, kept in the local tier when that was slow. */
  private fetchPlain(id: Buffer, hex: string, keep: boolean): Promise<Buffer> {
    if (!this.o.remote) return Promise.reject(new BlockMissingError(hex));
    return this.o.remote.readPlain(id, keep ? { keep: this.tier } : {});
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
      if (this.o.readOnly) return null; // left for a read-write mount to drop
      this.o.meta.txn(() => this.o.meta.setLocal(id, false));
      await this.tier.remove(hex);
      return null;
    }
  }

  /** Resolves when every fetched block being kept is written and recorded (before closing). */
  keptAll(): Promise<void> {
    return this.tier.keptAll();
  }

  /** The encoded bytes of a block in the local tier, or null when it is not there. */
  readLocalEncoded(id: Buffer): Promise<Buffer | null> {
    return this.tier.readLocalEncoded(id);
  }

  /**
   * The encoded bytes of a block in the local tier, verified (decoded, id checked: in the addon
   * it costs a read and a decode on the libuv pool) before they go into a pack. null when there is
   * no file; rejects with a BlockCorruptError when it does not decode.
   */
  async readLocalVerified(id: Buffer): Promise<Buffer | null> {
    const encoded = await this.tier.readLocalEncoded(id);
    if (!encoded) return null;
    await this.o.pool.decode(id, encoded, { shared: true });
    return encoded;
  }

  /** Starts evicting safe blocks when the local tier is over its limit; resolves when done. */
  maybeEvict(): Promise<void> {
    return this.tier.maybeEvict();
  }

  /**
   * Deletes local copies of blocks that are safe in a pack, least recently used first, until the
   * tier holds at most `limit` bytes (0: everything safe). With 0 it also empties the memory LRU
   * and the kept shard rebuilds, so that reads afterwards are truly cold. Returns the bytes freed.
   */
  evict(limit: number): Promise<number> {
    return this.tier.evict(limit);
  }

  /**
   * Warms the memory LRU with blocks in local files, decoded many per trip to the libuv pool
   * (CodecPool.decodeFiles, the addon only). Failures are
   * left for the real read to report.
   */
  async prefetchBatch(ids: Buffer[]): Promise<void> {
    if (!this.o.pool.canWriteFiles) return;
    const want: { id: Buffer; parts: FilePart[] }[] = [];
    for (const id of ids) {
      const parts = this.localParts(id);
      if (parts) want.push({ id, parts });
    }
    const slices: (typeof want)[] = [];
    for (let i = 0; i < want.length; i += 64) slices.push(want.slice(i, i + 64));
    await Promise.all(
      slices.map(async (slice) => {
        const out = await this.o.pool.decodeFiles(slice).catch(() => []);
        out.forEach((r, j) => {
          if (r instanceof Buffer) this.lru.set(slice[j].id.toString('hex'), r);
        });
      }),
    );
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
    const result = this.o.pool.encode(c.sab, c.start, c.end, this.o.blocksDir, c.kind);
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
      const results = await Promise.all(
        chunks.map((c) =>
          c.encoding?.sweeps === this.sweeps ? c.encoding.result : this.o.pool.encode(c.sab, c.start, c.end, this.o.blocksDir, c.kind),
        ),
      );
      const written = new Set<string>();
      const madeDirs: string[] = [];
      for (const r of results) {
        if (!r.wrote) continue;
        written.add(r.id.toString('hex'));
        if (r.madeDir) madeDirs.push(r.madeDir);
      }
      const ids = results.map((r) => r.id);
      for (;;) {
        const missing: number[] = [];
        try {
          // The new block files (and their directories) are made durable before the epoch this
          // transaction joins commits; registered in the same tick, so that epoch's pass sees them.
          this.tier.ordered(written, madeDirs);
          this.o.meta.txn(() => {
            commit(ids, (i) => {
              const { id, length } = results[i];
              const hex = id.toString('hex');
              if (this.o.meta.ref(id)) {
                // An evicted block written again by this flush is local once more.
                if (written.has(hex) && this.o.meta.getBlock(id)?.local === false) {
                  this.o.meta.setLocal(id, true);
                  this.tier.touch(hex, length);
                }
                return;
              }
              if (!written.has(hex)) {
                missing.push(i);
                throw new RetryCommit();
              }
              this.o.meta.addBlock(id, chunks[i].end - chunks[i].start, length);
              this.tier.touch(hex, length);
            });
          });
          return;
        } catch (e) {
          if (!(e instanceof RetryCommit)) throw e;
          // A block file that existed without a row (left by a crash, or being written by a flush
          // that has not committed yet): store it for real, then commit again (registered with the rest).
          for (const i of missing) {
            const hex = results[i].id.toString('hex');
            const dir = await this.tier.writeFile(hex, results[i].encoded!); // not written by the worker: it sent the bytes
            if (dir) madeDirs.push(dir);
            written.add(hex);
          }
        }
      }
    });
    void this.maybeEvict();
  }

  /**
   * After a crash: block files that were never renamed into place, and block files no committed
   * row counts as local (see LocalTier.removeStrays), are deleted. Returns how many of the latter.
   */
  async removeTemporaries(): Promise<number> {
    await this.tier.removeTemporaries();
    return this.tier.removeStrays();
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
      // The files go only once that commit is durable, and with it every earlier one (the unlink,
      // truncate or rename that dropped the last reference): after a power loss the metadata
      // could otherwise come back still naming blocks whose files are gone. Under the lock, so no
      // flush can meanwhile take up a block whose file is about to go.
      if (dropped.length) await this.o.meta.sync();
      await Promise.all(
        dropped.map(async (id) => {
          const hex = id.toString('hex');
          this.lru.delete(hex);
          await this.tier.remove(hex);
        }),
      );
      this.sweeps++;
      return dropped.length;
    });
  }

  /** Reads and verifies one block, from the local tier or else from its pack (for `isg check`). */
  async verify(id: Buffer): Promise<void> {
    const encoded = await this.tier.readLocalEncoded(id);
    if (encoded) await this.o.pool.decode(id, encoded);
    else await this.fetchPlain(id, id.toString('hex'), false);
  }
}
