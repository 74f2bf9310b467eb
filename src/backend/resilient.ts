/**
 * resilient(backend): retries, per-attempt timeouts, a concurrency limit and health tracking
 * (a circuit breaker) around any Backend.
 *
 * Decisions (why):
 * - Only 'transient' and 'rate-limited' are retried; 'not-found', 'unauthorised' and
 *   'permanent' are answers, and retrying them only delays the caller.
 * - Exponential backoff with full jitter (delay = random(0, min(max, base * 2^n))): many
 *   clients that failed together must not retry together. A server's Retry-After wins when it
 *   asks for longer (up to maxRetryAfterMs, so a broken header cannot park us for hours).
 * - The timeout is per attempt, not per call: a call that hangs is retried, and the caller's
 *   own signal bounds the whole call. The attempt is also raced against the timeout, so a
 *   backend that ignores its AbortSignal cannot hang us; its slot is released then (a slot per
 *   hung request would starve the backend for good once it recovers).
 * - Attempts on a big object get `bytesPerSecondFloor` of extra time per byte, so a 16 MiB
 *   put over a slow link is not killed by a timeout sized for small calls. (Whole-object gets
 *   do not know their size up front and get the base timeout.)
 * - Health counts consecutive failed attempts (only the retryable kinds: an answer such as
 *   not-found or access denied shows the backend is reachable and resets the count). After
 *   `unhealthyAfter` of them the backend is unhealthy: calls fail fast with a 'transient'
 *   error carrying the remaining cool-down as retryAfterMs, so the pack layer can read from
 *   other shards at once instead of waiting out retries. After the cool-down exactly one
 *   attempt (the probe) is let through; success makes the backend healthy, failure starts
 *   another cool-down. A retry loop stops as soon as the backend turns unhealthy.
 * - The caller's abort is not a backend failure: it rejects with the signal's reason, is not
 *   retried and does not count against health.
 * - Callers choose their retries per call (CallOptions), never by going around the wrapper:
 *   `attempts` caps the attempts of this call (a reader that can turn to another shard asks
 *   for 1); `bypassGate` makes one attempt past the fail-fast gate, which counts neither way for
 *   health (only the probe ends a cool-down), still under the timeout and concurrency limit.
 * - list resumes after the last key it yielded (listings are in compareKeys order) instead of
 *   starting over, so a long listing survives a hiccup without duplicates; progress resets the
 *   attempt count. If a backend was seen listing out of order, a failure is not resumed but
 *   thrown: resuming by key would lose keys.
 */
import { Backend, BackendError, ByteRange, CallOptions, compareKeys, ObjectInfo, throwIfAborted, Tier } from './backend';

export interface ResilienceOptions {
  /** Attempts per call, including the first. Default 5. */
  attempts?: number;
  /** Backoff base. Default 200 ms. */
  baseDelayMs?: number;
  /** Backoff cap. Default 10 s. */
  maxDelayMs?: number;
  /** Cap on a server's Retry-After. Default 60 s. */
  maxRetryAfterMs?: number;
  /** Per-attempt timeout. Default 30 s. */
  timeoutMs?: number;
  /** Extra time per byte moved when the size is known: size / floor seconds. Default 1 MiB/s. */
  bytesPerSecondFloor?: number;
  /** Calls in flight at once. Default 8. */
  concurrency?: number;
  /** Consecutive failed attempts that make the backend unhealthy. Default 5. */
  unhealthyAfter?: number;
  /** Fail-fast period before a probe. Default 15 s. */
  coolDownMs?: number;
}

export const RESILIENCE_DEFAULTS: Required<ResilienceOptions> = {
  attempts: 5,
  baseDelayMs: 200,
  maxDelayMs: 10_000,
  maxRetryAfterMs: 60_000,
  timeoutMs: 30_000,
  bytesPerSecondFloor: 1024 * 1024,
  concurrency: 8,
  unhealthyAfter: 5,
  coolDownMs: 15_000,
};

export interface BackendHealth {
  healthy: boolean;
  consecutiveFailures: number;
  lastError?: string;
}

export interface ResilientBackend extends Backend {
  health(): BackendHealth;
  /** The wrapped backend. */
  readonly inner: Backend;
}

export function resilient(backend: Backend, opts: ResilienceOptions = {}): ResilientBackend {
  return new Resilient(backend, { ...RESILIENCE_DEFAULTS, ...definedOnly(opts) });
}

function definedOnly(o: ResilienceOptions): ResilienceOptions {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as ResilienceOptions;
}

