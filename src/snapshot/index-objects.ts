/**
 * The pack index on the backends (docs/formats.md "Index objects"): where each block lies
 * (block id -> pack, offset, length), published incrementally as index objects that a head names,
 * and rebuilt from the packs' own trailers when index objects are lost.
 *
 * Decisions (why):
 * - Index objects are not packed: each is stored whole on every backend under
 *   `isgfs/index/<id hex>`, encoded with the block codec (kind 3), so any one backend that
 *   survives has them, and they are encrypted and authenticated like blocks (the id is the
 *   keyed hash of the plaintext; a reader checks both).
 * - One publish writes the new locations only (cost grows with what changed). Objects hold at
 *   most MAX_ENTRIES_PER_OBJECT entries (8.4 MB), so a large first publish makes several.
 * - The head's list would grow by one per publish. It is compacted like a log-structured merge
 *   tree: the objects are tiered by stored size (tier t: up to 64 KiB * 8^t); whenever the last
 *   FAN_IN objects of the list are of one tier they are merged into one of a higher tier. Each
 *   entry is so rewritten at most log8(total / 780) times, and the list stays below
 *   FAN_IN objects per tier. Later objects win when two name one block.
 * - Merged-away objects stay on the backends (an older head may still name them); a later
 *   sweep of objects no head names removes them.
 * - The packs' trailers stay the authority: `rebuildIndexFromTrailers` recovers every location
 *   from any k shards of each pack. The pack rows (placement, shards stored, segment checksums)
 *   are never in index objects: they come from the shard headers, read where the shards are
 *   found (scanPacks), so they name the backends as this machine knows them.
 */
import { Backend, CallOptions } from '../backend/backend';
import { BlockKeys, blockId, decodeBlock, encodeBlock, ObjectKind } from '../block/codec';
import { Compression, compressionFor } from '../block/compression';
import { IsgError, registerErrorClass } from '../errors';
import { getSmallObject, majority, onEveryBackend } from '../head/objects';
import { BlockLoc, PackRow } from '../meta/meta';
import { ShardReader } from '../pack/fetch';
import { decodeShardHeader, parseShardKey, readPackTrailer, segmentsOf, shardHeaderSize, shardKey } from '../pack/format';

export const INDEX_PREFIX = 'isgfs/index/';
/** The object kind of index objects in the encoded block's header (docs/formats.md "Block"). */
export const INDEX_OBJECT_KIND = 3;
const MAGIC = Buffer.from('ISGI');
const VERSION = 1;
const HEAD = 9;
const ENTRY = 32 + 16 + 8 + 4;
export const MAX_ENTRIES_PER_OBJECT = 100_000;
/** Largest encoded index object a reader accepts (its entries, plus the codec's overhead). */
export const MAX_INDEX_OBJECT_BYTES = HEAD + MAX_ENTRIES_PER_OBJECT * ENTRY + 1024;
/** Merge the last FAN_IN objects of the list when they are of one tier. */
export const FAN_IN = 8;
const TIER_BASE_BYTES = 64 * 1024;

/** A block's place in a pack (pack id as 32 hex digits, as in the metadata). */
export interface IndexEntry extends BlockLoc {
  id: Buffer;
}

/** Keys of the block codec; compression of new objects (zstd, level 3, by default). */
export interface IndexKeys extends BlockKeys {
  compression?: Compression;
}

/** An index object that cannot be read anywhere, or a pack that cannot be indexed (kind 'corrupt'). */
export class IndexError extends IsgError {
  constructor(message: string) {
    super('corrupt', message);
  }
}
registerErrorClass(IndexError);

export function indexKey(id: Buffer): string {
  return INDEX_PREFIX + id.toString('hex');
}

/** Plaintext of an index object: "ISGI", version, count (u32le), entries. */
export function encodeIndexPlain(entries: readonly IndexEntry[]): Buffer {
  const b = Buffer.alloc(HEAD + entries.length * ENTRY);
  MAGIC.copy(b, 0);
  b[4] = VERSION;
  b.writeUInt32LE(entries.length, 5);
  entries.forEach((e, i) => {
    const at = HEAD + i * ENTRY;
    if (e.id.length !== 32 || !/^[0-9a-f]{32}$/.test(e.pack)) throw new Error(`index entry ${i}: bad block or pack id`);
    e.id.copy(b, at);
    Buffer.from(e.pack, 'hex').copy(b, at + 32);
    b.writeBigUInt64LE(BigInt(e.offset), at + 48);
    b.writeUInt32LE(e.length, at + 56);
  });
  return b;
}

