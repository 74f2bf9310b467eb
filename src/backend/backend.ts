/**
 * The storage backend contract: opaque objects under opaque keys. Nothing here knows of
 * packs, shards or encryption keys.
 *
 * Decisions (why):
 * - One error class with a `kind` instead of per-cause classes: the layers above only need to
 *   decide "retry / give up / object missing / fix your credentials", and a kind survives
 *   wrapping (resilient, future caching layers) without instanceof chains.
 * - Key rules are the same for every backend (checkKey), so a key that works on one backend
 *   works on all of them and shards can move between backends freely. The rules are the
 *   intersection of what S3 (<= 1024 UTF-8 bytes) and a POSIX directory tree can hold.
 * - `list` yields keys in ascending UTF-8 byte order (compareKeys), which S3 does natively;
 *   the resilient wrapper relies on it to resume an interrupted listing without duplicates.
 * - Ranged `get` returns the intersection of the range with the object: a range running past
 *   the end is cut short, a range starting at or after the end gives an empty buffer. The
 *   pack layer asks for ranges it knows to exist; this rule only keeps backends uniform.
 * - Cancellation follows the web convention: when `opts.signal` aborts, the call rejects with
 *   `signal.reason` (not a BackendError), so a caller's own cancellation is never mistaken for
 *   a backend failure.
 */
import type { ByteRange } from '../util/range';

export type { ByteRange };

export type Tier = 'hot' | 'warm' | 'cold';
export const TIERS: readonly Tier[] = ['hot', 'warm', 'cold'];

export interface ObjectInfo {
  key: string;
  size: number;
}

export interface CallOptions {
  signal?: AbortSignal;
  /**
   * Tries at most this many times (for retrying wrappers): a reader that can turn to other shards
   * asks for 1 rather than wait out a backoff on a backend that is gone.
   */
  attempts?: number;
  /**
   * For wrappers with a fail-fast gate (resilient): one attempt that goes through even while the
   * backend cools down as unhealthy, and whose outcome does not count for health (it is not the
   * probe). A reader that is short of shards asks this of the backends it has left: one that came
   * back during its cool-down must not make a readable block unreadable.
   */
  bypassGate?: boolean;
}

export interface Backend {
  /** The user's name for it, e.g. "disk1". */
  readonly name: string;
  /** Registry name of its type: "local", "s3". */
  readonly type: string;
  readonly tier: Tier;
  /** Atomic: readers see the whole new object or the old one/none, never a part. */
  put(key: string, data: Buffer, opts?: CallOptions): Promise<void>;
  /** BackendError kind 'not-found' if absent. See the range rule above. */
  get(key: string, range?: ByteRange, opts?: CallOptions): Promise<Buffer>;
  /** null if absent. */
  stat(key: string, opts?: CallOptions): Promise<ObjectInfo | null>;
  /** Deleting an absent key is fine. */
  delete(key: string, opts?: CallOptions): Promise<void>;
  /** Every object whose key starts with `prefix`, in ascending compareKeys order. */
  list(prefix: string, opts?: CallOptions): AsyncIterable<ObjectInfo>;
  close(): Promise<void>;
  /** For `isg status`: where it stores (path, endpoint, bucket); never credentials. */
  describe(): Record<string, unknown>;
  /**
   * Optional, for backends that keep each object as a plain file on this machine: the file of
   * `key`, which a reader may open and read itself (to read and decode a block in one native
   * step). A reader that fails there reads again through `get`, which reports the failure.
   */
  localFile?(key: string): string | undefined;
}

export type BackendErrorKind = 'transient' | 'rate-limited' | 'not-found' | 'unauthorised' | 'permanent';

export class BackendError extends Error {
  readonly kind: BackendErrorKind;
  /** Name of the backend that failed. */
  readonly backend: string;
  /** For 'rate-limited' (and the fail-fast of an unhealthy backend): wait at least this long. */
  readonly retryAfterMs?: number;

  constructor(kind: BackendErrorKind, message: string, backend: string, opts: { retryAfterMs?: number; cause?: unknown } = {}) {
    super(`${backend}: ${message}`, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'BackendError';
    this.kind = kind;
    this.backend = backend;
    if (opts.retryAfterMs !== undefined) this.retryAfterMs = opts.retryAfterMs;
  }

  /** Worth trying again later: 'transient' and 'rate-limited'. */
  get retryable(): boolean {
    return this.kind === 'transient' || this.kind === 'rate-limited';
  }
}

export function isBackendError(e: unknown, kind?: BackendErrorKind): e is BackendError {
  return e instanceof BackendError && (kind === undefined || e.kind === kind);
}

/** Largest key, in UTF-8 bytes (S3's limit). */
export const MAX_KEY_BYTES = 1024;

/**
 * Throws a 'permanent' BackendError unless `key` is valid on every backend: non-empty, at most
 * 1024 UTF-8 bytes, '/'-separated segments that are non-empty and not '.' or '..', no leading
 * '/', no NUL or backslash, no control characters.
 */
export function checkKey(key: string, backend: string): void {
  const bad = (why: string) => new BackendError('permanent', `invalid key ${JSON.stringify(key)}: ${why}`, backend);
  if (typeof key !== 'string' || key.length === 0) throw bad('empty');
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) throw bad(`longer than ${MAX_KEY_BYTES} bytes`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(key)) throw bad('control character or backslash');
  if (key.startsWith('/')) throw bad('absolute');
  for (const seg of key.split('/')) {
    if (seg === '') throw bad('empty path segment');
    if (seg === '.' || seg === '..') throw bad(`'${seg}' segment`);
  }
}

/**
 * Throws unless `prefix` is a usable list prefix: '' or the beginning of a valid key (every
 * complete segment valid; the last, partial segment may be anything a key segment may start with).
 */
export function checkPrefix(prefix: string, backend: string): void {
  if (prefix === '') return;
  const bad = (why: string) => new BackendError('permanent', `invalid prefix ${JSON.stringify(prefix)}: ${why}`, backend);
  if (typeof prefix !== 'string') throw bad('not a string');
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(prefix)) throw bad('control character or backslash');
  if (prefix.startsWith('/')) throw bad('absolute');
  const segs = prefix.split('/');
  segs.pop(); // the partial last segment ('' when the prefix ends with '/')
  for (const seg of segs) {
    if (seg === '') throw bad('empty path segment');
    if (seg === '.' || seg === '..') throw bad(`'${seg}' segment`);
  }
}

/** Throws a 'permanent' BackendError unless the range is two non-negative safe integers. */
export function checkRange(range: ByteRange, backend: string): void {
  const ok = (n: unknown) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
  if (!ok(range.offset) || !ok(range.length)) {
    throw new BackendError('permanent', `invalid range ${JSON.stringify(range)}`, backend);
  }
}

/** Ascending UTF-8 byte order, the order of S3 listings. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Rejects with the signal's reason if it has aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason;
}
