/**
 * Errors of the layers below the filesystem (blocks, shards, packs) carry a kind: what went wrong
 * with the data, not how to report it. The kind survives the boundaries an error crosses (a codec
 * worker's postMessage through toWire/fromWire, the addon through CodecPool) so that callers test
 * `kind` or `instanceof`, never a message or an errno string. mount/errno.ts maps kinds to errnos
 * at the FUSE edge, in one place; src/fs's FsError carries POSIX names of its own.
 *
 * Bottom layer: imports nothing from src/.
 */

export type ErrorKind =
  /** Stored bytes fail their checks: AEAD tag, id hash, segment checksum, truncated, unknown format. */
  | 'corrupt'
  /** What should exist does not: a block neither in the local tier nor in any pack. */
  | 'missing'
  /** It exists but cannot be read now: backends down or not configured, too few shards to rebuild. */
  | 'unavailable'
  /** The disk it was to be written to is full. */
  | 'no-space';

export const ERROR_KINDS: readonly ErrorKind[] = ['corrupt', 'missing', 'unavailable', 'no-space'];

export class IsgError extends Error {
  readonly kind: ErrorKind;
  /** The system error code it stands for, when it came from one (ENOSPC for a full disk). */
  declare readonly code?: string;

  constructor(kind: ErrorKind, message: string, opts: { code?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.kind = kind;
    if (opts.code !== undefined) this.code = opts.code;
  }
}

/** The kind of any error: an IsgError's own; a system error's where it has one (ENOSPC); else undefined. */
export function kindOf(e: unknown): ErrorKind | undefined {
  if (e instanceof IsgError) return e.kind;
  return (e as { code?: unknown } | null)?.code === 'ENOSPC' ? 'no-space' : undefined;
}

export function isKind(e: unknown, kind: ErrorKind): boolean {
  return kindOf(e) === kind;
}

/** An error as plain data, for postMessage. `fields`: the error class's own data (a block id). */
export interface WireError {
  message: string;
  name?: string;
  kind?: ErrorKind;
  /** A system error's code (ENOENT, EISDIR, ...). */
  code?: string;
  fields?: Record<string, string | number | boolean>;
}

type ErrorClass = abstract new (...args: never[]) => IsgError;
const classes = new Map<string, ErrorClass>();

/**
 * Lets fromWire give back instances of this IsgError subclass. Call it where the class is defined:
 * every thread that receives such errors imports that module.
 */
export function registerErrorClass(c: ErrorClass): void {
  classes.set(c.name, c);
}

const BUILT_IN = new Set(['name', 'message', 'stack', 'cause', 'kind', 'code']);

export function toWire(e: unknown): WireError {
  const err = e as (Error & { code?: unknown }) | null | undefined;
  const w: WireError = { message: err instanceof Error ? err.message : String(e) };
  if (err instanceof Error) w.name = err.name;
  const kind = kindOf(e);
  if (kind) w.kind = kind;
  if (typeof err?.code === 'string') w.code = err.code;
  if (e instanceof IsgError) {
    for (const [k, v] of Object.entries(e)) {
      if (!BUILT_IN.has(k) && (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')) (w.fields ??= {})[k] = v;
    }
  }
  return w;
}

/**
 * The error again: with a kind, an IsgError of the registered class of its name (else IsgError
 * itself), its fields restored; without, an Error with the code and name it had.
 */
export function fromWire(w: WireError): Error {
  if (!w.kind) return Object.assign(new Error(w.message), { code: w.code, name: w.name ?? 'Error' });
  const e = new IsgError(w.kind, w.message, { code: w.code });
  const cls = w.name === undefined ? undefined : classes.get(w.name);
  if (cls) {
    Object.setPrototypeOf(e, cls.prototype);
    e.name = cls.name;
  }
  if (w.fields) Object.assign(e, w.fields);
  return e;
}
