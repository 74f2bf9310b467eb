/**
 * Reading blocks back from the backends. A block lies in one or two data shards of its pack; only
 * that byte range (widened to 64 KiB segments, for their checksums) is fetched. When a data shard
 * is missing, corrupt or on a backend that is down, the same range of other shards is fetched and
 * the data rebuilt: Reed-Solomon works position by position, so a range of k shards rebuilds the
 * same range of any other shard. Healthy data shards are preferred, parity after them.
 */
import { LRUCache } from 'lru-cache';
import { IsgError, registerErrorClass } from '../errors';
import { rsReconstruct } from '../native';
import { BlockLoc, PackRow } from '../meta/meta';
import { Backend, CallOptions } from '../backend/backend';
import type { FilePart } from '../block/pool';
import {
  encodeShard,
  piecesOf,
  SEGMENT,
  segmentSpan,
  segmentsOf,
  shardHeaderSize,
  shardKey,
  ShardCorruptError,
  verifySegments,
} from './format';

/** Too few shards of a pack can be read now to give its bytes (kind 'unavailable'). */
export class PackUnavailableError extends IsgError {
  constructor(message: string) {
    super('unavailable', message);
  }
}
registerErrorClass(PackUnavailableError);

export interface HealthView {
  healthy(name: string): boolean;
}

/**
 * A block's encoded bytes as fetched; `slow`: some of them came from a warm or cold backend.
 * `checked`: every byte passed its shard's segment checksums. A block read straight from its data
 * shard(s) is not checked: its AEAD tag and id hash catch any damage, and a caller whose decode
 * fails reads it again with `checked` set, which finds the bad shard and rebuilds around it.
 */
export interface FetchedBlock {
  encoded: Buffer;
  slow: boolean;
  checked: boolean;
  /** `encoded` is a view of memory that others read too (a kept rebuild): copy it to own it. */
  shared: boolean;
}

/**
 * A shard that cannot be read is rebuilt one span (at most REBUILD_SPAN) at a time, and every
 * shard of that rebuild is kept for a while: rebuilding needs the same bytes of k other shards,
 * which hold the neighbouring blocks a sequential read wants next, so with m shards lost a
 * sequential read costs about the I/O of one with none lost, not k times it.
 */
const REBUILD_SPAN = 4 * 1024 * 1024;
const REBUILT_CACHE_BYTES = 128 * 1024 * 1024;

/** Retry terms of shard reads (CallOptions of the resilient backends). */
const ONCE: CallOptions = { attempts: 1 };
const PATIENT: CallOptions = {};
const PAST_GATE: CallOptions = { bypassGate: true };

export class ShardReader {
  /** Recent rebuilds by `pack:shard:start`, and the rebuilds in flight by `pack:start`. */
  private readonly rebuilt = new LRUCache<string, { start: number; data: Buffer; slow: boolean }>({
    maxSize: REBUILT_CACHE_BYTES,
    sizeCalculation: (e) => Math.max(1, e.data.length),
  });
  private readonly rebuilding = new Map<string, Promise<void>>();

  /**
   * `backends` are the resilient ones (src/backend/resilient.ts): retries, timeouts and health
   * live there, and each call here says which of them it wants (CallOptions).
   */
  constructor(
    private readonly backends: Map<string, Backend>,
    private readonly health: HealthView = { healthy: () => true },
  ) {}

  /** Whether any of these shards lies on a backend slower than the hot tier. */
  private slowAmong(pack: PackRow, shards: number[]): boolean {
    return shards.some((i) => (this.backends.get(pack.placement[i])?.tier ?? 'hot') !== 'hot');
  }

  /** The segment checksums of one shard (8 bytes each). */
  private sumsOf(pack: PackRow, shard: number): Buffer {
    const bytes = segmentsOf(pack.shardSize) * 8;
    return pack.sums.subarray(shard * bytes, (shard + 1) * bytes);
  }

  /**
   * Shard bytes [span.start, span.end) of one shard, verified, or a thrown error. By default one
   * attempt (another shard is the better retry); `retry` asks the backend for other terms
   * (see fetchRaw).
   */
  private async fetchVerified(
    packId: string,
    pack: PackRow,
    shard: number,
    span: { start: number; end: number },
    signal?: AbortSignal,
    retry: CallOptions = ONCE,
  ): Promise<Buffer> {
    const data = await this.fetchRaw(packId, pack, shard, span, signal, retry);
    if (!(await verifySegments(data, span.start, this.sumsOf(pack, shard)))) {
      throw new ShardCorruptError(`shard ${shard} of pack ${packId} on ${pack.placement[shard]} fails its checksum`);
    }
    return data;
  }

