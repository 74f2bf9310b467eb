/**
 * `isg connect`: a new data directory for a repository, from its backends alone (the format
 * record, the key envelope, the newest head, the index and the tree on the backends).
 *
 * Decisions (why):
 * - Every check comes before the first write: a non-empty target, backends of two repositories,
 *   too few reachable backends, a wrong password, a live writer lease or a suspicious head each
 *   refuse with nothing written. A failure after that (the restore) removes what was written.
 * - The backends given must be k + m or more (the new config's own check): a lost backend is
 *   replaced by an empty one (a new directory or bucket) or given as it is when it is merely
 *   down; reads then rebuild from the others and the repairer fills it later.
 * - A reachable backend that holds no format record is a replacement; one with another
 *   repository's record refuses the connect, naming it.
 * - The lease: connect writes nothing the old writer could notice, so it only looks. A live
 *   lease refuses (`in use by <host> since <time>`); `--take-over` takes the lease and releases it
 *   at once, which displaces the old writer (it learns so at its next renewal).
 * - Rollback: a new data directory has seen no head. What connect can see is a backend holding
 *   a validly signed head newer than the one taken (which did not chain to its predecessor):
 *   backends restored from different copies, or two writers. That is refused unless
 *   `--accept-rollback`. The head taken is written to `<data-dir>/head`, so later opens of this
 *   data directory detect a rollback against it.
 * - The config is written last: its presence marks a complete data directory (as at init).
 */
import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Backend, CallOptions } from '../backend/backend';
import { createBackend } from '../backend/registry';
import type { BackendSpec } from '../backend/spec';
import { compressionFor } from '../block/compression';
import { KeyFile, unwrapMasterKey, WrongPasswordError } from '../crypto/keys';
import { findHeads, FoundHeads, SignedHead } from '../head/head';
import { LEASE_DEFAULTS, LeaseBusyError, LeaseRecord, scanLeases, WriterLease } from '../head/lease';
import { Meta } from '../meta/meta';
import { Recovered, recoverMetadata, RecoveryProgress, RestoreTree } from '../snapshot/connect';
import { restoreTree } from '../snapshot/tree';
import { RepoConfig, validateConfig } from './format';
import { readFormatRecord, readKeyEnvelope } from './replicas';
import { dataDirId, deriveRepoKeys, repoPaths, RepoError, resolveBackendSpec, writeFileDurable } from './repository';

export interface ConnectOptions {
  dataDir: string;
  specs: BackendSpec[];
  password?: string;
  acceptRollback?: boolean;
  takeOver?: boolean;
  /** The tree restore: `restoreTree` unless a test gives another. */
  restore?: RestoreTree;
  onProgress?: (p: RecoveryProgress) => void;
  /** Lease timings (tests shorten the settle wait of --take-over). */
  lease?: { settleMs?: number };
}

export interface ConnectResult extends Recovered {
  repository: string;
  head: { seq: number; hash: string; time: string; host: string } | null;
  /** Heads ignored (damaged, forged, out of the chain), as findHeads reports them. */
  ignoredHeads: { backend: string; key: string; reason: string }[];
  /** Backends that did not answer. */
  unreachable: { backend: string; error: string }[];
  /** Set when a newer signed head was passed over and --accept-rollback let it through. */
  rollback?: string;
}

/** The last head a data directory saw: `<data-dir>/head` (docs/formats.md "Repository"). */
export interface SeenHead {
  seq: number;
  hash: string;
}

export function headFile(dataDir: string): string {
  return `${repoPaths(dataDir).root}/head`;
}

export async function writeSeenHead(dataDir: string, head: SeenHead): Promise<void> {
  await writeFileDurable(headFile(dataDir), JSON.stringify({ version: 1, seq: head.seq, hash: head.hash }) + '\n', 0o644);
}

