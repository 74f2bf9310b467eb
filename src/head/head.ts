/**
 * Heads (docs/formats.md "Heads"): a head names the state of a repository on its backends (the
 * root tree, the index objects, the snapshot list) and chains to the head before it. Heads are
 * signed with Ed25519 under a key derived from the master key, and written whole to every
 * backend; the highest validly signed one found on any backend is the state.
 *
 * Decisions (why):
 * - A fixed binary layout, not JSON: one encoding per head, so its hash (SHA-256 of the whole
 *   object, signature included; Ed25519 signatures are deterministic) names it unambiguously and
 *   the next head can chain to it. Every field a reader does not understand is refused.
 * - The signature covers every byte before it, magic and version included. The key is used for
 *   heads only (its own HKDF purpose), so nothing else it signs can pass for a head.
 * - A head's object key repeats its sequence number and a hash prefix, so a listing sorts heads
 *   by sequence number (fixed-width hex) and a reader can fetch a head's predecessor by name.
 *   A reader checks that the key and the content agree: a valid head copied under another
 *   sequence number is refused.
 * - The chain is checked where it can be: the chosen head must follow the head of the sequence
 *   number before it when any such head is on the backends (heads that old may be pruned later).
 * - Rollback (backends restored from an old copy) is judged against the last head this data
 *   directory saw; this module only compares, the caller keeps that record.
 */
import { createHash, sign, verify, KeyObject } from 'node:crypto';
import { Backend, CallOptions } from '../backend/backend';
import { IsgError, registerErrorClass } from '../errors';
import { getSmallObject, HEADS_PREFIX, onEveryBackend } from './objects';

export const HEAD_MAGIC = Buffer.from('ISGH');
export const HEAD_FORMAT = 1;
/** Bytes of every id a head names (block ids are 32 bytes) and of a head hash. */
export const ID_BYTES = 32;
const SIGNATURE_BYTES = 64;
/** Offsets of the fixed part. */
const FIXED = {
  magic: 0,
  version: 4,
  flags: 5,
  repo: 8,
  seq: 24,
  time: 32,
  prev: 40,
  root: 72,
  snapshots: 104,
  count: 136,
  hostLength: 140,
};
const FIXED_BYTES = 141;
const FLAG_SNAPSHOTS = 1;
export const MAX_HOST_BYTES = 255;
/** Index objects one head may name: keeps a head below 3.3 MB. */
export const MAX_INDEX_IDS = 100_000;
export const MAX_HEAD_BYTES = FIXED_BYTES + MAX_HOST_BYTES + MAX_INDEX_IDS * ID_BYTES + SIGNATURE_BYTES;

/** What a head says. */
export interface Head {
  /** The repository's id (config `id`), a UUID. */
  repoId: string;
  /** 1 for the first head, then +1 for each. */
  seq: number;
  /** Hash of the previous head; 32 zero bytes for the first. */
  prev: Buffer;
  /** Id of the root tree object. */
  root: Buffer;
  /** Ids of the index objects, in the order the writer gives. */
  index: Buffer[];
  /** Id of the snapshot list, once snapshots exist. */
  snapshots?: Buffer;
  /** When the writer made it, ms since the Unix epoch (informative: never used for ordering). */
  time: number;
  /** The writer's host name. */
  host: string;
}

/** A head with its encoding and hash. */
export interface SignedHead extends Head {
  bytes: Buffer;
  hash: Buffer;
}

/** A head that fails a check: damaged, forged, of another repository, or out of its chain. */
export class HeadInvalidError extends IsgError {
  constructor(message: string) {
    super('corrupt', message);
  }
}
registerErrorClass(HeadInvalidError);