  /**
   * Shard bytes [span.start, span.end), whole but unverified. `retry`: the per-call terms of the
   * backend's resilient wrapper: ONCE by default, PATIENT (its retries with backoff) or
   * PAST_GATE (one attempt even while it cools down as unhealthy).
   */
  private async fetchRaw(
    packId: string,
    pack: PackRow,
    shard: number,
    span: { start: number; end: number },
    signal?: AbortSignal,
    retry: CallOptions = ONCE,
  ): Promise<Buffer> {
    const backend = this.backends.get(pack.placement[shard]);
    if (!backend) throw new PackUnavailableError(`backend ${pack.placement[shard]} is not configured`);
    const range = { offset: shardHeaderSize(pack.shardSize) + span.start, length: span.end - span.start };
    const data = await backend.get(shardKey(packId, shard), range, { ...retry, signal });
    if (data.length !== span.end - span.start)
      throw new ShardCorruptError(`shard ${shard} of pack ${packId} on ${backend.name} is truncated`);
    return data;
  }

  /** The same span of every shard, rebuilt from any k good ones; `slow` as in FetchedBlock. */
  async reconstructSpan(
    packId: string,
    pack: PackRow,
    span: { start: number; end: number },
    exclude: Set<number>,
    signal?: AbortSignal,
  ): Promise<{ shards: Buffer[]; slow: boolean }> {
    const n = pack.k + pack.m;
    const order = Array.from({ length: n }, (_, i) => i)
      .filter((i) => !exclude.has(i))
      .sort((a, b) => {
        const ha = this.health.healthy(pack.placement[a]) ? 0 : 1;
        const hb = this.health.healthy(pack.placement[b]) ? 0 : 1;
        return ha - hb || a - b; // healthy first, data before parity
      });
    const got: (Buffer | null)[] = new Array(n).fill(null);
    const errors: string[] = [];
    let next = 0;
    let have = 0;
    // Ask for k at once; each failure pulls in the next candidate.
    const worker = async () => {
      while (have < pack.k && next < order.length) {
        const i = order[next++];
        try {
          got[i] = await this.fetchVerified(packId, pack, i, span, signal);
          have++;
        } catch (e) {
          errors.push((e as Error).message);
        }
      }
    };
    await Promise.all(Array.from({ length: pack.k }, worker));
    // Last resort, all at once: whatever did not answer, again: with retries where the backend
    // counts as healthy, else once past the fail-fast gate of its cool-down.
    if (have < pack.k) {
      await Promise.all(
        order
          .filter((i) => !got[i])
          .map(async (i) => {
            const retry = this.health.healthy(pack.placement[i]) ? PATIENT : PAST_GATE;
            try {
              got[i] = await this.fetchVerified(packId, pack, i, span, signal, retry);
              have++;
            } catch (e) {
              errors.push((e as Error).message);
            }
          }),
      );
    }
    if (have < pack.k)
      throw new PackUnavailableError(`pack ${packId}: only ${have} of the ${pack.k} shards needed could be read (${errors.join('; ')})`);
    // Keep exactly k inputs: the code needs no more, and fewer copies.
    let kept = 0;
    const inputs = got.map((b) => (b && kept < pack.k ? (kept++, b) : null));
    const used = inputs.flatMap((b, i) => (b ? [i] : []));
    return { shards: await rsReconstruct(pack.k, pack.m, inputs), slow: this.slowAmong(pack, used) };
  }

  /**
   * The rebuild spans that bytes [from, to) of a shard fall in. A shard is cut into equal spans of
   * at most REBUILD_SPAN, segment-aligned: a 16 MiB pack's shards are a little over 4 MiB,
   * and a fixed 4 MiB grid would leave a sliver at the end, one more round of k requests.
   */
  private spansOf(pack: PackRow, from: number, to: number): { start: number; end: number }[] {
    const count = Math.ceil(pack.shardSize / REBUILD_SPAN);
    const len = Math.ceil(pack.shardSize / count / SEGMENT) * SEGMENT;
    const out: { start: number; end: number }[] = [];
    for (let start = Math.floor(from / len) * len; start < to; start += len)
      out.push({ start, end: Math.min(pack.shardSize, start + len) });
    return out;
  }

