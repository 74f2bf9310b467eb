/**
 * The writer lease (docs/formats.md "Writer lease"): one writer per repository across machines.
 * Each holder writes its own lease object, `isgfs/leases/<holder id>`, to every backend it can
 * reach, renews it while it writes, and deletes it when it stops.
 *
 * Decisions (why):
 * - Backends offer no compare-and-swap (local directories, S3), so there is no single lease
 *   object to swap. Instead each claimant writes its own object and then lists: a claimant
 *   that sees another live lease after writing its own backs off. Of two claimants on one
 *   backend, the one whose write came second lists after both writes and backs off, so at most
 *   one gets through (both may back off: then both fail and can try again). This holds when a
 *   listing shows every object whose put returned before the listing began: true of local
 *   directories and of S3 since 2020; `settleMs` waits before the listing for stores that lag.
 * - A claimant needs its lease on a majority of the backends it is given: two majorities share
 *   a backend, so two claimants that cannot reach the same backends cannot both get through.
 * - Expiry uses wall clocks of different machines: a lease counts as expired `skewMs` after its
 *   `expires`, so clocks may disagree by that much.
 * - A lease of this same data directory (`dataDir` id) on this same host whose pid is gone is
 *   left over from a crash and is deleted at once, without waiting for it to expire. (The id
 *   alone is not enough: a data directory copied with `cp -a` carries the same id.)
 * - A take-over deletes the other holders' leases and names them in its own (`displaced`); a
 *   holder that finds its id in another lease when it renews has lost the lease and says so.
 *   A claimant that merely backs off never deletes a live lease, so its short-lived object does
 *   not unseat the holder.
 * - The lease is coordination between honest writers, not protection against an attacker with
 *   write access to the backends (heads are signed for that).
 */
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import { Backend, CallOptions } from '../backend/backend';
import { processAlive } from '../util/process';
import { getSmallObject, LEASES_PREFIX, majority, onEveryBackend } from './objects';

export const LEASE_FORMAT = 1;
const MAX_LEASE_BYTES = 64 * 1024;
const HOLDER = /^[0-9a-f]{32}$/;

/** The content of a lease object. */
export interface LeaseRecord {
  version: typeof LEASE_FORMAT;
  /** The repository id (config `id`). */
  repository: string;
  /** Random id of this holding (one per acquisition), 32 hex digits; also the object's key. */
  holder: string;
  host: string;
  pid: number;
  /** Id of the holder's data directory, 32 hex digits. */
  dataDir: string;
  /** ISO 8601 UTC times: taken, last renewed, valid until. */
  since: string;
  renewed: string;
  expires: string;
  /** Holder ids whose leases this holder deleted (expired, crashed, or taken over). */
  displaced: string[];
}

export interface LeaseTimings {
  /** A lease is valid this long after each renewal. Default 5 minutes. */
  durationMs: number;
  /** Renewal interval while held. Default 1 minute. */
  renewMs: number;
  /** Wait between writing a lease and listing again. Default 1 s. */
  settleMs: number;
  /** A lease counts as expired this long after its `expires` (clock skew). Default 1 minute. */
  skewMs: number;
}

export const LEASE_DEFAULTS: LeaseTimings = { durationMs: 5 * 60_000, renewMs: 60_000, settleMs: 1000, skewMs: 60_000 };

export interface LeaseOptions {
  /** The backends to hold it on (a majority of them must take it). */
  backends: readonly Backend[];
  repoId: string;
  dataDirId: string;
  takeOver?: boolean;
  timings?: Partial<LeaseTimings>;
  host?: string;
  pid?: number;
  /** Clock, ms since the epoch (tests). */
  now?: () => number;
  call?: CallOptions;
}

/** Another writer holds the lease. */
export class LeaseBusyError extends Error {
  constructor(
    readonly holder: LeaseRecord,
    detail = '',
  ) {
    super(
      `repository in use by ${holder.host} since ${holder.since} (pid ${holder.pid}, lease valid until ${holder.expires})${detail}; ` +
        'mount read-only, or give --take-over if that writer is gone',
    );
    this.name = 'LeaseBusyError';
  }
}

/** Too few backends answered to take or keep the lease. */
export class LeaseQuorumError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LeaseQuorumError';
  }
}

/** The lease was taken over by another writer, or expired while renewals failed. */
export class LeaseLostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LeaseLostError';
  }
}

