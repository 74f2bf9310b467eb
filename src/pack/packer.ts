/**
 * The packer drains the durable upload queue: it groups queued blocks into packs, erasure-codes
 * each pack into k + m shards and stores shard i on backend placement[i].
 *
 * Write order, as restic does it: shards are stored first, then one transaction commits the pack
 * index entry and the block locations and takes the blocks off the queue. A crash at any point
 * leaves at worst shards nobody refers to, never a reference to a missing shard. A pack is
 * committed once at least k shards are stored; the shards that failed are listed as missing and
 * stored later by the repairer, which rebuilds them from the others.
 *
 * Every block is verified (decoded, id checked) before it goes into a pack. A queued block of a
 * live file whose local copy is missing or damaged has no other copy: it is logged at warn level,
 * counted (`damagedBlocks`, also kept in the metadata for `isg status`), left in the queue and
 * skipped by later packs; `drain` then fails naming how many.
 */
import { rsEncode } from '../native';
import { Meta, PackRow } from '../meta/meta';
import { BlockStore } from '../store/blockstore';
import { Backend } from '../backend/backend';
import { buildPack, encodeShard, layoutFor, newPackId, segmentsOf, shardKey, splitPack } from './format';
import { log } from '../log';

/** A queued block found missing or damaged is looked at again after this long (or on drain). */
const DAMAGED_RETRY_MS = 60_000;

export interface PackerOptions {
  meta: Meta;
  store: BlockStore;
  backends: Backend[];
  k: number;
  m: number;
  packKey: Buffer;
  targetSize: number;
  /** A partial pack is sealed when its oldest block has waited this long. */
  quietMs: number;
}

export interface UploadProgress {
  pendingBlocks: number;
  pendingBytes: number;
}

export class Packer {
  private rotation = 0;
  private running: Promise<boolean> | null = null;
  private firstSeen = new Map<number, number>(); // queue seq -> when the packer first saw it
  /** Queued blocks found missing or damaged (hex id -> when last seen so), skipped for a minute or until a drain. */
  private readonly damaged = new Map<string, number>();

  constructor(private readonly o: PackerOptions) {
    if (o.backends.length < o.k + o.m)
      throw new Error(`${o.k}+${o.m} erasure coding needs at least ${o.k + o.m} backends, ${o.backends.length} configured`);
  }

  /** How many queued blocks of live files were found missing or damaged in the local tier. */
  get damagedBlocks(): number {
    return this.damaged.size;
  }

  /** Bytes and blocks still waiting for a pack. */
  pending(): UploadProgress {
    let pendingBytes = 0;
    const q = this.o.meta.queued();
    for (const { id } of q) pendingBytes += this.o.meta.getBlock(id)?.stored ?? 0;
    return { pendingBlocks: q.length, pendingBytes };
  }

  /** Waits for the pack in flight (the session runs the background rounds, see packOnce). */
  async stop(): Promise<void> {
    await this.running?.catch(() => undefined);
  }

  /** Packs and stores until the queue is empty (isg flush). Throws when shards cannot be stored. */
  async drain(onProgress?: (p: UploadProgress) => void): Promise<void> {
    this.damaged.clear(); // look at them again: a flush may have written them anew
    for (;;) {
      onProgress?.(this.pending());
      if (this.o.meta.queueLength() === 0) return;
      if (!(await this.packOnce(true)) && this.damaged.size) {
        throw new Error(`${this.damaged.size} queued block(s) are missing or damaged in the local tier and cannot be uploaded`);
      }
    }
  }

  /** One pack; serialised, so memory stays at about one pack and its shards. */
  packOnce(force: boolean): Promise<boolean> {
    const run = (this.running ?? Promise.resolve(false)).catch(() => false).then(() => this.buildAndStore(force));
    const mine = run.finally(() => {
      if (this.running === mine) this.running = null;
    });
    this.running = mine;
    return mine;
  }

  /** Keeps the list of damaged queued blocks in the metadata, for `isg status`. */
  private recordDamaged(): void {
    const listed = this.o.meta.damagedBlocks();
    const now = [...this.damaged.keys()];
    if (now.length === listed.length && now.every((h) => listed.includes(h))) return;
    this.o.meta.txn(() => this.o.meta.setDamagedBlocks(now));
  }

  private choosePlacement(): Backend[] {
    const n = this.o.backends.length;
    const start = this.rotation++ % n;
    return Array.from({ length: this.o.k + this.o.m }, (_, i) => this.o.backends[(start + i) % n]);
  }