  /**
   * Bytes [from, to) of data shard `shard`; `kept` when they are a view of a kept rebuild (shared
   * memory), else memory of the caller's own; `slow` as in FetchedBlock.
   */
  private async readShardRange(
    packId: string,
    pack: PackRow,
    shard: number,
    from: number,
    to: number,
    checked: boolean,
    signal?: AbortSignal,
  ): Promise<{ bytes: Buffer; kept: boolean; slow: boolean; checked: boolean }> {
    const spans = this.spansOf(pack, from, to);
    // A rebuild under way fetches these bytes anyway (it reads k shards of the span).
    await Promise.all(spans.map((sp) => this.rebuilding.get(`${packId}:${sp.start}`)?.catch(() => undefined)));
    const rebuilt = this.rebuiltCovering(packId, shard, spans, from, to);
    if (rebuilt) return rebuilt;
    const span = segmentSpan(from, to, pack.shardSize);
    // With a data shard of this pack known to be down, every read of the span joins one rebuild:
    // it fetches these bytes anyway, and a read of its own would fetch them twice.
    const degraded = pack.placement.slice(0, pack.k).some((name) => !this.health.healthy(name));
    let failed = false;
    if (!degraded && this.health.healthy(pack.placement[shard])) {
      try {
        const slow = this.slowAmong(pack, [shard]);
        if (!checked)
          return { bytes: await this.fetchRaw(packId, pack, shard, { start: from, end: to }, signal), kept: false, slow, checked };
        const data = await this.fetchVerified(packId, pack, shard, span, signal);
        return { bytes: data.subarray(from - span.start, to - span.start), kept: false, slow, checked };
      } catch {
        failed = true; // rebuilt below
      }
    }
    // A shard that just failed is left out; one merely marked down stays a candidate of last resort.
    const exclude = failed ? new Set([shard]) : new Set<number>();
    await Promise.all(
      spans.map((sp) => {
        if (this.rebuilt.has(`${packId}:${shard}:${sp.start}`)) return undefined;
        const key = `${packId}:${sp.start}`;
        let rebuild = this.rebuilding.get(key);
        if (!rebuild) {
          rebuild = this.reconstructSpan(packId, pack, sp, exclude, signal)
            .then(({ shards, slow }) => {
              for (const [i, b] of shards.entries()) this.rebuilt.set(`${packId}:${i}:${sp.start}`, { start: sp.start, data: b, slow });
            })
            .finally(() => this.rebuilding.delete(key));
          this.rebuilding.set(key, rebuild);
        }
        return rebuild;
      }),
    );
    const hit = this.rebuiltCovering(packId, shard, spans, from, to);
    if (!hit) throw new PackUnavailableError(`pack ${packId}: shard ${shard} could not be rebuilt`);
    return hit;
  }

  /** Forgets kept rebuilds (`isg cache drop`: reads afterwards are truly cold). */
  forgetRebuilt(): void {
    this.rebuilt.clear();
  }

  /** Bytes [from, to) of a shard from recent rebuilds of `spans`, if they are all kept. */
  private rebuiltCovering(
    packId: string,
    shard: number,
    spans: { start: number }[],
    from: number,
    to: number,
  ): { bytes: Buffer; kept: boolean; slow: boolean; checked: boolean } | null {
    const parts = spans.map((sp) => this.rebuilt.get(`${packId}:${shard}:${sp.start}`));
    if (parts.some((e) => !e)) return null;
    const views = parts.map((e) => e!.data.subarray(Math.max(0, from - e!.start), Math.min(e!.data.length, to - e!.start)));
    const slow = parts.some((e) => e!.slow);
    // Rebuilds are made of verified shards only.
    return views.length === 1
      ? { bytes: views[0], kept: true, slow, checked: true }
      : { bytes: Buffer.concat(views), kept: false, slow, checked: true };
  }