/** The newest head on the backends is older than one this data directory saw. */
export class HeadRollbackError extends Error {
  constructor(
    readonly found: { seq: number; hash: string } | null,
    readonly seen: { seq: number; hash: string },
  ) {
    super(
      found === null
        ? `no valid head on the backends, but this data directory saw head ${seen.seq}: the backends may have been emptied or replaced`
        : found.seq < seen.seq
          ? `rollback: the newest valid head on the backends is ${found.seq}, older than head ${seen.seq} this data directory saw (backends restored from an old copy?)`
          : `the head ${found.seq} on the backends (${found.hash.slice(0, 16)}) is not the head ${seen.seq} this data directory saw (${seen.hash.slice(0, 16)}): two writers?`,
    );
    this.name = 'HeadRollbackError';
  }
}

const UUID = /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/;

function uuidBytes(id: string): Buffer {
  const m = UUID.exec(id);
  if (!m) throw new Error(`repository id ${JSON.stringify(id)} is not a lowercase UUID`);
  return Buffer.from(m.slice(1).join(''), 'hex');
}

function uuidText(b: Buffer): string {
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function writeU64(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32LE(value % 2 ** 32, at);
  buf.writeUInt32LE(Math.floor(value / 2 ** 32), at + 4);
}

/** A u64 LE that must be a safe integer (below 2^53). */
function readU64(buf: Buffer, at: number, field: string): number {
  const lo = buf.readUInt32LE(at);
  const hi = buf.readUInt32LE(at + 4);
  if (hi >= 2 ** 21) throw new HeadInvalidError(`head ${field} is beyond 2^53`);
  return hi * 2 ** 32 + lo;
}

export function headHash(bytes: Buffer): Buffer {
  return createHash('sha256').update(bytes).digest();
}

/** The first head's `prev`. */
export const NO_PREVIOUS = Buffer.alloc(ID_BYTES);

function checkId(id: Buffer | undefined, field: string): void {
  if (!Buffer.isBuffer(id) || id.length !== ID_BYTES) throw new Error(`head ${field} must be ${ID_BYTES} bytes`);
}

/** Encodes and signs a head (docs/formats.md "Heads"). */
export function signHead(head: Head, privateKey: KeyObject): SignedHead {
  const host = Buffer.from(head.host, 'utf8');
  if (host.length < 1 || host.length > MAX_HOST_BYTES) throw new Error(`head host must be 1..${MAX_HOST_BYTES} UTF-8 bytes`);
  if (!Number.isSafeInteger(head.seq) || head.seq < 1) throw new Error(`head seq must be a positive safe integer, not ${head.seq}`);
  if (!Number.isSafeInteger(head.time) || head.time < 0) throw new Error(`head time must be a non-negative safe integer`);
  if (head.index.length > MAX_INDEX_IDS) throw new Error(`a head names at most ${MAX_INDEX_IDS} index objects`);
  checkId(head.prev, 'prev');
  checkId(head.root, 'root');
  head.index.forEach((id) => checkId(id, 'index id'));
  if (head.snapshots !== undefined) checkId(head.snapshots, 'snapshot list id');
  if ((head.seq === 1) !== head.prev.equals(NO_PREVIOUS)) throw new Error('the first head, and only it, has no previous head');
  const body = Buffer.alloc(FIXED_BYTES + host.length + head.index.length * ID_BYTES);
  HEAD_MAGIC.copy(body, FIXED.magic);
  body[FIXED.version] = HEAD_FORMAT;
  body[FIXED.flags] = head.snapshots ? FLAG_SNAPSHOTS : 0;
  uuidBytes(head.repoId).copy(body, FIXED.repo);
  writeU64(body, head.seq, FIXED.seq);
  writeU64(body, head.time, FIXED.time);
  head.prev.copy(body, FIXED.prev);
  head.root.copy(body, FIXED.root);
  head.snapshots?.copy(body, FIXED.snapshots);
  body.writeUInt32LE(head.index.length, FIXED.count);
  body[FIXED.hostLength] = host.length;
  host.copy(body, FIXED_BYTES);
  head.index.forEach((id, i) => id.copy(body, FIXED_BYTES + host.length + i * ID_BYTES));
  const bytes = Buffer.concat([body, sign(null, body, privateKey)]);
  return { ...head, index: head.index.map((id) => Buffer.from(id)), bytes, hash: headHash(bytes) };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes a head and checks everything a head alone can show: its layout, its signature under
 * `publicKey`, and that it belongs to repository `repoId`. Throws HeadInvalidError saying what
 * is wrong; `where` (backend and key) prefixes the message.
 */
export function openHead(bytes: Buffer, o: { repoId: string; publicKey: KeyObject; where?: string }): SignedHead {
  const bad = (why: string) => new HeadInvalidError(`${o.where ? `${o.where}: ` : ''}${why}`);
  if (bytes.length < FIXED_BYTES + 1 + SIGNATURE_BYTES) throw bad(`head of ${bytes.length} bytes is too short`);
  if (bytes.length > MAX_HEAD_BYTES) throw bad(`head of ${bytes.length} bytes is too long`);
  if (!bytes.subarray(0, 4).equals(HEAD_MAGIC)) throw bad('not a head (magic)');
  if (bytes[FIXED.version] !== HEAD_FORMAT)
    throw bad(`head format ${bytes[FIXED.version]} is not supported (this isgfs reads ${HEAD_FORMAT})`);
  const count = bytes.readUInt32LE(FIXED.count);
  const hostLength = bytes[FIXED.hostLength];
  if (count > MAX_INDEX_IDS) throw bad(`head names ${count} index objects, more than ${MAX_INDEX_IDS}`);
  const bodyLength = FIXED_BYTES + hostLength + count * ID_BYTES;
  if (bytes.length !== bodyLength + SIGNATURE_BYTES)
    throw bad(`head is ${bytes.length} bytes, its fields make ${bodyLength + SIGNATURE_BYTES}`);
  const body = bytes.subarray(0, bodyLength);
  // The signature first: nothing of a forged head is interpreted beyond its length.
  if (!verify(null, body, o.publicKey, bytes.subarray(bodyLength)))
    throw bad('head signature does not verify (damaged, or signed with another key)');
  const flags = bytes[FIXED.flags];
  if ((flags & ~FLAG_SNAPSHOTS) !== 0 || bytes[6] !== 0 || bytes[7] !== 0) throw bad('head has unknown flags');
  const repoId = uuidText(bytes.subarray(FIXED.repo, FIXED.repo + 16));
  if (repoId !== o.repoId) throw bad(`head belongs to repository ${repoId}, not ${o.repoId}`);
  const seq = readU64(bytes, FIXED.seq, 'sequence number');
  const time = readU64(bytes, FIXED.time, 'time');
  const prev = Buffer.from(bytes.subarray(FIXED.prev, FIXED.prev + ID_BYTES));
  if (seq < 1) throw bad('head sequence number 0');
  if ((seq === 1) !== prev.equals(NO_PREVIOUS)) throw bad('head previous hash is zero exactly when it is not the first head');
  const snapshots = Buffer.from(bytes.subarray(FIXED.snapshots, FIXED.snapshots + ID_BYTES));
  if (!(flags & FLAG_SNAPSHOTS) && !snapshots.equals(NO_PREVIOUS)) throw bad('head names a snapshot list without its flag');
  if (hostLength === 0) throw bad('head has no host');
  let host: string;
  try {
    host = utf8.decode(bytes.subarray(FIXED_BYTES, FIXED_BYTES + hostLength));
  } catch {
    throw bad('head host is not UTF-8');
  }
  const index: Buffer[] = [];
  for (let i = 0, at = FIXED_BYTES + hostLength; i < count; i++, at += ID_BYTES) index.push(Buffer.from(bytes.subarray(at, at + ID_BYTES)));
  return {
    repoId,
    seq,
    prev,
    root: Buffer.from(bytes.subarray(FIXED.root, FIXED.root + ID_BYTES)),
    index,
    ...(flags & FLAG_SNAPSHOTS ? { snapshots } : {}),
    time,
    host,
    bytes: Buffer.from(bytes),
    hash: headHash(bytes),
  };
}

/** The fields of the head after `prev` (or of the first head when there is none). */
export function nextHead(prev: SignedHead | undefined, fields: Omit<Head, 'seq' | 'prev'>): Head {
  return { ...fields, seq: prev ? prev.seq + 1 : 1, prev: prev ? prev.hash : NO_PREVIOUS };
}

/** Throws HeadInvalidError unless `next` follows `prev`: the next sequence number and prev's hash. */
export function checkLink(prev: SignedHead, next: SignedHead): void {
  if (next.seq !== prev.seq + 1) throw new HeadInvalidError(`head ${next.seq} does not follow head ${prev.seq} (sequence)`);
  if (!next.prev.equals(prev.hash))
    throw new HeadInvalidError(`head ${next.seq} does not follow head ${prev.seq} (${hex16(prev.hash)}): it names ${hex16(next.prev)}`);
}

function hex16(hash: Buffer): string {
  return hash.subarray(0, 8).toString('hex');
}

export function headKey(seq: number, hash: Buffer): string {
  return `${HEADS_PREFIX}${seq.toString(16).padStart(16, '0')}-${hex16(hash)}`;
}

export function parseHeadKey(key: string): { seq: number; hashPrefix: string } | null {
  const m = /^isgfs\/heads\/([0-9a-f]{16})-([0-9a-f]{16})$/.exec(key);
  if (!m) return null;
  const seq = parseInt(m[1], 16);
  return Number.isSafeInteger(seq) && seq >= 1 ? { seq, hashPrefix: m[2] } : null;
}

/** Writes a head whole to every backend, all at once. */
export async function storeHead(backends: readonly Backend[], head: SignedHead, opts?: CallOptions) {
  return onEveryBackend(backends, (b) => b.put(headKey(head.seq, head.hash), head.bytes, opts));
}

/** A head found on the backends that is not taken, and why. */
export interface RefusedHead {
  backend: string;
  key: string;
  reason: string;
}

export interface FoundHeads {
  /** The highest validly signed head that follows its predecessor (where that is on the backends). */
  head: SignedHead | null;
  /** Backends that hold it. */
  holders: string[];
  /** Per reachable backend, the highest valid head it holds (0: none): a backend behind may be given it again. */
  highest: Map<string, number>;
  /** Heads ignored: damaged, forged, of another repository, misnamed or out of the chain. */
  refused: RefusedHead[];
  /** Backends whose listing failed. */
  unreachable: { backend: string; error: Error }[];
  /** Set when `acceptRollback` let an older head through. */
  rollback?: HeadRollbackError;
}

export interface FindOptions {
  repoId: string;
  publicKey: KeyObject;
  /** The last head this data directory saw: an older (or different) newest head is a rollback. */
  lastSeen?: { seq: number; hash: Buffer };
  /** Take the newest head found even when it is a rollback (reported in `rollback`). */
  acceptRollback?: boolean;
  call?: CallOptions;
}

interface Listed {
  backend: Backend;
  key: string;
  seq: number;
}

/**
 * Finds the highest valid head over the backends: lists every backend's heads, reads them from
 * the highest sequence number down (each distinct object once), and takes the first that opens
 * (openHead), whose key matches its content, and that follows a head of the sequence number
 * before it when the backends hold any. Everything ignored is reported in `refused`. Throws
 * HeadRollbackError when the result is older than `lastSeen` (or differs at the same number),
 * unless `acceptRollback`.
 */
export async function findHeads(backends: readonly Backend[], o: FindOptions): Promise<FoundHeads> {
  const refused: RefusedHead[] = [];
  const listings = await onEveryBackend(backends, async (b) => {
    const keys: Listed[] = [];
    for await (const info of b.list(HEADS_PREFIX, o.call)) {
      const parsed = parseHeadKey(info.key);
      if (!parsed) refused.push({ backend: b.name, key: info.key, reason: 'not a head key' });
      else keys.push({ backend: b, key: info.key, seq: parsed.seq });
    }
    return keys;
  });
  const all = listings.ok.flatMap((l) => l.value).sort((a, b) => b.seq - a.seq || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  // One read per key and backend; a head that opened on one backend is not read again elsewhere
  // (the same key names the same bytes when the hash prefix and the signature agree).
  const opened = new Map<string, SignedHead | null>();
  const read = async (l: Listed): Promise<SignedHead | null> => {
    try {
      const bytes = await getSmallObject(l.backend, l.key, MAX_HEAD_BYTES, o.call);
      if (!bytes) return null;
      // RefusedHead names backend and key: the reason says only what is wrong.
      const h = openHead(bytes, { repoId: o.repoId, publicKey: o.publicKey });
      if (headKey(h.seq, h.hash) !== l.key) throw new HeadInvalidError(`the key does not name this head (${headKey(h.seq, h.hash)})`);
      return h;
    } catch (e) {
      refused.push({ backend: l.backend.name, key: l.key, reason: (e as Error).message });
      return null;
    }
  };
  const openedBy = async (l: Listed) => {
    const id = `${l.backend.name}\0${l.key}`;
    if (!opened.has(id)) opened.set(id, await read(l));
    return opened.get(id) ?? null;
  };
  const highest = new Map<string, number>(listings.ok.map((l) => [l.backend, 0]));
  const follows = async (h: SignedHead): Promise<boolean> => {
    const before = all.filter((p) => p.seq === h.seq - 1);
    if (!before.length) return true; // pruned or never there: nothing to check against
    for (const p of before.filter((p) => p.key === headKey(h.seq - 1, h.prev))) {
      const ph = await openedBy(p);
      if (ph && ph.hash.equals(h.prev)) return true;
    }
    return false;
  };
  let chosen: SignedHead | null = null;
  for (const l of all) {
    if (chosen && l.seq < chosen.seq) break;
    const h = await openedBy(l);
    if (!h) continue;
    if (chosen) {
      // Same sequence number: the same head on another backend, or a fork.
      if (!h.hash.equals(chosen.hash))
        refused.push({ backend: l.backend.name, key: l.key, reason: `a different head ${h.seq} was taken (two writers?)` });
      continue;
    }
    if (h.seq > 1 && !(await follows(h))) {
      refused.push({
        backend: l.backend.name,
        key: l.key,
        reason: `head ${h.seq} does not follow any valid head ${h.seq - 1} on the backends`,
      });
      continue;
    }
    chosen = h;
  }
  // Each backend's own highest valid head (a backend behind may be given the chosen one again).
  for (const l of all) {
    if ((highest.get(l.backend.name) ?? 0) !== 0) continue;
    const h = await openedBy(l);
    if (h) highest.set(l.backend.name, h.seq);
  }
  const chosenKey = chosen ? headKey(chosen.seq, chosen.hash) : '';
  const holders = listings.ok.map((l) => l.backend).filter((name) => opened.get(`${name}\0${chosenKey}`));
  const found: FoundHeads = { head: chosen, holders, highest, refused, unreachable: listings.failed };
  if (o.lastSeen) {
    const seen = { seq: o.lastSeen.seq, hash: o.lastSeen.hash.toString('hex') };
    const c = chosen;
    const rollback =
      c === null || c.seq < seen.seq || (c.seq === seen.seq && !c.hash.equals(o.lastSeen.hash))
        ? new HeadRollbackError(c ? { seq: c.seq, hash: c.hash.toString('hex') } : null, seen)
        : undefined;
    if (rollback && !o.acceptRollback) throw rollback;
    if (rollback) found.rollback = rollback;
  }
  return found;
}
