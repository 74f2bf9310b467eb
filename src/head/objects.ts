/**
 * Object keys of what every backend holds besides pack shards (docs/formats.md "On the
 * backends"): the format record, the key envelope, heads and writer leases.
 *
 * Decisions (why):
 * - Everything lives under `isgfs/`, a first segment shard keys (`shards/xx/...`, src/pack/format.ts)
 *   never have, so the two can never collide and a listing of `shards/` never meets these.
 * - No key is both an object and a "directory" of other keys (the local backend cannot hold
 *   both): `isgfs/config` and `isgfs/key` are objects, `isgfs/heads/` and `isgfs/leases/` prefixes.
 * - Small objects, written whole to every backend (not erasure-coded): any one backend that
 *   survives has them.
 */
import { Backend, CallOptions, isBackendError } from '../backend/backend';

/** The format record: the repository's `config` without credentials (JSON). */
export const FORMAT_RECORD_KEY = 'isgfs/config';
/** The key envelope: the password-wrapped master key (JSON, the key file's format). */
export const KEY_ENVELOPE_KEY = 'isgfs/key';
/** Heads: `isgfs/heads/<seq, 16 hex digits>-<first 8 bytes of the head's hash, 16 hex digits>`. */
export const HEADS_PREFIX = 'isgfs/heads/';
/** Writer leases: `isgfs/leases/<holder id, 32 hex digits>` (JSON). */
export const LEASES_PREFIX = 'isgfs/leases/';

/** The outcome of one call on each of several backends. */
export interface PerBackend<T> {
  ok: { backend: string; value: T }[];
  failed: { backend: string; error: Error }[];
}

/** Runs fn on every backend at once; a failure of one does not stop the others. */
export async function onEveryBackend<T>(backends: readonly Backend[], fn: (b: Backend) => Promise<T>): Promise<PerBackend<T>> {
  const out: PerBackend<T> = { ok: [], failed: [] };
  const results = await Promise.allSettled(backends.map((b) => fn(b)));
  results.forEach((r, i) => {
    const backend = backends[i].name;
    if (r.status === 'fulfilled') out.ok.push({ backend, value: r.value });
    else out.failed.push({ backend, error: r.reason instanceof Error ? r.reason : new Error(String(r.reason)) });
  });
  return out;
}

/** More than half of `n` backends: two such sets always share a backend. */
export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/** An object larger than its kind can be. */
export class OversizeObjectError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OversizeObjectError';
  }
}

/**
 * A small object, whole, or null when it is absent. Refused (OversizeObjectError naming the
 * backend and key) when it is larger than `maxBytes`: a damaged or hostile object must not make a reader
 * allocate without bound.
 */
export async function getSmallObject(b: Backend, key: string, maxBytes: number, opts?: CallOptions): Promise<Buffer | null> {
  const info = await b.stat(key, opts);
  if (!info) return null;
  if (info.size > maxBytes) throw new OversizeObjectError(`${b.name}: ${key} is ${info.size} bytes, more than it can be (${maxBytes})`);
  try {
    // A range caps what a reader takes even if the object grew since the stat.
    const data = await b.get(key, { offset: 0, length: maxBytes + 1 }, opts);
    if (data.length > maxBytes) throw new OversizeObjectError(`${b.name}: ${key} is more than ${maxBytes} bytes`);
    return data;
  } catch (e) {
    if (isBackendError(e, 'not-found')) return null; // deleted since the stat
    throw e;
  }
}