  /**
   * Where a block's encoded bytes lie in shards kept as plain files on hot backends that are up:
   * the files and ranges, for a caller that reads and decodes them in one step
   * (CodecPool.decodeFile) and falls back to readBlock when that fails. With `rebuild`, a piece on
   * a data shard that is lost (not stored, or its backend down) is rebuilt from the same range of
   * k other shards' files (data shards first); without, the pack must not be degraded. null when
   * readBlock does better: a piece on a slower tier, too few such shards, or a rebuild of these
   * bytes under way or kept (see readShardRange).
   */
  localParts(loc: BlockLoc, pack: PackRow, o: { rebuild?: boolean } = {}): FilePart[] | null {
    if (!o.rebuild && pack.placement.slice(0, pack.k).some((n) => !this.health.healthy(n))) return null;
    const base = shardHeaderSize(pack.shardSize);
    const lost = (shard: number) => !pack.stored.includes(shard) || !this.health.healthy(pack.placement[shard]);
    const fileOf = (shard: number): string | undefined => {
      const backend = this.backends.get(pack.placement[shard]);
      if (!backend?.localFile || backend.tier !== 'hot' || lost(shard)) return undefined;
      return backend.localFile(shardKey(loc.pack, shard));
    };
    const parts: FilePart[] = [];
    for (const { shard, from, to } of piecesOf(loc.offset, loc.length, pack.shardSize)) {
      const spans = this.spansOf(pack, from, to);
      if (spans.some((sp) => this.rebuilding.has(`${loc.pack}:${sp.start}`) || this.rebuilt.has(`${loc.pack}:${shard}:${sp.start}`)))
        return null;
      const file = fileOf(shard);
      if (file !== undefined) {
        parts.push({ file, offset: base + from, length: to - from });
        continue;
      }
      // A shard on a slower tier is read there (and the block kept locally) by readBlock.
      if (!o.rebuild || !lost(shard)) return null;
      const sources: { shard: number; file: string; offset: number }[] = [];
      for (let i = 0; i < pack.k + pack.m && sources.length < pack.k; i++) {
        const f = i === shard ? undefined : fileOf(i);
        if (f !== undefined) sources.push({ shard: i, file: f, offset: base + from });
      }
      if (sources.length < pack.k) return null;
      parts.push({ rebuild: { k: pack.k, m: pack.m, shard, sources }, length: to - from });
    }
    return parts;
  }

  /**
   * The encoded bytes of a block: memory of the caller's alone, or (`shared`) a view of a kept
   * rebuild. `checked`: verify every shard range read (see FetchedBlock).
   */
  async readBlock(loc: BlockLoc, pack: PackRow, opts: { checked?: boolean; signal?: AbortSignal } = {}): Promise<FetchedBlock> {
    const checked = opts.checked ?? false;
    const pieces = piecesOf(loc.offset, loc.length, pack.shardSize);
    if (pieces.length === 1) {
      const p = pieces[0];
      const r = await this.readShardRange(loc.pack, pack, p.shard, p.from, p.to, checked, opts.signal);
      return { encoded: r.bytes, slow: r.slow, checked: r.checked, shared: r.kept };
    }
    const encoded = Buffer.allocUnsafe(loc.length);
    const parts = await Promise.all(
      pieces.map(async (p) => {
        const r = await this.readShardRange(loc.pack, pack, p.shard, p.from, p.to, checked, opts.signal);
        r.bytes.copy(encoded, p.at);
        return r;
      }),
    );
    return { encoded, slow: parts.some((r) => r.slow), checked: parts.every((r) => r.checked), shared: false };
  }

  /** Rebuilds and stores the shards of a pack listed as missing; returns the indices now stored. */
  async repairPack(packId: string, pack: PackRow): Promise<number[]> {
    const n = pack.k + pack.m;
    const missing = Array.from({ length: n }, (_, i) => i).filter((i) => !pack.stored.includes(i));
    if (!missing.length) return pack.stored;
    const { shards: all } = await this.reconstructSpan(packId, pack, { start: 0, end: pack.shardSize }, new Set(missing));
    const layout = { k: pack.k, m: pack.m, shardSize: pack.shardSize, packLength: pack.packLength };
    const stored = [...pack.stored];
    for (const i of missing) {
      const backend = this.backends.get(pack.placement[i]);
      if (!backend) continue;
      try {
        await backend.put(shardKey(packId, i), encodeShard(packId, i, layout, all[i]));
        stored.push(i);
      } catch {
        /* stays missing; tried again later */
      }
    }
    return stored.sort((a, b) => a - b);
  }
}