  private async buildAndStore(force: boolean): Promise<boolean> {
    const { meta, store } = this.o;
    const now = Date.now();
    const queue = meta.queued(50_000).filter((q) => now - (this.damaged.get(q.id.toString('hex')) ?? 0) > DAMAGED_RETRY_MS);
    if (!queue.length) return false;
    const taken: { seq: number; id: Buffer }[] = [];
    let bytes = 0;
    for (const q of queue) {
      if (!this.firstSeen.has(q.seq)) this.firstSeen.set(q.seq, now);
      const row = meta.getBlock(q.id);
      taken.push(q);
      if (row && !meta.getLoc(q.id)) bytes += row.stored;
      if (bytes >= this.o.targetSize) break;
    }
    const oldest = this.firstSeen.get(taken[0].seq) ?? now;
    if (!force && bytes < this.o.targetSize && now - oldest < this.o.quietMs) return false;

    // Read and verify the blocks under the store's guard: a sweep must not delete them meanwhile.
    const bad = new Set<number>(); // queue entries that stay: a live block with no sound local copy
    const blocks = await store.guard(async () => {
      const out: { id: Buffer; encoded: Buffer }[] = [];
      const seen = new Set<string>();
      for (const q of taken) {
        const hex = q.id.toString('hex');
        const row = meta.getBlock(q.id);
        if (seen.has(hex) || !row || meta.getLoc(q.id)) continue; // freed, or packed already
        let encoded: Buffer | null = null;
        let why = 'its file is missing';
        try {
          encoded = await store.readLocalVerified(q.id);
        } catch (e) {
          why = (e as Error).message;
        }
        if (!encoded) {
          if (row.refs === 0) continue; // dead: the sweep drops it
          bad.add(q.seq);
          if (!this.damaged.has(hex)) log.warn(`block ${hex.slice(0, 16)}… of a live file cannot be uploaded: ${why}; it stays queued`);
          this.damaged.set(hex, Date.now());
          continue;
        }
        this.damaged.delete(hex);
        seen.add(hex);
        out.push({ id: q.id, encoded });
      }
      return out;
    });
    this.recordDamaged();
    const done = taken.filter((q) => !bad.has(q.seq));
    if (!blocks.length) {
      meta.txn(() => {
        for (const q of done) meta.dequeue(q.seq);
      });
      for (const q of done) this.firstSeen.delete(q.seq);
      return done.length > 0;
    }

    const packId = newPackId();
    const { bytes: pack, entries } = buildPack(this.o.packKey, packId, blocks);
    const layout = layoutFor(pack.length, this.o.k, this.o.m);
    const data = splitPack(pack, layout);
    const parity = await rsEncode(this.o.k, this.o.m, data);
    const shards = [...data, ...parity];
    const objects = shards.map((s, i) => encodeShard(packId, i, layout, s));
    const placement = this.choosePlacement();
    const results = await Promise.allSettled(objects.map((obj, i) => placement[i].put(shardKey(packId, i), obj)));
    const stored = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    if (stored.length < this.o.k) {
      const why = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')?.reason as Error | undefined;
      throw new Error(
        `pack ${packId}: only ${stored.length} of ${this.o.k + this.o.m} shards stored (need ${this.o.k}): ${why?.message ?? 'unknown'}`,
      );
    }
    if (stored.length < shards.length) log.warn(`pack ${packId}: ${shards.length - stored.length} shard(s) missing, queued for repair`);
    const segs = segmentsOf(layout.shardSize);
    const sums = Buffer.concat(objects.map((o) => o.subarray(64, 64 + 8 * segs)));
    const row: PackRow = {
      k: this.o.k,
      m: this.o.m,
      shardSize: layout.shardSize,
      packLength: layout.packLength,
      placement: placement.map((b) => b.name),
      stored,
      sums,
      created: Date.now(),
    };
    meta.txn(() => {
      meta.putPack(packId, row);
      for (const e of entries) if (meta.getBlock(e.id)) meta.putLoc(e.id, { pack: packId, offset: e.offset, length: e.length });
      meta.markUnindexed(packId, entries); // for the next head's index object
      for (const q of done) meta.dequeue(q.seq);
    });
    for (const q of done) this.firstSeen.delete(q.seq);
    void store.maybeEvict(); // its blocks are safe now: the local tier may shrink to its limit
    return true;
  }
}
