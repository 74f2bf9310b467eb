/** Argument checks shared by the addon wrapper and the fallback, so both fail with the same messages. */
import type { ByteRange } from './types';

export function checkKM(k: number, m: number): void {
  if (!Number.isInteger(k) || !Number.isInteger(m) || k < 1 || m < 0 || k + m > 255) {
    throw new RangeError(`Reed-Solomon needs integers k >= 1, m >= 0, k + m <= 255 (got k=${k}, m=${m})`);
  }
}

function isBytes(b: unknown): b is Buffer {
  return b instanceof Uint8Array;
}

/** Checks an encode call; returns the shard length. */
export function checkEncode(k: number, m: number, data: Buffer[]): number {
  checkKM(k, m);
  if (!Array.isArray(data) || data.length !== k)
    throw new RangeError(`rsEncode needs exactly k=${k} data shards (got ${Array.isArray(data) ? data.length : typeof data})`);
  if (!data.every(isBytes)) throw new TypeError('rsEncode: every data shard must be a Buffer');
  const len = data[0].length;
  const bad = data.findIndex((d) => d.length !== len);
  if (bad >= 0)
    throw new RangeError(`rsEncode: data shards differ in length (shard 0 has ${len} bytes, shard ${bad} has ${data[bad].length})`);
  return len;
}

export interface ReconstructPlan {
  shardLen: number;
  offset: number;
  length: number;
  /** the first k present shards, ascending: the sources of the code */
  sources: number[];
  missing: number[];
}

export function checkReconstruct(k: number, m: number, shards: (Buffer | null)[], range?: ByteRange): ReconstructPlan {
  checkKM(k, m);
  const n = k + m;
  if (!Array.isArray(shards) || shards.length !== n)
    throw new RangeError(
      `rsReconstruct needs k + m = ${n} entries, null for a missing shard (got ${Array.isArray(shards) ? shards.length : typeof shards})`,
    );
  const present: number[] = [];
  const missing: number[] = [];
  shards.forEach((s, i) => {
    if (s === null || s === undefined) missing.push(i);
    else if (!isBytes(s)) throw new TypeError(`rsReconstruct: shard ${i} must be a Buffer or null`);
    else present.push(i);
  });
  if (missing.length > m)
    throw new RangeError(`rsReconstruct: ${missing.length} of ${n} shards missing, but k=${k} + m=${m} can rebuild at most ${m}`);
  const shardLen = (shards[present[0]] as Buffer).length;
  const bad = present.find((i) => (shards[i] as Buffer).length !== shardLen);
  if (bad !== undefined)
    throw new RangeError(
      `rsReconstruct: shards differ in length (shard ${present[0]} has ${shardLen} bytes, shard ${bad} has ${(shards[bad] as Buffer).length})`,
    );
  let offset = 0;
  let length = shardLen;
  if (range) {
    ({ offset, length } = range);
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > shardLen) {
      throw new RangeError(`rsReconstruct: range ${offset}+${length} is not within the ${shardLen}-byte shards`);
    }
  }
  return { shardLen, offset, length, sources: present.slice(0, k), missing };
}

/**
 * rsReconstruct around its computation: checks the call, slices the present shards to the range,
 * and when shards are missing, gives `compute` the plan and one output buffer per missing shard
 * (opts.into's when given), which then stand in the result for them.
 */
export async function reconstructWith(
  k: number,
  m: number,
  shards: (Buffer | null)[],
  range: ByteRange | undefined,
  into: Buffer[] | undefined,
  compute: (plan: ReconstructPlan, outs: Buffer[]) => Promise<void>,
): Promise<Buffer[]> {
  const plan = checkReconstruct(k, m, shards, range);
  const { offset, length } = plan;
  const result = shards.map((s) => (s ? s.subarray(offset, offset + length) : null));
  if (plan.missing.length === 0) return result as Buffer[];
  const outs = outputBuffers(plan.missing.length, length, into, 'rsReconstruct');
  await compute(plan, outs);
  plan.missing.forEach((i, r) => (result[i] = outs[r]));
  return result as Buffer[];
}

/** `count` output buffers of `len` bytes: views of opts.into when given (checked), else new ones. */
export function outputBuffers(count: number, len: number, into: Buffer[] | undefined, what: string): Buffer[] {
  if (!into) return Array.from({ length: count }, () => Buffer.allocUnsafe(len));
  if (!Array.isArray(into) || into.length !== count)
    throw new RangeError(`${what}: opts.into needs ${count} buffers (got ${Array.isArray(into) ? into.length : typeof into})`);
  return into.map((b, i) => {
    if (!(b instanceof Uint8Array) || b.length < len)
      throw new RangeError(`${what}: opts.into[${i}] must be a Buffer of at least ${len} bytes`);
    return Buffer.from(b.buffer, b.byteOffset, len);
  });
}

/** `checksum` of each `segment`-byte piece of data (the last may be shorter), 8 bytes each, concatenated. */
export function checksumEach(checksum: (piece: Uint8Array) => Buffer, data: Uint8Array, segment: number): Buffer {
  const out = Buffer.allocUnsafe(8 * Math.ceil(data.length / segment));
  for (let at = 0; at < data.length; at += segment) checksum(data.subarray(at, at + segment)).copy(out, (at / segment) * 8);
  return out;
}