/** FIFO counting semaphore whose waiters can be aborted. */
class Semaphore {
  private waiters: Array<{ grant: () => void }> = [];
  private free: number;

  constructor(n: number) {
    this.free = n;
  }

  async acquire(signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    if (this.free > 0 && this.waiters.length === 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const waiter = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  release(): void {
    const w = this.waiters.shift();
    if (w) w.grant();
    else this.free++;
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

class Resilient implements ResilientBackend {
  readonly name: string;
  readonly type: string;
  readonly tier: Tier;
  private readonly sem: Semaphore;
  private failures = 0;
  private lastError?: string;
  private openUntil = 0;
  private probing = false;

  constructor(
    readonly inner: Backend,
    private readonly o: Required<ResilienceOptions>,
  ) {
    this.name = inner.name;
    this.type = inner.type;
    this.tier = inner.tier;
    this.sem = new Semaphore(o.concurrency);
  }

  health(): BackendHealth {
    const h: BackendHealth = { healthy: this.failures < this.o.unhealthyAfter, consecutiveFailures: this.failures };
    if (this.lastError !== undefined) h.lastError = this.lastError;
    return h;
  }

  describe(): Record<string, unknown> {
    return this.inner.describe();
  }

  localFile(key: string): string | undefined {
    return this.inner.localFile?.(key);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  put(key: string, data: Buffer, opts: CallOptions = {}): Promise<void> {
    return this.call((signal) => this.inner.put(key, data, { signal }), opts, data.length);
  }

  get(key: string, range?: ByteRange, opts: CallOptions = {}): Promise<Buffer> {
    return this.call((signal) => this.inner.get(key, range, { signal }), opts, range?.length ?? 0);
  }

  stat(key: string, opts: CallOptions = {}): Promise<ObjectInfo | null> {
    return this.call((signal) => this.inner.stat(key, { signal }), opts, 0);
  }

  delete(key: string, opts: CallOptions = {}): Promise<void> {
    return this.call((signal) => this.inner.delete(key, { signal }), opts, 0);
  }

  async *list(prefix: string, opts: CallOptions = {}): AsyncIterable<ObjectInfo> {
    const caller = opts.signal;
    let last: string | undefined; // last key yielded
    let resumeAfter: string | undefined; // in a resumed pass, skip keys up to this one
    let sorted = true; // every key so far came in ascending order
    let failed = 0; // failed attempts since the last progress
    for (;;) {
      // One pass over the inner listing; its signal ends the pass on timeout or caller abort.
      const pass = new AbortController();
      const onCallerAbort = () => pass.abort(caller?.reason);
      caller?.addEventListener('abort', onCallerAbort, { once: true });
      let it: AsyncIterator<ObjectInfo> | undefined;
      try {
        for (;;) {
          let r: IteratorResult<ObjectInfo>;
          try {
            r = await this.attempt(
              () => {
                it ??= this.inner.list(prefix, { signal: pass.signal })[Symbol.asyncIterator]();
                return it.next();
              },
              caller,
              0,
              pass,
            );
          } catch (e) {
            if (caller?.aborted) throw caller.reason;
            const err = this.asBackendError(e);
            // An unsorted listing cannot be resumed by key without losing or repeating keys.
            if (!err.retryable || !sorted || ++failed >= this.o.attempts || !this.admits()) throw err;
            await sleep(this.delay(failed, err), caller);
            resumeAfter = last;
            break; // start a new pass
          }
          if (r.done) return;
          const key = r.value.key;
          if (resumeAfter !== undefined && compareKeys(key, resumeAfter) <= 0) continue; // yielded before
          if (last !== undefined && compareKeys(key, last) <= 0) sorted = false;
          last = key;
          failed = 0;
          yield r.value;
        }
      } finally {
        caller?.removeEventListener('abort', onCallerAbort);
        pass.abort(new Error('list pass ended'));
        // Do not await: a hung iterator's return() could hang too.
        void it?.return?.()?.catch?.(() => undefined);
      }
    }
  }

  /**
   * Runs op with retries, timeout, the concurrency limit and health; the per-call options
   * (CallOptions) bound the attempts or let one attempt past the gate.
   */
  private async call<T>(op: (signal: AbortSignal) => Promise<T>, opts: CallOptions, bytes: number): Promise<T> {
    const caller = opts.signal;
    const bypass = opts.bypassGate ?? false;
    const attempts = bypass ? 1 : (opts.attempts ?? this.o.attempts);
    for (let attempt = 1; ; attempt++) {
      const ctl = new AbortController();
      const onCallerAbort = () => ctl.abort(caller?.reason);
      caller?.addEventListener('abort', onCallerAbort, { once: true });
      try {
        return await this.attempt(() => op(ctl.signal), caller, bytes, ctl, bypass);
      } catch (e) {
        if (caller?.aborted) throw caller.reason;
        const err = this.asBackendError(e);
        if (!err.retryable || attempt >= attempts || !this.admits()) throw err;
        await sleep(this.delay(attempt, err), caller);
      } finally {
        caller?.removeEventListener('abort', onCallerAbort);
      }
    }
  }

  /**
   * One attempt: health gate, semaphore, timeout (aborting `ctl`), outcome recorded for health.
   * `ctl` is aborted on timeout; the caller's abort must already be wired into it. With `bypass`,
   * no gate and no record: the attempt neither waits for a cool-down nor ends or extends one.
   */
  private async attempt<T>(
    run: () => Promise<T>,
    caller: AbortSignal | undefined,
    bytes: number,
    ctl: AbortController,
    bypass = false,
  ): Promise<T> {
    const probe = bypass ? false : this.gate();
    try {
      await this.sem.acquire(caller);
    } catch (e) {
      if (probe) this.probing = false;
      throw e;
    }
    const timeoutMs = this.o.timeoutMs + Math.ceil((bytes / this.o.bytesPerSecondFloor) * 1000);
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          timedOut = true;
          const reason = new BackendError('transient', `timed out after ${timeoutMs} ms`, this.name);
          ctl.abort(reason);
          reject(reason);
        }, timeoutMs);
      });
      const aborted = new Promise<never>((_, reject) => {
        onAbort = () => reject(ctl.signal.reason);
        if (ctl.signal.aborted) onAbort();
        else ctl.signal.addEventListener('abort', onAbort, { once: true });
      });
      timeout.catch(() => undefined);
      aborted.catch(() => undefined);
      const p = run();
      p.catch(() => undefined); // may settle after we gave up on it
      const result = await Promise.race([p, timeout, aborted]);
      if (!bypass) this.succeeded(probe);
      return result;
    } catch (e) {
      if (caller?.aborted && !timedOut) {
        if (probe) this.probing = false;
        throw caller.reason;
      }
      const err = timedOut
        ? new BackendError('transient', `timed out after ${timeoutMs} ms`, this.name, { cause: e })
        : this.asBackendError(e);
      if (bypass) throw err;
      if (err.retryable) this.failed(probe, err);
      else this.succeeded(probe, err); // the backend answered
      throw err;
    } finally {
      clearTimeout(timer);
      if (onAbort) ctl.signal.removeEventListener('abort', onAbort);
      this.sem.release();
    }
  }

