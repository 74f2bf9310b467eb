/**
 * An open repository: the parts of the data path wired together (meta, codec pool, backends,
 * packer, block store, filesystem core), with the background duties of a writer: periodic sync,
 * sweep, packing and repair of missing shards.
 *
 * A writer also holds the writer lease on the backends outside the data directory (renewed
 * while open; the data directory's own lock covers the embedded default's backends), and puts
 * the format record and key envelope on every backend that lacks them.
 */
import { CodecPool } from '../block/pool';
import { Meta } from '../meta/meta';
import { BlockStore } from '../store/blockstore';
import { FileSystem } from '../fs/filesystem';
import { Backend } from '../backend/backend';
import { createBackend } from '../backend/registry';
import { resilient, ResilientBackend } from '../backend/resilient';
import { Packer, UploadProgress } from '../pack/packer';
import { ShardReader } from '../pack/fetch';
import { PackRemote } from '../pack/remote';
import { log } from '../log';
import { LeaseLostError, LeaseTimings, WriterLease } from '../head/lease';
import { acquireLock, dataDirId, isInsideDataDir, openRepository, OpenedRepo, RepoError, resolveBackendSpec } from './repository';
import { ensureRecords } from './replicas';
import { refreshFromBackends, RefreshOutcome } from './refresh';
import { publishIndex } from '../snapshot/index-objects';
import { BackgroundProblems, BackgroundStage, BackgroundStatus } from './problems';
import { Publisher, PublishRequest, PublishResult } from '../snapshot/publish';
import { publishSnapshotList } from '../snapshot/snapshots';
import { EntryType, treeSplitKey } from '../snapshot/tree';
import { plantSubtree, readSubtree } from '../snapshot/clone';
import { FsError } from '../fs/errors';
import { posix } from 'node:path';
import { fallbackLocator, openTreeView } from '../snapshot/view';
import { resolveTreeRef, splitTreeArg } from '../snapshot/refs';
import { blockId } from '../block/codec';
import { hostname } from 'node:os';

export interface SessionOptions {
  password?: string;
  readOnly?: boolean;
  /** Memory LRU of plaintext blocks, bytes; the config's value when absent. */
  cacheBytes?: number;
  /** Size limit of the local tier, bytes; the config's value when absent. */
  cacheDirBytes?: number;
  mountpoint?: string;
  /** Interval of the background sync (durability of writes not fsynced), ms. */
  syncIntervalMs?: number;
  dirtyCap?: number;
  /** Budget of written bytes not yet committed, over all files (`--write-buffer`). */
  writeBuffer?: number;
  /** Pack and upload in the background (a mount does; `isg flush` drains explicitly). */
  background?: boolean;
  /** Take the writer lease even while another writer holds it (`--take-over`). */
  takeOver?: boolean;
  /** Writer lease timings (tests shorten them). */
  lease?: Partial<LeaseTimings>;
  /**
   * With `background`: a change is published (a new head on the backends) at most this long
   * after it (`--publish-interval`, 60 s by default). Flush and close publish at once.
   */
  publishIntervalMs?: number;
  /** Open even when the backends' newest head is older than one this data directory saw (`--accept-rollback`). */
  acceptRollback?: boolean;
  /**
   * Compare with the backends' newest head at open, and catch up with it (./refresh.ts); true by
   * default. `isg check` says false: it checks the data directory as it is.
   */
  refresh?: boolean;
  /**
   * Serve this published tree (`latest`, a snapshot id) instead of the live namespace: read-only,
   * its namespace from a tree view (src/snapshot/view.ts), its data from this repository's blocks.
   */
  snapshot?: string;
}

/** What `isg clone` did: names made, tree objects read, time taken. */
export interface CloneResult {
  entries: number;
  objects: number;
  ms: number;
  /** Of `ms`: reading the tree and chunk-list objects, and the graft's transaction. */
  readMs: number;
  graftMs: number;
}

export const DEFAULT_PUBLISH_INTERVAL_MS = 60_000;

/** At open, backends that do not answer at once are named, not waited for. */
const OPEN_CALL = { attempts: 1 };