function describe(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

/** Parses and checks a lease object; throws naming the bad field. */
export function parseLease(data: Buffer, where: string): LeaseRecord {
  let v: unknown;
  try {
    v = JSON.parse(data.toString('utf8'));
  } catch (e) {
    throw new Error(`${where}: lease is not JSON (${(e as Error).message})`, { cause: e });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${where}: lease must be a JSON object, not ${describe(v)}`);
  const o = v as Record<string, unknown>;
  const bad = (field: string, why: string) => new Error(`${where}: lease ${field} ${why}`);
  if (o.version !== LEASE_FORMAT) throw bad('version', `${JSON.stringify(o.version)} is not supported (this isgfs reads ${LEASE_FORMAT})`);
  for (const f of ['repository', 'holder', 'host', 'dataDir', 'since', 'renewed', 'expires'] as const) {
    if (typeof o[f] !== 'string' || (o[f] as string).length > 1024) throw bad(f, 'must be a string');
  }
  if (!HOLDER.test(o.holder as string)) throw bad('holder', 'must be 32 hex digits');
  if (!HOLDER.test(o.dataDir as string)) throw bad('dataDir', 'must be 32 hex digits');
  for (const f of ['since', 'renewed', 'expires'] as const) if (Number.isNaN(Date.parse(o[f] as string))) throw bad(f, 'is not a time');
  if (typeof o.pid !== 'number' || !Number.isSafeInteger(o.pid)) throw bad('pid', 'must be an integer');
  if (!Array.isArray(o.displaced) || !o.displaced.every((h) => typeof h === 'string' && HOLDER.test(h)))
    throw bad('displaced', 'must be a list of holder ids');
  return {
    version: LEASE_FORMAT,
    repository: o.repository as string,
    holder: o.holder as string,
    host: o.host as string,
    pid: o.pid,
    dataDir: o.dataDir as string,
    since: o.since as string,
    renewed: o.renewed as string,
    expires: o.expires as string,
    displaced: o.displaced as string[],
  };
}

export function leaseKey(holder: string): string {
  return LEASES_PREFIX + holder;
}

interface Seen {
  backend: Backend;
  lease: LeaseRecord;
}

/** What the backends hold: every readable lease and where; backends that could not be listed. */
export interface LeaseScan {
  leases: Seen[];
  reachable: Backend[];
  failed: { backend: string; error: Error }[];
  /** Lease objects that could not be read or parsed (ignored: their holder cannot be named). */
  unreadable: { backend: string; key: string; reason: string }[];
}

export async function scanLeases(backends: readonly Backend[], call?: CallOptions): Promise<LeaseScan> {
  const unreadable: LeaseScan['unreadable'] = [];
  const per = await onEveryBackend(backends, async (b) => {
    const found: Seen[] = [];
    for await (const info of b.list(LEASES_PREFIX, call)) {
      try {
        const data = await getSmallObject(b, info.key, MAX_LEASE_BYTES, call);
        if (!data) continue; // released meanwhile
        const lease = parseLease(data, `${b.name}: ${info.key}`);
        if (leaseKey(lease.holder) !== info.key) throw new Error(`${b.name}: ${info.key} holds the lease of ${lease.holder}`);
        found.push({ backend: b, lease });
      } catch (e) {
        unreadable.push({ backend: b.name, key: info.key, reason: (e as Error).message });
      }
    }
    return found;
  });
  const byName = new Map(backends.map((b) => [b.name, b]));
  return {
    leases: per.ok.flatMap((p) => p.value),
    reachable: per.ok.map((p) => byName.get(p.backend)!),
    failed: per.failed,
    unreadable,
  };
}

function names(list: readonly { backend: string; error: Error }[]): string {
  return list.map((f) => `${f.backend} (${f.error.message})`).join(', ');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A lease this process holds. */
export class WriterLease {
  private record: LeaseRecord;
  private released = false;
  private lost?: LeaseLostError;

  private constructor(
    private readonly o: LeaseOptions,
    private readonly t: LeaseTimings,
    record: LeaseRecord,
  ) {
    this.record = record;
  }

  /** How often the holder should call renew. */
  get renewMs(): number {
    return this.t.renewMs;
  }

  get holder(): string {
    return this.record.holder;
  }

  /** What this holder wrote last. */
  get current(): LeaseRecord {
    return { ...this.record, displaced: [...this.record.displaced] };
  }

  /** Set once the lease is known lost: the holder must stop writing. */
  get lostError(): LeaseLostError | undefined {
    return this.lost;
  }

  /**
   * Takes the lease on a majority of `o.backends`, or throws: LeaseBusyError naming the holder
   * (unless `takeOver`), LeaseQuorumError naming the backends that failed.
   */
  static async acquire(o: LeaseOptions): Promise<WriterLease> {
    const t = { ...LEASE_DEFAULTS, ...o.timings };
    const now = o.now ?? Date.now;
    const need = majority(o.backends.length);
    const start = now();
    const record: LeaseRecord = {
      version: LEASE_FORMAT,
      repository: o.repoId,
      holder: randomBytes(16).toString('hex'),
      host: o.host ?? os.hostname(),
      pid: o.pid ?? process.pid,
      dataDir: o.dataDirId,
      since: new Date(start).toISOString(),
      renewed: new Date(start).toISOString(),
      expires: new Date(start + t.durationMs).toISOString(),
      displaced: [],
    };
    const lease = new WriterLease(o, t, record);
    const before = await scanLeases(o.backends, o.call);
    if (before.reachable.length < need)
      throw new LeaseQuorumError(
        `cannot take the writer lease: ${before.reachable.length} of ${o.backends.length} backends answered, ${need} needed; failed: ${names(before.failed)}`,
      );
    const { live, stale } = lease.classify(before.leases);
    if (live.length && !o.takeOver) throw new LeaseBusyError(oldest(live));
    const displaced = [...stale, ...(o.takeOver ? live : [])];
    record.displaced = [...new Set(displaced.map((s) => s.lease.holder))];
    await Promise.all(displaced.map((s) => s.backend.delete(leaseKey(s.lease.holder), o.call).catch(() => undefined)));
    const wrote = await lease.write(before.reachable);
    if (wrote.ok.length < need) {
      await lease.release();
      throw new LeaseQuorumError(
        `cannot take the writer lease: stored on ${wrote.ok.length} of ${o.backends.length} backends, ${need} needed; failed: ${names([...before.failed, ...wrote.failed])}`,
      );
    }
    if (t.settleMs > 0) await sleep(t.settleMs);
    const after = await scanLeases(o.backends, o.call);
    const rivals = lease.classify(after.leases).live;
    if (rivals.length && !o.takeOver) {
      await lease.release();
      throw new LeaseBusyError(oldest(rivals), ' (two writers started at once; try again)');
    }
    if (rivals.length) {
      // Taking over: a holder that renewed meanwhile is displaced again and finds out when it renews.
      record.displaced = [...new Set([...record.displaced, ...rivals.map((s) => s.lease.holder)])];
      await Promise.all(rivals.map((s) => s.backend.delete(leaseKey(s.lease.holder), o.call).catch(() => undefined)));
      await lease.write(after.reachable);
    }
    return lease;
  }

  /** Others' leases: live ones (a rival), and stale ones (expired, or left by a crash of this data directory). */
  private classify(seen: Seen[]): { live: Seen[]; stale: Seen[] } {
    const now = (this.o.now ?? Date.now)();
    const live: Seen[] = [];
    const stale: Seen[] = [];
    for (const s of seen) {
      if (s.lease.holder === this.record.holder) continue;
      const expired = Date.parse(s.lease.expires) + this.t.skewMs < now;
      const crashedHere = s.lease.dataDir === this.record.dataDir && s.lease.host === this.record.host && !processAlive(s.lease.pid);
      if (expired || crashedHere) stale.push(s);
      else live.push(s);
    }
    return { live, stale };
  }

  private write(backends: readonly Backend[]) {
    const data = Buffer.from(JSON.stringify(this.record, null, 2) + '\n');
    return onEveryBackend(backends, (b) => b.put(leaseKey(this.record.holder), data, this.o.call));
  }

  /**
   * Renews the lease on every reachable backend. Throws LeaseLostError (and keeps throwing it)
   * once another holder has displaced this one, or when the lease expired before a renewal got
   * through; throws LeaseQuorumError when too few backends answered (the lease still stands
   * until it expires).
   */
  async renew(): Promise<void> {
    if (this.lost) throw this.lost;
    if (this.released) throw new Error('the writer lease was released');
    const now = (this.o.now ?? Date.now)();
    const scan = await scanLeases(this.o.backends, this.o.call);
    const by = scan.leases.find((s) => s.lease.holder !== this.record.holder && s.lease.displaced.includes(this.record.holder));
    if (by) {
      this.lost = new LeaseLostError(`the writer lease was taken over by ${by.lease.host} (pid ${by.lease.pid}) at ${by.lease.since}`);
      throw this.lost;
    }
    if (Date.parse(this.record.expires) < now) {
      this.lost = new LeaseLostError(`the writer lease expired at ${this.record.expires} before it could be renewed`);
      throw this.lost;
    }
    this.record = { ...this.record, renewed: new Date(now).toISOString(), expires: new Date(now + this.t.durationMs).toISOString() };
    const wrote = await this.write(scan.reachable);
    const need = majority(this.o.backends.length);
    if (wrote.ok.length < need)
      throw new LeaseQuorumError(
        `writer lease renewed on ${wrote.ok.length} of ${this.o.backends.length} backends, ${need} needed; failed: ${names([...scan.failed, ...wrote.failed])}`,
      );
  }

  /** Deletes this holder's lease from every backend (a lease lost to a take-over included). */
  async release(): Promise<void> {
    this.released = true;
    await onEveryBackend(this.o.backends, (b) => b.delete(leaseKey(this.record.holder), this.o.call));
  }
}

function oldest(list: Seen[]): LeaseRecord {
  return list.map((s) => s.lease).sort((a, b) => Date.parse(a.since) - Date.parse(b.since))[0];
}
