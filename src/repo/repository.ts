/**
 * A repository is a data directory: `config` (format record), `key` (master key, maybe wrapped),
 * `id` (this data directory's own id), `meta/` (LMDB), `cache/` (the local block tier), `views/`
 * (namespaces of published trees, built for `isg mount --snapshot`) and, while
 * a process has it open for writing, `lock` (its pid and mountpoint). Its backends hold the
 * format record and the key envelope too (replicas.ts).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  deriveSubkey,
  headSigningKey,
  KeyFile,
  newMasterKey,
  parseKeyFile,
  SigningKey,
  unwrapMasterKey,
  wrapMasterKey,
} from '../crypto/keys';
import { defaultConfig, RepoConfig, validateConfig } from './format';
import { deriveGearTable } from '../chunk';
import { BlockKeys } from '../block/codec';
import type { BackendSpec } from '../backend/spec';
import { createBackend, initBackend } from '../backend/registry';
import type { Backend } from '../backend/backend';
import { checkBackendsUnused, ensureRecords, FORMAT_RECORD_KEY, KEY_ENVELOPE_KEY } from './replicas';
import { Meta } from '../meta/meta';
import { MetaSeal } from '../meta/seal';
import { fileLock, FileLock } from '../native';
import { processAlive } from '../util/process';

export class RepoError extends Error {}

export interface RepoPaths {
  root: string;
  config: string;
  key: string;
  /** This data directory's id (32 hex digits), which names it in writer leases. */
  id: string;
  meta: string;
  cache: string;
  blocks: string;
  /** Tree views (`isg mount --snapshot`), one directory per root: src/snapshot/view.ts. */
  views: string;
  lock: string;
}

export function repoPaths(root: string): RepoPaths {
  const r = path.resolve(root);
  return {
    root: r,
    config: path.join(r, 'config'),
    key: path.join(r, 'key'),
    id: path.join(r, 'id'),
    meta: path.join(r, 'meta'),
    cache: path.join(r, 'cache'),
    blocks: path.join(r, 'cache', 'blocks'),
    views: path.join(r, 'views'),
    lock: path.join(r, 'lock'),
  };
}

export function isRepository(root: string): boolean {
  return fs.existsSync(repoPaths(root).config);
}

export async function readPasswordFile(file: string | undefined): Promise<string | undefined> {
  if (file === undefined) return undefined;
  const text = await fs.promises.readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new RepoError(`cannot read password file ${file}: ${e.code ?? e.message}`);
  });
  const pw = text.replace(/\r?\n$/, '');
  if (!pw) throw new RepoError(`password file ${file} is empty`);
  return pw;
}

export interface InitOptions {
  password?: string;
  configure?: (c: RepoConfig) => void;
}

export async function initRepository(root: string, opts: InitOptions = {}): Promise<RepoConfig> {
  const p = repoPaths(root);
  if (fs.existsSync(p.config)) throw new RepoError(`${p.root} already holds a repository`);
  await fs.promises.mkdir(path.dirname(p.root), { recursive: true });
  await fs.promises.mkdir(p.root, { mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'EEXIST') throw e;
  });
  const probe = await fs.promises.readdir(p.root);
  if (probe.some((n) => !['lost+found'].includes(n))) throw new RepoError(`${p.root} is not empty and holds no repository`);
  // Private: the key file may hold the master key in plain, config may hold S3 secrets, and LMDB
  // holds names. An empty directory given to init is made private too; umask cannot widen this.
  await fs.promises.chmod(p.root, 0o700);

  const config = defaultConfig(randomUUID());
  opts.configure?.(config);
  validateConfig(config);
  const master = newMasterKey();
  const kf = await wrapMasterKey(master, opts.password);
  for (const spec of config.storage.backends) await initBackend(resolveBackendSpec(spec, p.root));
  const backends: Backend[] = [];
  try {
    for (const spec of config.storage.backends) backends.push(await createBackend(resolveBackendSpec(spec, p.root)));
    await checkBackendsUnused(backends); // before anything is written
    await initDataDir(p, config, master, kf, backends);
  } finally {
    await Promise.all(backends.map((b) => b.close().catch(() => undefined)));
  }
  return config;
}

async function initDataDir(p: RepoPaths, config: RepoConfig, master: Buffer, kf: KeyFile, backends: Backend[]): Promise<void> {
  await fs.promises.mkdir(p.blocks, { recursive: true });
  await fs.promises.mkdir(p.meta, { recursive: true });
  // The metadata database exists from the start, so read-only users (status, check) can open it.
  const meta = await Meta.open(p.meta, deriveRepoKeys(master).meta);
  meta.initialise(process.getuid?.() ?? 0, process.getgid?.() ?? 0);
  await meta.sync();
  await meta.close();
  await writeFileDurable(p.id, newDataDirId() + '\n', 0o644);
  // Every backend gets the format record and key envelope, or init fails and takes back what it
  // wrote: a backend left holding the record of a repository that never was would refuse the next init.
  const records = await ensureRecords(backends, config, kf);
  if (records.failed.length) {
    await Promise.all(backends.map((b) => Promise.all([b.delete(FORMAT_RECORD_KEY), b.delete(KEY_ENVELOPE_KEY)]).catch(() => undefined)));
    throw new RepoError(`cannot write the format record to ${records.failed.map((f) => `${f.backend} (${f.error.message})`).join(', ')}`);
  }
  await writeFileDurable(p.key, JSON.stringify(kf, null, 2) + '\n', 0o600);
  // config last: its presence is what marks a complete repository.
  await writeFileDurable(p.config, JSON.stringify(config, null, 2) + '\n', 0o600); // may hold S3 secrets
}