export class Session {
  private timers: NodeJS.Timeout[] = [];
  private closed = false;
  /** The writer lease, for a writer with backends outside the data directory. */
  lease?: WriterLease;
  private leaseLostLogged = false;
  /** What the open found on the backends against the last head seen (./refresh.ts). */
  refreshed?: RefreshOutcome;
  /** Publishes the namespace to the backends (a writer's; src/snapshot/publish.ts). */
  publisher?: Publisher;
  /** Failures of the background work below, logged (rate-limited) and kept for `isg status`. */
  readonly problems = new BackgroundProblems();

  private constructor(
    readonly repo: OpenedRepo,
    readonly meta: Meta,
    readonly pool: CodecPool,
    readonly store: BlockStore,
    readonly fs: FileSystem,
    readonly backends: ResilientBackend[],
    readonly packer: Packer,
    readonly reader: ShardReader,
    private readonly unlock: () => void,
    /** The tree view a `snapshot` session serves (the FileSystem's metadata), closed with it. */
    readonly view?: Meta,
  ) {}

  static async open(dataDir: string, o: SessionOptions = {}): Promise<Session> {
    if (o.snapshot !== undefined && !o.readOnly) throw new RepoError('a published tree is served read-only');
    const repo = await openRepository(dataDir, o.password);
    const unlock = o.readOnly ? () => undefined : acquireLock(dataDir, o.mountpoint);
    const opened: Backend[] = [];
    let lease: WriterLease | undefined;
    let meta: Meta | undefined;
    let view: Meta | undefined;
    try {
      const st = repo.config.storage;
      const backends: ResilientBackend[] = [];
      for (const spec of st.backends) {
        const b = resilient(await createBackend(resolveBackendSpec(spec, repo.paths.root)));
        opened.push(b);
        backends.push(b);
      }
      if (!o.readOnly) {
        // First: a backend of another repository refuses the open before a lease is taken there.
        const records = await ensureRecords(backends, repo.config, repo.keyFile, OPEN_CALL);
        for (const f of records.failed)
          log.warn(`format record not written to ${f.backend} (written at the next read-write open): ${f.error.message}`);
        const outside = backends.filter((_, i) => !isInsideDataDir(st.backends[i], repo.paths.root));
        if (outside.length) {
          lease = await WriterLease.acquire({
            backends: outside,
            repoId: repo.config.id,
            dataDirId: await dataDirId(repo.paths.root),
            takeOver: o.takeOver,
            timings: o.lease,
            call: { attempts: 2 },
          }).catch((e: unknown) => {
            throw new RepoError(`cannot open ${repo.paths.root} for writing: ${(e as Error).message}`, { cause: e });
          });
        }
      }
      // The last published state, or a refusal (rollback, divergence): ./refresh.ts.
      const refreshed =
        o.refresh === false
          ? undefined
          : await refreshFromBackends({
              repo,
              backends,
              readOnly: !!o.readOnly,
              acceptRollback: o.acceptRollback,
              locked: !o.readOnly,
              mountpoint: o.mountpoint,
              call: OPEN_CALL,
            });
      meta = await Meta.open(repo.paths.meta, repo.keys.meta, o.readOnly);
      if (!o.readOnly) meta.initialise(process.getuid?.() ?? 0, process.getgid?.() ?? 0);
      const pool = new CodecPool({
        idKey: repo.keys.block.idKey,
        encKey: repo.keys.block.encKey,
        gear: repo.keys.gear,
        chunker: repo.config.chunker,
        compression: repo.config.compression,
      });
      const byName = new Map<string, Backend>(backends.map((b) => [b.name, b]));
      const reader = new ShardReader(byName, { healthy: (name) => backends.find((b) => b.name === name)?.health().healthy ?? false });
      const store = new BlockStore({
        blocksDir: repo.paths.blocks,
        meta,
        pool,
        // A view's own copies of block locations serve blocks the live filesystem has dropped since.
        remote: new PackRemote(
          reader,
          pool,
          fallbackLocator(meta, () => view),
        ),
        readOnly: o.readOnly,
        onError: (m) => log.warn(m),
        memoryBytes: o.cacheBytes ?? repo.config.cache.memoryBytes,
        diskBytes: o.cacheDirBytes ?? repo.config.cache.diskBytes,
      });
      const packer = new Packer({
        meta,
        store,
        backends,
        k: st.ec.k,
        m: st.ec.m,
        packKey: repo.keys.pack,
        targetSize: st.packSize,
        quietMs: st.packQuietMs,
      });
      if (o.snapshot !== undefined) {
        const { root } = resolveTreeRef(meta, o.snapshot);
        view = await openTreeView({
          viewsDir: repo.paths.views,
          root,
          seal: repo.keys.meta,
          fetch: (id) => store.readPlain(id),
          locator: meta,
        });
      }
      const fs = new FileSystem({
        deps: {
          meta: view ?? meta,
          store,
          pool,
          chunker: repo.config.chunker,
          dirtyCap: o.dirtyCap ?? 64 * 1024 * 1024,
          writeBuffer: o.writeBuffer,
          readahead: 32 * 1024 * 1024,
        },
        dataDir: repo.paths.root,
        readOnly: o.readOnly,
      });
      const s = new Session(repo, meta, pool, store, fs, backends, packer, reader, unlock, view);
      s.lease = lease;
      s.refreshed = refreshed;
      if (!o.readOnly) {
        s.publisher = new Publisher({
          meta,
          store,
          backends,
          codec: {
            idOf: (plain) => blockId(repo.keys.block, plain),
            splitKey: treeSplitKey(repo.keys.block.idKey),
            layout: (batch, splitKey) => pool.tree(batch, splitKey),
          },
          repoId: repo.config.id,
          signing: repo.keys.head,
          host: hostname(),
          drain: () => packer.drain(),
          publishIndex: (locations, previous) => publishIndex(backends, locations, repo.keys.block, previous),
          publishSnapshots: (records, previous) => publishSnapshotList(backends, records, repo.keys.block, previous),
          onWarning: (m) => log.warn(m),
        });
      }
      if (lease) {
        const held = lease;
        s.every(
          lease.renewMs,
          () =>
            held.renew().catch((e: unknown) => {
              // Once: from here on another writer may be writing (publishing must stop; not built yet).
              if (e instanceof LeaseLostError && !s.leaseLostLogged) {
                s.leaseLostLogged = true;
                log.error(`${e.message}: this mount is no longer the repository's writer`);
              }
              throw e;
            }),
          'lease',
        );
      }
      if (!o.readOnly) {
        await fs.recover();
        fs.onError = (m) => log.error(m);
        // Data buffered for half the interval is flushed at a tick: durable within the interval.
        const half = (o.syncIntervalMs ?? 5000) / 2;
        s.every(half, () => fs.writeback(half), 'sync');
        s.every(30_000, () => store.sweep(), 'sweep');
        if (o.background) {
          s.every(1000, () => s.packInBackground(), 'upload');
          s.every(o.publishIntervalMs ?? DEFAULT_PUBLISH_INTERVAL_MS, () => s.publish(), 'publish');
          s.every(60_000, () => s.repairMissingShards((e) => s.problems.failed('repair', e)), 'repair');
        }
      }
      return s;
    } catch (e) {
      await lease?.release().catch(() => undefined);
      await Promise.all(opened.map((b) => b.close().catch(() => undefined)));
      await view?.close().catch(() => undefined);
      await meta?.close().catch(() => undefined);
      unlock();
      throw e;
    }
  }

