/**
 * The write buffer's global budget: bytes written and not yet committed, counted over every file
 * (the layer being flushed included). A write takes room before its bytes go in; when the budget
 * is full it waits for flushes to give room back (OpenFiles starts them), within a bound.
 */
import { kindOf } from '../errors';
import { FsError, fsError } from './errors';

/** Default budget (`--write-buffer`). */
export const DEFAULT_WRITE_BUFFER = 256 * 1024 * 1024;

/** Longest a write or close waits for room before it fails with EIO (flushes that fail end it sooner). */
export const ROOM_WAIT_MS = 60_000;

/** The largest write FUSE sends (max_write). */
const FULL_MARGIN = 1024 * 1024;

export class WriteBudget {
  private used = 0;
  private waiters: (() => void)[] = [];

  constructor(readonly limit: number) {}

  /** Bytes buffered now, over all files. */
  get bytes(): number {
    return this.used;
  }

  /** Whether `bytes` more fit (a write larger than the whole budget fits an empty buffer). */
  fits(bytes: number): boolean {
    return this.used + bytes <= this.limit || this.used === 0;
  }

  /** No room for another write of FUSE's largest size, or a writer waits for room. */
  get full(): boolean {
    return this.used + FULL_MARGIN > this.limit || this.waiters.length > 0;
  }

  /** A file's buffered bytes changed by delta. Room given back wakes the waiters. */
  charge(delta: number): void {
    this.used += delta;
    if (delta < 0) this.notify();
  }

  /** Wakes the waiters (room given back, or a flush failed: they look again). */
  notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const wake of w) wake();
  }

  /** Resolves when woken (see notify) or after ms; false after ms. */
  changed(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const t = setTimeout(
        () => {
          this.waiters = this.waiters.filter((w) => w !== wake);
          resolve(false);
        },
        Math.max(0, ms),
      );
      const wake = () => {
        clearTimeout(t);
        resolve(true);
      };
      this.waiters.push(wake);
    });
  }
}

/**
 * What a write, close or fsync answers when buffered data could not be committed: ENOSPC for a
 * full disk, EIO for anything else (an unwritable local tier, a failed codec worker).
 */
export function writeError(e: unknown): FsError {
  if (e instanceof FsError) return e;
  const message = (e as Error)?.message ?? String(e);
  return fsError(kindOf(e) === 'no-space' ? 'ENOSPC' : 'EIO', message);
}