export function decodeIndexPlain(b: Buffer, where: string): IndexEntry[] {
  const bad = (why: string) => new IndexError(`${where}: ${why}`);
  if (b.length < HEAD || !b.subarray(0, 4).equals(MAGIC)) throw bad('not an index object');
  if (b[4] !== VERSION) throw bad(`index object format ${b[4]} is not supported (this isgfs reads ${VERSION})`);
  const n = b.readUInt32LE(5);
  if (b.length !== HEAD + n * ENTRY) throw bad(`index object of ${b.length} bytes cannot hold ${n} entries`);
  const out: IndexEntry[] = [];
  for (let i = 0; i < n; i++) {
    const at = HEAD + i * ENTRY;
    const offset = b.readBigUInt64LE(at + 48);
    if (offset >= 2n ** 53n) throw bad(`entry ${i}: offset beyond 2^53`);
    out.push({
      id: Buffer.from(b.subarray(at, at + 32)),
      pack: b.toString('hex', at + 32, at + 48),
      offset: Number(offset),
      length: b.readUInt32LE(at + 56),
    });
  }
  return out;
}

const zstd = compressionFor({ name: 'zstd', level: 3 });

/** Encodes one object; its id names it. (The codec's kind byte: INDEX_OBJECT_KIND.) */
function encodeIndexObject(keys: IndexKeys, entries: readonly IndexEntry[]): { id: Buffer; encoded: Buffer } {
  return encodeWholeObject(keys, encodeIndexPlain(entries), ObjectKind.index);
}

/** Stores one object on every backend; a majority must take it. */
function storeEverywhere(backends: readonly Backend[], id: Buffer, encoded: Buffer, call?: CallOptions): Promise<void> {
  return storeWholeObject(backends, indexKey(id), 'index object', id, encoded, call);
}

/**
 * Stores an object whole under `key` on every backend (index objects, snapshot lists); a majority
 * must take it, else an IndexError names the failures.
 */
export async function storeWholeObject(
  backends: readonly Backend[],
  key: string,
  what: string,
  id: Buffer,
  encoded: Buffer,
  call?: CallOptions,
): Promise<void> {
  const r = await onEveryBackend(backends, (b) => b.put(key, encoded, call));
  if (r.ok.length < majority(backends.length))
    throw new IndexError(
      `${what} ${id.toString('hex').slice(0, 16)}… stored on ${r.ok.length} of ${backends.length} backends, ` +
        `${majority(backends.length)} needed: ${r.failed.map((f) => `${f.backend} (${f.error.message})`).join(', ')}`,
    );
}

function tierOf(bytes: number): number {
  return bytes <= TIER_BASE_BYTES ? 0 : Math.ceil(Math.log(bytes / TIER_BASE_BYTES) / Math.log(FAN_IN));
}

/**
 * Publishes the locations of newly packed blocks: stores the new index object(s) whole on every
 * backend and returns the ids the next head must list: `previous` (the current head's list)
 * followed by the new ones, with the tail merged as the class comment says. With no new
 * location, `previous` as it is.
 */
export async function publishIndex(
  backends: readonly Backend[],
  newLocs: readonly IndexEntry[],
  keys: IndexKeys,
  previous: readonly Buffer[] = [],
  o: { call?: CallOptions } = {},
): Promise<Buffer[]> {
  const list = previous.map((id) => ({ id, bytes: -1 }));
  for (let at = 0; at < newLocs.length; at += MAX_ENTRIES_PER_OBJECT) {
    const { id, encoded } = encodeIndexObject(keys, newLocs.slice(at, at + MAX_ENTRIES_PER_OBJECT));
    await storeEverywhere(backends, id, encoded, o.call);
    list.push({ id, bytes: encoded.length });
  }
  if (!newLocs.length) return list.map((e) => e.id);
  for (;;) {
    const tail = list.slice(-FAN_IN);
    if (tail.length < FAN_IN) break;
    // Sizes of older objects from one backend that has them (a stat each, FAN_IN at most).
    for (const e of tail) if (e.bytes < 0) e.bytes = await sizeOf(backends, e.id, o.call);
    const tier = tierOf(tail[tail.length - 1].bytes);
    if (!tail.every((e) => tierOf(e.bytes) === tier)) break;
    const entries = mergeEntries(await Promise.all(tail.map((e) => readIndexObject(backends, e.id, keys, o.call))));
    if (entries.length > MAX_ENTRIES_PER_OBJECT) break; // full-size objects stay as they are
    const merged = encodeIndexObject(keys, entries);
    await storeEverywhere(backends, merged.id, merged.encoded, o.call);
    list.splice(list.length - FAN_IN, FAN_IN, { id: merged.id, bytes: merged.encoded.length });
  }
  return list.map((e) => e.id);
}