  /** Runs fn every `ms` (never two at once); its failures are reported as `stage`'s. */
  private every(ms: number, fn: () => Promise<unknown>, stage: BackgroundStage): void {
    let running = false;
    const t = setInterval(() => {
      if (running || this.closed) return;
      running = true;
      fn()
        .catch((e: unknown) => this.problems.failed(stage, e))
        .finally(() => {
          running = false;
        });
    }, ms);
    t.unref();
    this.timers.push(t);
  }

  /** The packer's background round: full packs at once, partial ones after the quiet period. */
  private async packInBackground(): Promise<void> {
    if ((await this.packer.packOnce(false)) || this.meta.queueLength() === 0) this.problems.uploadProgressed();
  }

  /**
   * Publishes what changed since the last head (null when nothing did, or on a read-only session).
   * Not once the writer lease is lost: another writer may own the repository's heads.
   */
  async publish(req?: PublishRequest): Promise<PublishResult | null> {
    if (!this.publisher) return null;
    const lost = this.lease?.lostError;
    if (lost) throw lost;
    return this.publisher.publish(req);
  }

  /** Live values of the background work, for `isg status` (over the control socket). */
  backgroundStatus(): BackgroundStatus {
    return this.problems.status();
  }

  /**
   * Everything written so far, packed and stored on the backends, every shard of every pack
   * (`isg flush`). Shards that cannot be stored are retried for `patienceMs` (a backend that just
   * came back may still be cooling down as unhealthy), then the flush fails naming them.
   */
  async flush(onProgress?: (p: UploadProgress) => void, patienceMs = 60_000): Promise<void> {
    await this.fs.flushAll();
    const deadline = Date.now() + patienceMs;
    for (;;) {
      let problem: Error;
      try {
        await this.packer.drain(onProgress);
        await this.repairMissingShards();
        const incomplete = [...this.meta.allPacks()].filter(({ row }) => row.stored.length < row.k + row.m);
        if (!incomplete.length) break;
        const where = new Set(incomplete.flatMap(({ row }) => row.placement.filter((_, i) => !row.stored.includes(i))));
        problem = new Error(
          `${incomplete.length} pack(s) still miss shards on ${[...where].join(', ')} (the data is readable from the other shards)`,
        );
      } catch (e) {
        problem = e as Error;
      }
      if (Date.now() > deadline) throw problem;
      await new Promise((r) => setTimeout(r, 1000));
    }
    await this.publish();
    await this.store.maybeEvict();
    await this.fs.sync();
  }

