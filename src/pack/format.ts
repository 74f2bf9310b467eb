/**
 * Pack and shard formats (docs/formats.md).
 *
 * Pack: encoded blocks end to end, then an encrypted trailer listing (id, offset, length) of each
 * block, then a 12-byte footer (trailer length u32 LE, magic "ISGP", version u8, 3 zero bytes).
 * A pack describes itself, so the block index can be rebuilt from the backends alone.
 *
 * Shards: the pack is padded to k * shardSize and cut into k data shards; m parity shards are
 * computed by the Reed-Solomon code of src/native. Each shard object is a header followed by the
 * shard bytes. The header carries a checksum per 64 KiB segment, so a ranged read of a shard is
 * verified segment by segment: a corrupt shard is recognised before it poisons a reconstruction.
 */
import { CipherGCM, createCipheriv, createDecipheriv, DecipherGCM, randomBytes } from 'node:crypto';
import { segmentChecksums, shardChecksum } from '../native';
import { IsgError, registerErrorClass } from '../errors';

export const PACK_MAGIC = Buffer.from('ISGP');
export const SHARD_MAGIC = Buffer.from('ISGS');
export const PACK_FORMAT = 1;
export const SEGMENT = 64 * 1024;
const FOOTER = 12;
const FIXED_HEADER = 64;
const ALIGN = 64;

export interface PackEntry {
  id: Buffer;
  offset: number;
  length: number;
}

/** A shard or pack whose bytes fail their checks (kind 'corrupt'). */
export class ShardCorruptError extends IsgError {
  constructor(message: string) {
    super('corrupt', message);
  }
}
registerErrorClass(ShardCorruptError);

export function newPackId(): string {
  return randomBytes(16).toString('hex');
}

/** Object key of shard i of a pack: reveals nothing but the pack id and the shard number. */
export function shardKey(packId: string, index: number): string {
  return `shards/${packId.slice(0, 2)}/${packId}.${index}`;
}

export function parseShardKey(key: string): { packId: string; index: number } | null {
  const m = /^shards\/[0-9a-f]{2}\/([0-9a-f]{32})\.(\d+)$/.exec(key);
  return m ? { packId: m[1], index: Number(m[2]) } : null;
}

function trailerAad(packId: string): Buffer {
  return Buffer.concat([PACK_MAGIC, Buffer.from(packId, 'hex')]);
}

/** Lays blocks end to end and appends the encrypted trailer and the footer. */
export function buildPack(
  packKey: Buffer,
  packId: string,
  blocks: { id: Buffer; encoded: Buffer }[],
): { bytes: Buffer; entries: PackEntry[] } {
  const entries: PackEntry[] = [];
  let offset = 0;
  for (const b of blocks) {
    entries.push({ id: b.id, offset, length: b.encoded.length });
    offset += b.encoded.length;
  }
  const list = Buffer.alloc(4 + entries.length * 44);
  list.writeUInt32LE(entries.length, 0);
  entries.forEach((e, i) => {
    const p = 4 + i * 44;
    e.id.copy(list, p);
    list.writeUInt32LE(e.offset, p + 32);
    list.writeUInt32LE(Math.floor(e.offset / 2 ** 32), p + 36);
    list.writeUInt32LE(e.length, p + 40);
  });
  const nonce = randomBytes(12);
  const c: CipherGCM = createCipheriv('aes-256-gcm', packKey, nonce);
  c.setAAD(trailerAad(packId));
  const sealed = Buffer.concat([nonce, c.update(list), c.final(), c.getAuthTag()]);
  const footer = Buffer.alloc(FOOTER);
  footer.writeUInt32LE(sealed.length, 0);
  PACK_MAGIC.copy(footer, 4);
  footer[8] = PACK_FORMAT;
  return { bytes: Buffer.concat([...blocks.map((b) => b.encoded), sealed, footer]), entries };
}

/** Reads the trailer of a whole pack (rebuilding the index from the backends). */
export function readPackTrailer(packKey: Buffer, packId: string, pack: Buffer): PackEntry[] {
  if (pack.length < FOOTER || !pack.subarray(pack.length - 8, pack.length - 4).equals(PACK_MAGIC))
    throw new ShardCorruptError(`pack ${packId}: no footer`);
  if (pack[pack.length - 4] !== PACK_FORMAT) throw new ShardCorruptError(`pack ${packId}: format ${pack[pack.length - 4]} unknown`);
  const len = pack.readUInt32LE(pack.length - FOOTER);
  const sealed = pack.subarray(pack.length - FOOTER - len, pack.length - FOOTER);
  const d: DecipherGCM = createDecipheriv('aes-256-gcm', packKey, sealed.subarray(0, 12));
  d.setAAD(trailerAad(packId));
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  let list: Buffer;
  try {
    list = Buffer.concat([d.update(sealed.subarray(12, sealed.length - 16)), d.final()]);
  } catch {
    throw new ShardCorruptError(`pack ${packId}: trailer does not authenticate`);
  }
  const n = list.readUInt32LE(0);
  const out: PackEntry[] = [];
  for (let i = 0; i < n; i++) {
    const p = 4 + i * 44;
    out.push({
      id: Buffer.from(list.subarray(p, p + 32)),
      offset: list.readUInt32LE(p + 32) + list.readUInt32LE(p + 36) * 2 ** 32,
      length: list.readUInt32LE(p + 40),
    });
  }
  return out;
}