/** The head this data directory saw last, or undefined when it saw none. */
export async function readSeenHead(dataDir: string): Promise<SeenHead | undefined> {
  let text: string;
  try {
    text = await fs.promises.readFile(headFile(dataDir), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const v = JSON.parse(text) as { version?: unknown; seq?: unknown; hash?: unknown };
  if (v.version !== 1 || !Number.isSafeInteger(v.seq) || typeof v.hash !== 'string' || !/^[0-9a-f]{64}$/.test(v.hash))
    throw new RepoError(`${headFile(dataDir)} is damaged: it must be {"version":1,"seq":<n>,"hash":"<64 hex>"}`);
  return { seq: v.seq as number, hash: v.hash };
}

/**
 * Records `head` as the last one this data directory's metadata published: the first publish
 * from here continues its chain and its index list.
 */
export function adoptHead(meta: Meta, head: SignedHead): void {
  const hex = (b: Buffer) => b.toString('hex');
  meta.txn(() => {
    meta.setPublishValue('head', { seq: head.seq, hash: hex(head.hash), root: hex(head.root), time: head.time });
    meta.setPublishValue('index', head.index.map(hex));
    meta.setPublishValue('snapshots', head.snapshots ? hex(head.snapshots) : undefined);
  });
}

const PROBE: CallOptions = { attempts: 2 };

function describeFailures(list: readonly { backend: string; error: string }[]): string {
  return list.map((f) => `${f.backend} (${f.error})`).join(', ');
}

async function checkEmptyTarget(dataDir: string): Promise<boolean> {
  const root = repoPaths(dataDir).root;
  try {
    const names = await fs.promises.readdir(root);
    if (names.some((n) => n !== 'lost+found')) throw new RepoError(`${root} is not empty: connect needs a new or empty directory`);
    return false;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return true;
    if (e instanceof RepoError) throw e;
    throw new RepoError(`cannot use ${root}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** Live leases of other holders (as WriterLease.acquire judges them: expiry plus the clock skew). */
function liveLeases(leases: readonly { lease: LeaseRecord }[], now: number): LeaseRecord[] {
  return leases
    .map((s) => s.lease)
    .filter((l) => Date.parse(l.expires) + LEASE_DEFAULTS.skewMs >= now)
    .sort((a, b) => Date.parse(a.since) - Date.parse(b.since));
}

export async function connectRepository(o: ConnectOptions): Promise<ConnectResult> {
  const p = repoPaths(o.dataDir);
  const made = await checkEmptyTarget(o.dataDir);
  if (!o.specs.length) throw new RepoError('connect needs the backends: give --backend NAME=SPEC for each');
  const names = new Set(o.specs.map((s) => s.name));
  if (names.size !== o.specs.length) throw new RepoError('backend names must be unique');
  const backends: Backend[] = [];
  try {
    for (const spec of o.specs) backends.push(await createBackend(resolveBackendSpec(spec, p.root)));

    // The format record of every backend: one repository, and enough of its backends reachable.
    const records = await Promise.all(
      backends.map((b) =>
        readFormatRecord(b, PROBE).then(
          (config) => ({ b, config, error: undefined }),
          (e: unknown) => ({ b, config: null, error: (e as Error).message }),
        ),
      ),
    );
    const unreachable = records.filter((r) => r.error !== undefined).map((r) => ({ backend: r.b.name, error: r.error! }));
    const holding = records.filter((r) => r.config);
    const ids = new Map<string, string[]>();
    for (const r of holding) ids.set(r.config!.id, [...(ids.get(r.config!.id) ?? []), r.b.name]);
    if (ids.size > 1)
      throw new RepoError(
        `the backends hold different repositories: ${[...ids].map(([id, ns]) => `${id} on ${ns.join(', ')}`).join('; ')}; give the backends of one repository`,
      );
    if (!holding.length)
      throw new RepoError(
        `no backend holds a repository's format record${unreachable.length ? ` (unreachable: ${describeFailures(unreachable)})` : ''}`,
      );
    const record = holding[0].config!;
    const { k, m } = record.storage.ec;
    const reachable = records.filter((r) => r.error === undefined).map((r) => r.b);
    if (reachable.length < k)
      throw new RepoError(
        `${reachable.length} of the backends given can be reached, ${k} needed (${k}+${m} erasure code); failed: ${describeFailures(unreachable)}`,
      );
    const config: RepoConfig = { ...record, storage: { ...record.storage, backends: o.specs } };
    try {
      validateConfig(config);
    } catch (e) {
      throw new RepoError(`${(e as Error).message} (replace a lost backend by an empty one, e.g. a new directory)`);
    }

    // The key envelope, from the first backend that has one that parses.
    let kf: KeyFile | undefined;
    const envelopeProblems: string[] = [];
    for (const b of reachable) {
      try {
        kf = (await readKeyEnvelope(b, PROBE)) ?? undefined;
        if (kf) break;
      } catch (e) {
        envelopeProblems.push((e as Error).message);
      }
    }
    if (!kf)
      throw new RepoError(
        envelopeProblems.length
          ? `no backend holds a readable key envelope: ${envelopeProblems.join('; ')}`
          : 'the backends hold no key envelope: this repository has no password, its master key is only in its data directory, and it cannot be connected from its backends',
      );
    if (o.password === undefined) throw new RepoError('this repository is password-protected: give --password-file');
    let master: Buffer;
    try {
      master = await unwrapMasterKey(kf, o.password);
    } catch (e) {
      if (e instanceof WrongPasswordError) throw new RepoError('wrong password: it does not unwrap the key envelope on the backends');
      throw e;
    }
    const keys = deriveRepoKeys(master);

    // The writer lease: look only (see the class comment), unless taking over.
    const leases = await scanLeases(reachable, PROBE);
    const live = liveLeases(leases.leases, Date.now());
    if (live.length && !o.takeOver)
      throw new RepoError(`cannot connect: ${new LeaseBusyError(live[0]).message.replace('mount read-only', 'wait for it to unmount')}`);

    // The newest head.
    let found: FoundHeads;
    try {
      found = await findHeads(reachable, { repoId: record.id, publicKey: keys.head.publicKey, call: PROBE });
    } catch (e) {
      throw new RepoError(`cannot read the heads: ${(e as Error).message}`, { cause: e });
    }
    const head: SignedHead | null = found.head;
    const newer = [...found.highest].filter(([, seq]) => seq > (head?.seq ?? 0));
    let rollback: string | undefined;
    if (newer.length) {
      rollback =
        `${newer.map(([b, seq]) => `${b} holds a signed head ${seq}`).join(', ')}, newer than the head ${head?.seq ?? 'none'} taken, ` +
        'which does not follow the heads before it (backends restored from different copies, or two writers)';
      if (!o.acceptRollback)
        throw new RepoError(`${rollback}; give --accept-rollback to connect to head ${head?.seq ?? 'none'} all the same`);
    }

    if (o.takeOver && live.length) {
      const taken = await WriterLease.acquire({
        backends: reachable,
        repoId: record.id,
        dataDirId: randomBytes(16).toString('hex'), // informative: this data directory does not exist yet
        takeOver: true,
        timings: o.lease,
        call: PROBE,
      });
      await taken.release();
    }

    // Writes from here on; a failure removes them.
    try {
      await fs.promises.mkdir(p.root, { recursive: true, mode: 0o700 });
      await fs.promises.chmod(p.root, 0o700);
      await fs.promises.mkdir(p.blocks, { recursive: true });
      await fs.promises.mkdir(p.meta, { recursive: true });
      const meta = await Meta.open(p.meta, keys.meta);
      let recovered: Recovered;
      try {
        meta.initialise(process.getuid?.() ?? 0, process.getgid?.() ?? 0);
        recovered = await recoverMetadata({
          meta,
          backends: reachable,
          keys: { ...keys.block, pack: keys.pack },
          compression: compressionFor(config.compression),
          head: head && { root: head.root, index: head.index, ...(head.snapshots ? { snapshots: head.snapshots } : {}) },
          restore: o.restore ?? restoreTree,
          onProgress: o.onProgress,
        });
        if (head) adoptHead(meta, head);
      } finally {
        await meta.close();
      }
      await dataDirId(p.root);
      if (head) await writeSeenHead(p.root, { seq: head.seq, hash: head.hash.toString('hex') });
      await writeFileDurable(p.key, JSON.stringify(kf, null, 2) + '\n', 0o600);
      await writeFileDurable(p.config, JSON.stringify(config, null, 2) + '\n', 0o600); // may hold S3 secrets
      return {
        ...recovered,
        repository: record.id,
        head: head && { seq: head.seq, hash: head.hash.toString('hex'), time: new Date(head.time).toISOString(), host: head.host },
        ignoredHeads: found.refused,
        unreachable: [...unreachable, ...found.unreachable.map((u) => ({ backend: u.backend, error: u.error.message }))],
        ...(rollback ? { rollback } : {}),
      };
    } catch (e) {
      if (made) await fs.promises.rm(p.root, { recursive: true, force: true });
      else
        for (const n of await fs.promises.readdir(p.root))
          if (n !== 'lost+found') await fs.promises.rm(`${p.root}/${n}`, { recursive: true, force: true });
      throw e;
    }
  } finally {
    await Promise.all(backends.map((b) => b.close().catch(() => undefined)));
  }
}