function newDataDirId(): string {
  return randomBytes(16).toString('hex');
}

/**
 * This data directory's id, made (durably) when it has none yet: repositories made before ids
 * existed get theirs at their first read-write open.
 */
export async function dataDirId(root: string): Promise<string> {
  const file = repoPaths(root).id;
  try {
    const text = (await fs.promises.readFile(file, 'utf8')).trim();
    if (/^[0-9a-f]{32}$/.test(text)) return text;
    throw new RepoError(`${file} is damaged: it must hold 32 hex digits (delete it to get a new id)`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const id = newDataDirId();
  await writeFileDurable(file, id + '\n', 0o644);
  return id;
}

/** Writes a file whole and durably (temporary file, fsync, rename, fsync of the directory). */
export async function writeFileDurable(file: string, data: string, mode: number): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await fs.promises.open(tmp, 'w', mode);
  try {
    await fh.chmod(mode); // open's mode applies only to a new file, and after the umask
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.promises.rename(tmp, file);
  const dir = await fs.promises.open(path.dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/**
 * Whether a backend keeps its objects inside the data directory (the embedded default's do):
 * the data directory's own lock already guards those, and they are lost with it.
 */
export function isInsideDataDir(spec: BackendSpec, root: string): boolean {
  if (spec.type !== 'local' || typeof spec.path !== 'string') return false;
  const rel = path.relative(path.resolve(root), path.resolve(root, spec.path));
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

/** Local backends may be given relative to the data directory (the embedded default is). */
export function resolveBackendSpec(spec: BackendSpec, root: string): BackendSpec {
  if (spec.type === 'local' && typeof spec.path === 'string' && !path.isAbsolute(spec.path)) {
    return { ...spec, path: path.resolve(root, spec.path) };
  }
  return spec;
}

export interface RepoKeys {
  master: Buffer;
  block: BlockKeys;
  gear: Uint32Array;
  pack: Buffer;
  /** Seals the metadata rows at rest. */
  meta: MetaSeal;
  /** Signs heads (Ed25519). */
  head: SigningKey;
}

export interface OpenedRepo {
  paths: RepoPaths;
  config: RepoConfig;
  keys: RepoKeys;
  /** The key file as read (the key envelope on the backends is made from it). */
  keyFile: KeyFile;
}

const KEY_FILE_MAX_BYTES = 64 * 1024;

export async function openRepository(root: string, password: string | undefined): Promise<OpenedRepo> {
  const p = repoPaths(root);
  let configText: string;
  try {
    configText = await fs.promises.readFile(p.config, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new RepoError(`${p.root} holds no repository (run isg init)`);
    throw new RepoError(`cannot read ${p.config}: ${code}`);
  }
  const config = validateConfig(JSON.parse(configText) as RepoConfig);
  let keyText: string;
  try {
    // A key file is a few hundred bytes: a huge one is refused before it is read.
    const size = (await fs.promises.stat(p.key)).size;
    if (size > KEY_FILE_MAX_BYTES)
      throw new RepoError(`the key file ${p.key} is ${size} bytes, more than a key file can be (${KEY_FILE_MAX_BYTES})`);
    keyText = await fs.promises.readFile(p.key, 'utf8');
  } catch (e) {
    if (e instanceof RepoError) throw e;
    throw new RepoError(`cannot read the key file ${p.key}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const kf: KeyFile = parseKeyFile(keyText, p.key); // KeyFileError names the bad field
  const master = await unwrapMasterKey(kf, password);
  return { paths: p, config, keys: deriveRepoKeys(master), keyFile: kf };
}

export function deriveRepoKeys(master: Buffer): RepoKeys {
  return {
    master,
    block: { idKey: deriveSubkey(master, 'block-id'), encKey: deriveSubkey(master, 'block-enc') },
    gear: deriveGearTable(deriveSubkey(master, 'chunker')),
    pack: deriveSubkey(master, 'pack'),
    meta: new MetaSeal(deriveSubkey(master, 'meta')),
    head: headSigningKey(master),
  };
}

/**
 * The write lock: one process at a time may open a repository for writing.
 *
 * With the addon, the lock is flock(2) on `lock` (exclusive, never waited for): the kernel holds it
 * for exactly as long as the holder's descriptor is open, so a holder killed with SIGKILL, or a
 * reboot, leaves nothing that blocks, and two processes can never both hold it. The file's content
 * (pid, mountpoint) only names the holder in messages; a pid in it is never trusted.
 *
 * Without the addon (ISGFS_NO_NATIVE, or not built) Node has no flock: the fallback is a pid file
 * created with O_EXCL whose pid is checked for life, as before. It is weaker: a stale file whose
 * pid was reused by another process after a reboot blocks until removed by hand, and two processes
 * clearing the same stale file at once may both get in. Its content says `"lock": "pid"`, so that
 * a process with flock respects a live pid-file holder.
 */
export interface LockInfo {
  pid: number;
  mountpoint?: string;
  started: string;
  /** How the holder locked: flock (absent in files written before flock) or a pid file only. */
  lock?: 'flock' | 'pid';
}

function parseLockInfo(text: string): LockInfo | undefined {
  try {
    const info = JSON.parse(text) as LockInfo;
    return typeof info?.pid === 'number' ? info : undefined;
  } catch {
    return undefined;
  }
}

/** A live pid-file holder (a process without flock), else undefined. */
function livePidHolder(info: LockInfo | undefined): LockInfo | undefined {
  return info?.lock === 'pid' && info.pid !== process.pid && processAlive(info.pid) ? info : undefined;
}

function inUse(root: string, holder: LockInfo | undefined): RepoError {
  const by = holder ? `pid ${holder.pid}` + (holder.mountpoint ? ` (mounted on ${holder.mountpoint})` : '') : 'another process';
  return new RepoError(`repository ${repoPaths(root).root} is already in use by ${by}`);
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Who holds the write lock, or undefined when nobody does. */
export function readLock(root: string): LockInfo | undefined {
  const file = repoPaths(root).lock;
  if (!fileLock) {
    try {
      const info = parseLockInfo(fs.readFileSync(file, 'utf8'));
      return info && processAlive(info.pid) ? info : undefined;
    } catch {
      return undefined;
    }
  }
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return undefined; // no file: nobody holds it
  }
  try {
    const info = parseLockInfo(fs.readFileSync(fd, 'utf8'));
    // A shared lock, taken for an instant, tells whether a writer holds the exclusive one.
    if (!fileLock.tryLock(fd, false)) return info ?? { pid: 0, started: '' };
    fileLock.unlock(fd);
    return livePidHolder(info);
  } finally {
    fs.closeSync(fd);
  }
}

/** Takes the write lock or throws `already in use`; the function returned releases it. */
export function acquireLock(root: string, mountpoint?: string): () => void {
  return fileLock ? acquireFlock(root, fileLock, mountpoint) : acquirePidLock(root, mountpoint);
}

/** readLock's shared lock lasts an instant: a busy lock is tried again for this long before giving up. */
const LOCK_RETRY_MS = 200;

function acquireFlock(root: string, lock: FileLock, mountpoint: string | undefined): () => void {
  const file = repoPaths(root).lock;
  const info: LockInfo = { pid: process.pid, mountpoint, started: new Date().toISOString(), lock: 'flock' };
  const until = Date.now() + LOCK_RETRY_MS;
  for (;;) {
    let fd: number;
    try {
      fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644); // libuv adds O_CLOEXEC
    } catch (e) {
      throw new RepoError(`cannot open ${file}: ${(e as NodeJS.ErrnoException).code}`);
    }
    let keep = false;
    try {
      if (lock.tryLock(fd, true)) {
        // The previous holder unlinks the file as it lets go: a lock on an unlinked file locks nothing.
        const mine = fs.fstatSync(fd);
        const now = fs.statSync(file, { throwIfNoEntry: false });
        if (!now || now.ino !== mine.ino || now.dev !== mine.dev) continue;
        const pidHolder = livePidHolder(parseLockInfo(fs.readFileSync(fd, 'utf8')));
        if (pidHolder) throw inUse(root, pidHolder);
        fs.ftruncateSync(fd, 0);
        fs.writeSync(fd, JSON.stringify(info), 0);
        keep = true;
        return () => {
          const now = fs.statSync(file, { throwIfNoEntry: false });
          if (now && now.ino === mine.ino && now.dev === mine.dev) fs.rmSync(file, { force: true });
          fs.closeSync(fd); // releases the lock
        };
      }
      if (Date.now() >= until) {
        let holder: LockInfo | undefined;
        try {
          holder = parseLockInfo(fs.readFileSync(fd, 'utf8'));
        } catch {
          /* unreadable: named as another process */
        }
        throw inUse(root, holder);
      }
    } finally {
      if (!keep) fs.closeSync(fd);
    }
    sleepSync(5);
  }
}

function acquirePidLock(root: string, mountpoint: string | undefined): () => void {
  const file = repoPaths(root).lock;
  const info: LockInfo = { pid: process.pid, mountpoint, started: new Date().toISOString(), lock: 'pid' };
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, JSON.stringify(info), { flag: 'wx', mode: 0o644 });
      return () => {
        try {
          const cur = JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo;
          if (cur.pid === process.pid) fs.unlinkSync(file);
        } catch {
          /* already gone */
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST')
        throw new RepoError(`cannot create ${file}: ${(e as NodeJS.ErrnoException).code}`);
      const holder = readLock(root);
      if (holder) throw inUse(root, holder);
      fs.rmSync(file, { force: true }); // stale: its process is gone
    }
  }
  throw new RepoError(`cannot lock ${file}`);
}
