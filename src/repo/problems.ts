/**
 * Failures of the background work of a mounted repository (upload, sync, repair, sweep): nobody
 * waits on that work, so its failures are logged at warn level, rate-limited, and kept for
 * `isg status` (lastError, uploadStalledSince), which asks the daemon over its control socket.
 *
 * Kept in memory only: they describe the daemon that is running. A repository that is not
 * mounted runs no background work, so its status reports null for both (the log keeps history).
 */
import { log } from '../log';

export type BackgroundStage = 'upload' | 'sync' | 'repair' | 'sweep' | 'lease' | 'publish';

export interface LastError {
  /** ISO time of the failure. */
  time: string;
  stage: BackgroundStage;
  message: string;
}

/** What `isg status` shows of the daemon's background work. */
export interface BackgroundStatus {
  lastError: LastError | null;
  /**
   * ISO time since when the upload queue has not shrunk while an upload attempt failed: set by
   * the first failed attempt after the last one that packed something, cleared by the next pack
   * stored (or an empty queue).
   */
  uploadStalledSince: string | null;
}

/** The same stage and message is logged at most once per window; repeats are counted. */
export const LOG_WINDOW_MS = 60_000;

/**
 * What makes two failures "the same message": the text without what differs from one attempt to
 * the next (file paths, ids of 8 or more hex digits, counts).
 */
export function sameKind(stage: string, message: string): string {
  const text = message
    .replace(/(?:\/[^\s'",:;()]*)+/g, '<path>')
    .replace(/[0-9a-f]{8,}/gi, '#')
    .replace(/\d+/g, '#');
  return `${stage}: ${text}`;
}

export class BackgroundProblems {
  private last: LastError | null = null;
  private stalledSince: number | null = null;
  /** Per kind of message: when it was last logged, and the repeats not logged since. */
  private readonly logged = new Map<string, { at: number; suppressed: number }>();

  constructor(private readonly o: { warn?: (line: string) => void; now?: () => number; windowMs?: number } = {}) {}

  private now(): number {
    return this.o.now?.() ?? Date.now();
  }

  /** A background task of `stage` failed. */
  failed(stage: BackgroundStage, e: unknown): void {
    const message = e instanceof Error ? e.message : String(e);
    const now = this.now();
    this.last = { time: new Date(now).toISOString(), stage, message };
    if (stage === 'upload') this.stalledSince ??= now;
    const window = this.o.windowMs ?? LOG_WINDOW_MS;
    for (const [k, v] of this.logged) if (now - v.at >= window && v.suppressed === 0) this.logged.delete(k); // bounded
    const key = sameKind(stage, message);
    const seen = this.logged.get(key);
    if (seen && now - seen.at < window) {
      seen.suppressed++;
      return;
    }
    const repeats = seen?.suppressed ? ` (${seen.suppressed} more like it in the last ${Math.round((now - seen.at) / 1000)} s)` : '';
    this.logged.set(key, { at: now, suppressed: 0 });
    (this.o.warn ?? ((l: string) => log.warn(l)))(`background ${stage} failed: ${message}${repeats}`);
  }

  /** The upload queue shrank (a pack was stored) or is empty: uploads are not stalled. */
  uploadProgressed(): void {
    this.stalledSince = null;
  }

  status(): BackgroundStatus {
    return {
      lastError: this.last && { ...this.last },
      uploadStalledSince: this.stalledSince === null ? null : new Date(this.stalledSince).toISOString(),
    };
  }
}