  /** Stores shards that could not be stored when their pack was written. */
  async repairMissingShards(onError?: (e: unknown) => void): Promise<number> {
    let repaired = 0;
    for (const { id, row } of [...this.meta.allPacks()]) {
      if (row.stored.length === row.k + row.m) continue;
      const stored = await this.reader.repairPack(id, row).then(
        (stored) => {
          const still = row.placement.filter((_, i) => !stored.includes(i));
          if (still.length)
            onError?.(new Error(`pack ${id}: ${still.length} shard(s) still not stored, on ${[...new Set(still)].join(', ')}`));
          return stored;
        },
        (e: unknown) => {
          onError?.(e);
          return row.stored;
        },
      );
      if (stored.length !== row.stored.length) {
        this.meta.txn(() => this.meta.putPack(id, { ...row, stored }));
        repaired += stored.length - row.stored.length;
      }
    }
    return repaired;
  }

  /**
   * Grafts the subtree `<ref>[:<path>]` of a published tree at `dest`, a path inside this
   * filesystem (`isg clone`; src/snapshot/clone.ts). Refuses an existing destination.
   */
  async clone(tree: string, dest: string): Promise<CloneResult> {
    const started = Date.now();
    const { ref, path: inTree } = splitTreeArg(tree);
    const { root, label } = resolveTreeRef(this.meta, ref);
    const plan = await readSubtree(root, inTree, (id) => this.store.readPlain(id), label);
    const read = Date.now();
    try {
      await this.fs.graft(dest, plan.nodes[0].entry.type === EntryType.dir, () => plantSubtree(this.meta, plan));
    } catch (e) {
      if (e instanceof FsError && e.code === 'EEXIST') throw new RepoError(`${dest} exists: clone does not replace anything`);
      if (e instanceof FsError && (e.code === 'ENOENT' || e.code === 'ENOTDIR'))
        throw new RepoError(`the directory ${posix.dirname(dest)} of ${dest} does not exist in the filesystem`);
      throw e;
    }
    const done = Date.now();
    return { entries: plan.nodes.length, objects: plan.objects, ms: done - started, readMs: read - started, graftMs: done - read };
  }

  /** Evicts every block of the local tier that is safe on the backends (`isg cache drop`). */
  cacheDrop(): Promise<number> {
    return this.store.evict(0);
  }

  /** Flushes, syncs and releases everything; the repository is consistent on disk afterwards. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    try {
      if (this.publisher && !this.fs.isReadOnly && !this.lease?.lostError) {
        // The last state goes to the backends before the packer stops (a publish drains it).
        await this.fs.flushAll();
        await this.publish().catch((e: unknown) => log.error(`not published at close: ${(e as Error).message}`));
      }
      await this.packer.stop();
      await this.store.keptAll(); // its records need the metadata, closed below
      if (!this.fs.isReadOnly) await this.fs.close();
    } finally {
      await this.pool.close();
      // After the last write to the backends, before they close.
      await this.lease?.release().catch((e: unknown) => log.warn(`writer lease not released: ${(e as Error).message}`));
      await Promise.all(this.backends.map((b) => b.close().catch(() => undefined)));
      await this.view?.close();
      await this.meta.close();
      this.unlock();
    }
  }
}