  /**
   * Throws the fail-fast error if the backend is unhealthy and no probe may go now; true if
   * this attempt is the probe.
   */
  private gate(): boolean {
    if (this.failures < this.o.unhealthyAfter) return false;
    const now = Date.now();
    if (now >= this.openUntil && !this.probing) {
      this.probing = true;
      return true;
    }
    const wait = Math.max(0, this.openUntil - now);
    throw new BackendError(
      'transient',
      `unhealthy after ${this.failures} consecutive failures (last: ${this.lastError ?? '?'}); ${this.probing ? 'a probe is in flight' : `next probe in ${wait} ms`}`,
      this.name,
      { retryAfterMs: wait },
    );
  }

  /** Whether another attempt may go now (false once the backend is unhealthy). */
  private admits(): boolean {
    return this.failures < this.o.unhealthyAfter;
  }

  private succeeded(probe: boolean, answer?: BackendError): void {
    this.failures = 0;
    if (probe) this.probing = false;
    this.openUntil = 0;
    if (answer) this.lastError = answer.message;
  }

  private failed(probe: boolean, err: BackendError): void {
    this.failures++;
    this.lastError = err.message;
    if (probe) this.probing = false;
    if (this.failures >= this.o.unhealthyAfter) this.openUntil = Date.now() + this.o.coolDownMs;
  }

  private delay(attempt: number, err: BackendError): number {
    const ceiling = Math.min(this.o.maxDelayMs, this.o.baseDelayMs * 2 ** (attempt - 1));
    const jittered = Math.random() * ceiling;
    const server = Math.min(err.retryAfterMs ?? 0, this.o.maxRetryAfterMs);
    return Math.max(jittered, server);
  }

  private asBackendError(e: unknown): BackendError {
    if (e instanceof BackendError) return e;
    // Not a BackendError: a bug or an unexpected library error; do not retry it.
    return new BackendError('permanent', e instanceof Error ? e.message : String(e), this.name, { cause: e });
  }
}