export interface ShardLayout {
  k: number;
  m: number;
  packLength: number;
  shardSize: number;
}

export function layoutFor(packLength: number, k: number, m: number): ShardLayout {
  const shardSize = Math.max(ALIGN, Math.ceil(packLength / k / ALIGN) * ALIGN);
  return { k, m, packLength, shardSize };
}

/** The k data shards of a pack (views into one zero-padded buffer). */
export function splitPack(pack: Buffer, layout: ShardLayout): Buffer[] {
  const padded = Buffer.alloc(layout.k * layout.shardSize);
  pack.copy(padded);
  return Array.from({ length: layout.k }, (_, i) => padded.subarray(i * layout.shardSize, (i + 1) * layout.shardSize));
}

export function segmentsOf(shardSize: number): number {
  return Math.ceil(shardSize / SEGMENT);
}

export function shardHeaderSize(shardSize: number): number {
  return FIXED_HEADER + 8 * segmentsOf(shardSize);
}

/** Header + shard bytes: the object stored on a backend. */
export function encodeShard(packId: string, index: number, layout: ShardLayout, shard: Buffer): Buffer {
  const segs = segmentsOf(layout.shardSize);
  const h = Buffer.alloc(shardHeaderSize(layout.shardSize));
  SHARD_MAGIC.copy(h, 0);
  h[4] = PACK_FORMAT;
  h[5] = layout.k;
  h[6] = layout.m;
  h[7] = index;
  h.writeUInt32LE(layout.shardSize, 8);
  h.writeUInt32LE(segs, 12);
  h.writeUInt32LE(layout.packLength % 2 ** 32, 16);
  h.writeUInt32LE(Math.floor(layout.packLength / 2 ** 32), 20);
  h.writeUInt32LE(SEGMENT, 24);
  Buffer.from(packId, 'hex').copy(h, 32);
  for (let s = 0; s < segs; s++)
    shardChecksum(shard.subarray(s * SEGMENT, Math.min(shard.length, (s + 1) * SEGMENT))).copy(h, FIXED_HEADER + 8 * s);
  shardChecksum(Buffer.concat([h.subarray(0, 48), h.subarray(FIXED_HEADER)])).copy(h, 48);
  return Buffer.concat([h, shard]);
}

export interface ShardHeader extends ShardLayout {
  packId: string;
  index: number;
  checksums: Buffer[];
}

export function decodeShardHeader(h: Buffer): ShardHeader {
  if (h.length < FIXED_HEADER || !h.subarray(0, 4).equals(SHARD_MAGIC)) throw new ShardCorruptError('not a shard header');
  if (h[4] !== PACK_FORMAT) throw new ShardCorruptError(`shard format ${h[4]} unknown`);
  const shardSize = h.readUInt32LE(8);
  const segs = h.readUInt32LE(12);
  if (segs !== segmentsOf(shardSize) || h.length < FIXED_HEADER + 8 * segs) throw new ShardCorruptError('shard header truncated');
  const want = shardChecksum(Buffer.concat([h.subarray(0, 48), h.subarray(FIXED_HEADER, FIXED_HEADER + 8 * segs)]));
  if (!want.equals(h.subarray(48, 56))) throw new ShardCorruptError('shard header checksum mismatch');
  return {
    k: h[5],
    m: h[6],
    index: h[7],
    shardSize,
    packLength: h.readUInt32LE(16) + h.readUInt32LE(20) * 2 ** 32,
    packId: h.subarray(32, 48).toString('hex'),
    checksums: Array.from({ length: segs }, (_, s) => h.subarray(FIXED_HEADER + 8 * s, FIXED_HEADER + 8 * s + 8)),
  };
}

/** Segment-aligned span of shard bytes covering [from, to). */
export function segmentSpan(from: number, to: number, shardSize: number): { start: number; end: number } {
  return { start: Math.floor(from / SEGMENT) * SEGMENT, end: Math.min(shardSize, Math.ceil(to / SEGMENT) * SEGMENT) };
}

/**
 * Checks the segments of `data` (shard bytes from segment-aligned `start`) against `checksums`,
 * the shard's segment checksums one after another (8 bytes each).
 */
export async function verifySegments(data: Buffer, start: number, checksums: Buffer): Promise<boolean> {
  const first = (start / SEGMENT) * 8;
  const got = await segmentChecksums(data, SEGMENT);
  return got.equals(checksums.subarray(first, first + got.length));
}

/** Where the bytes [offset, offset + length) of a pack lie: (data shard, range in that shard) pieces. */
export function piecesOf(offset: number, length: number, shardSize: number): { shard: number; from: number; to: number; at: number }[] {
  const out: { shard: number; from: number; to: number; at: number }[] = [];
  let pos = offset;
  const end = offset + length;
  while (pos < end) {
    const shard = Math.floor(pos / shardSize);
    const from = pos - shard * shardSize;
    const to = Math.min(shardSize, from + (end - pos));
    out.push({ shard, from, to, at: pos - offset });
    pos += to - from;
  }
  return out;
}