async function sizeOf(backends: readonly Backend[], id: Buffer, call?: CallOptions): Promise<number> {
  for (const b of backends) {
    const info = await b.stat(indexKey(id), call).catch(() => null);
    if (info) return info.size;
  }
  throw new IndexError(`index object ${id.toString('hex')} is on none of the backends`);
}

/** Entries of several objects in list order, one per block: the later object's wins. */
function mergeEntries(objects: IndexEntry[][]): IndexEntry[] {
  const byId = new Map<string, IndexEntry>();
  for (const entries of objects) for (const e of entries) byId.set(e.id.toString('hex'), e);
  return [...byId.values()];
}

/** One index object from the first backend whose copy decodes and verifies. */
export async function readIndexObject(
  backends: readonly Backend[],
  id: Buffer,
  keys: IndexKeys,
  call?: CallOptions,
): Promise<IndexEntry[]> {
  return readWholeObject(
    backends,
    indexKey(id),
    'index object',
    id,
    keys,
    ObjectKind.index,
    MAX_INDEX_OBJECT_BYTES,
    (plain, where) => decodeIndexPlain(plain, where),
    call,
  );
}

/**
 * An object stored whole on every backend (storeWholeObject), from the first backend whose copy
 * decodes (the codec checks the kind, the tag and that the plaintext hashes to the id) and parses.
 */
export async function readWholeObject<T>(
  backends: readonly Backend[],
  key: string,
  what: string,
  id: Buffer,
  keys: IndexKeys,
  kind: ObjectKind,
  maxBytes: number,
  parse: (plain: Buffer, where: string) => T,
  call?: CallOptions,
): Promise<T> {
  const why: string[] = [];
  for (const b of backends) {
    try {
      const encoded = await getSmallObject(b, key, maxBytes, call);
      if (!encoded) {
        why.push(`${b.name}: absent`);
        continue;
      }
      return parse(decodeBlock(keys, keys.compression ?? zstd, id, encoded, kind), `${b.name}: ${key}`);
    } catch (e) {
      why.push(`${b.name}: ${(e as Error).message}`);
    }
  }
  throw new IndexError(`${what} ${id.toString('hex').slice(0, 16)}… cannot be read: ${why.join('; ')}`);
}

/** Encodes an object with the block codec (zstd unless `keys` says otherwise); its id names it. */
export function encodeWholeObject(keys: IndexKeys, plain: Buffer, kind: ObjectKind): { id: Buffer; encoded: Buffer } {
  const id = blockId(keys, plain);
  return { id, encoded: encodeBlock(keys, keys.compression ?? zstd, id, plain, kind) };
}

/**
 * Every block location the index objects `ids` name (later objects win), each read from any
 * backend that has a copy that verifies. Throws IndexError naming an object no backend has whole.
 */
export async function readIndex(
  backends: readonly Backend[],
  ids: readonly Buffer[],
  keys: IndexKeys,
  call?: CallOptions,
): Promise<Map<string, BlockLoc>> {
  const objects = await mapLimited(ids, 8, (id) => readIndexObject(backends, id, keys, call));
  const out = new Map<string, BlockLoc>();
  for (const entries of objects)
    for (const e of entries) out.set(e.id.toString('hex'), { pack: e.pack, offset: e.offset, length: e.length });
  return out;
}

/** A pack as found on the backends: its row, and what is wrong with it. */
export interface ScannedPacks {
  packs: Map<string, PackRow>;
  /** Packs that cannot be read (fewer than k good shards found), and shards ignored, with why. */
  problems: string[];
  /** Backends whose listing failed. */
  unreachable: { backend: string; error: Error }[];
}

/**
 * Lists `shards/` on every backend and reads the header of every shard found: the pack rows
 * (placement: the backend each shard was found on; a shard found nowhere is placed on a backend
 * that holds none of the pack, listed as not stored, its checksums zero), for every pack with at
 * least k shards whose headers agree.
 */
