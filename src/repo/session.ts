/**
 * An open repository: the parts of the data path wired together (meta, codec pool, block store,
 * filesystem core), with the background duties of a writer (periodic sync and sweep).
 */
import { CodecPool } from '../block/pool';
import { Meta } from '../meta/meta';
import { BlockStore } from '../store/blockstore';
import { FileSystem } from '../fs/filesystem';
import { acquireLock, openRepository, OpenedRepo } from './repository';

export interface SessionOptions {
  password?: string;
  readOnly?: boolean;
  /** Memory LRU of plaintext blocks, bytes; the config's value when absent. */
  cacheBytes?: number;
  mountpoint?: string;
  /** Interval of the background sync (durability of writes not fsynced), ms. */
  syncIntervalMs?: number;
  dirtyCap?: number;
}

export class Session {
  private timers: NodeJS.Timeout[] = [];
  private closed = false;

  private constructor(
    readonly repo: OpenedRepo,
    readonly meta: Meta,
    readonly pool: CodecPool,
    readonly store: BlockStore,
    readonly fs: FileSystem,
    private readonly unlock: () => void,
  ) {}

  static async open(dataDir: string, o: SessionOptions = {}): Promise<Session> {
    const repo = await openRepository(dataDir, o.password);
    const unlock = o.readOnly ? () => undefined : acquireLock(dataDir, o.mountpoint);
    try {
      const meta = new Meta(repo.paths.meta);
      if (!o.readOnly) meta.initialise(process.getuid?.() ?? 0, process.getgid?.() ?? 0);
      const pool = new CodecPool({
        idKey: repo.keys.block.idKey, encKey: repo.keys.block.encKey, gear: repo.keys.gear,
        chunker: repo.config.chunker, compression: repo.config.compression,
      });
      const store = new BlockStore({ blocksDir: repo.paths.blocks, meta, pool, memoryBytes: o.cacheBytes ?? repo.config.cache.memoryBytes });
      const fs = new FileSystem({
        deps: { meta, store, pool, chunker: repo.config.chunker, dirtyCap: o.dirtyCap ?? 64 * 1024 * 1024, readahead: 8 * 1024 * 1024 },
        dataDir: repo.paths.root,
        readOnly: o.readOnly,
      });
      const s = new Session(repo, meta, pool, store, fs, unlock);
      if (!o.readOnly) {
        await fs.recover();
        s.every(o.syncIntervalMs ?? 5000, () => fs.sync());
        s.every(30_000, () => store.sweep());
      }
      return s;
    } catch (e) {
      unlock();
      throw e;
    }
  }

  private every(ms: number, fn: () => Promise<unknown>): void {
    let running = false;
    const t = setInterval(() => {
      if (running || this.closed) return;
      running = true;
      fn().catch(() => undefined).finally(() => { running = false; });
    }, ms);
    t.unref();
    this.timers.push(t);
  }

  /** Flushes, syncs and releases everything; the repository is consistent on disk afterwards. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    try {
      if (!this.fs.isReadOnly) await this.fs.close();
    } finally {
      await this.pool.close();
      await this.meta.close();
      this.unlock();
    }
  }
}