export async function scanPacks(backends: readonly Backend[], call?: CallOptions): Promise<ScannedPacks> {
  const found = new Map<string, Map<number, Backend>>();
  const listings = await onEveryBackend(backends, async (b) => {
    for await (const info of b.list('shards/', call)) {
      const k = parseShardKey(info.key);
      if (!k) continue;
      let shards = found.get(k.packId);
      if (!shards) found.set(k.packId, (shards = new Map()));
      if (!shards.has(k.index)) shards.set(k.index, b);
    }
  });
  const problems: string[] = [];
  const packs = new Map<string, PackRow>();
  await mapLimited([...found], 16, async ([packId, shards]) => {
    const headers = await Promise.all(
      [...shards].map(async ([index, b]) => {
        try {
          const h = await readShardHeader(b, packId, index, call);
          if (h.packId !== packId || h.index !== index) throw new Error('its header names another shard');
          return { index, b, h };
        } catch (e) {
          problems.push(`pack ${packId}: shard ${index} on ${b.name} ignored: ${(e as Error).message}`);
          return null;
        }
      }),
    );
    const good = headers.filter((x) => x !== null);
    // The layout most shards agree on (a stray shard of another layout is ignored).
    const layoutKey = (h: { k: number; m: number; shardSize: number; packLength: number }) =>
      `${h.k}+${h.m}:${h.shardSize}:${h.packLength}`;
    const votes = new Map<string, number>();
    for (const g of good) votes.set(layoutKey(g.h), (votes.get(layoutKey(g.h)) ?? 0) + 1);
    const best = [...votes].sort((a, b) => b[1] - a[1])[0]?.[0];
    const agreeing = good.filter((g) => layoutKey(g.h) === best && g.index < g.h.k + g.h.m);
    const first = agreeing[0]?.h;
    if (!first || agreeing.length < first.k) {
      problems.push(`pack ${packId}: ${agreeing.length} readable shard(s) found${first ? `, ${first.k} needed` : ''}: it cannot be read`);
      return;
    }
    const n = first.k + first.m;
    const segs = segmentsOf(first.shardSize);
    const sums = Buffer.alloc(n * segs * 8);
    const placement: (string | undefined)[] = new Array<string | undefined>(n).fill(undefined);
    for (const g of agreeing) {
      placement[g.index] = g.b.name;
      Buffer.concat(g.h.checksums).copy(sums, g.index * segs * 8);
    }
    const free = backends.map((b) => b.name).filter((name) => !placement.includes(name));
    const row: PackRow = {
      k: first.k,
      m: first.m,
      shardSize: first.shardSize,
      packLength: first.packLength,
      placement: placement.map((p, i) => p ?? free.shift() ?? backends[i % backends.length].name),
      stored: agreeing.map((g) => g.index).sort((a, b) => a - b),
      sums,
      created: Date.now(),
    };
    packs.set(packId, row);
  });
  return { packs, problems, unreachable: listings.failed };
}

async function readShardHeader(b: Backend, packId: string, index: number, call?: CallOptions) {
  const key = shardKey(packId, index);
  const fixed = await b.get(key, { offset: 0, length: 64 }, call);
  if (fixed.length < 64) throw new Error('shorter than a shard header');
  const size = shardHeaderSize(fixed.readUInt32LE(8));
  if (size > 64 + 8 * 65536) throw new Error('shard header claims an impossible shard size');
  const whole = size === 64 ? fixed : await b.get(key, { offset: 0, length: size }, call);
  return decodeShardHeader(whole);
}

export interface RebuiltIndex extends ScannedPacks {
  locs: Map<string, BlockLoc>;
}

/**
 * The whole index from the packs themselves: scanPacks, then each pack's trailer (its tail, read
 * from any k shards, checked against the segment checksums and authenticated under the `pack`
 * subkey). Packs whose trailer cannot be read are named in `problems`.
 */
export async function rebuildIndexFromTrailers(
  backends: readonly Backend[],
  keys: { pack: Buffer },
  o: { call?: CallOptions; scanned?: ScannedPacks; onPack?: (done: number, total: number) => void } = {},
): Promise<RebuiltIndex> {
  const scanned = o.scanned ?? (await scanPacks(backends, o.call));
  const reader = new ShardReader(new Map(backends.map((b) => [b.name, b])));
  const locs = new Map<string, BlockLoc>();
  const problems = [...scanned.problems];
  let done = 0;
  const total = scanned.packs.size;
  await mapLimited([...scanned.packs], 8, async ([packId, row]) => {
    try {
      const L = row.packLength;
      if (L < 12) throw new Error('shorter than a pack footer');
      const footer = (await reader.readBlock({ pack: packId, offset: L - 12, length: 12 }, row, { checked: true })).encoded;
      const sealedLength = footer.readUInt32LE(0);
      if (sealedLength + 12 > L) throw new Error('its footer names a trailer longer than the pack');
      const tail = await reader.readBlock({ pack: packId, offset: L - 12 - sealedLength, length: sealedLength + 12 }, row, {
        checked: true,
      });
      for (const e of readPackTrailer(keys.pack, packId, Buffer.from(tail.encoded))) {
        if (e.offset + e.length > L - 12 - sealedLength) throw new Error('its trailer names a block beyond the pack');
        locs.set(e.id.toString('hex'), { pack: packId, offset: e.offset, length: e.length });
      }
    } catch (e) {
      problems.push(`pack ${packId}: trailer unreadable: ${(e as Error).message}`);
      scanned.packs.delete(packId);
    }
    o.onPack?.(++done, total);
  });
  return { ...scanned, problems, locs };
}

/** fn over items, at most `limit` at once, results in order. */
async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
