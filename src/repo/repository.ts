/**
 * A repository is a data directory: `config` (format record), `key` (master key, maybe wrapped),
 * `meta/` (LMDB), `cache/` (the local block tier) and, while a process has it open for writing,
 * `lock` (its pid and mountpoint).
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { deriveSubkey, KeyFile, newMasterKey, parseKeyFile, unwrapMasterKey, wrapMasterKey } from '../crypto/keys';
import { defaultConfig, RepoConfig, validateConfig } from './format';
import { deriveGearTable } from '../chunk';
import { BlockKeys } from '../block/codec';
import type { BackendSpec } from '../backend/spec';
import { initBackend } from '../backend/registry';
import { Meta } from '../meta/meta';

export class RepoError extends Error {}

export interface RepoPaths {
  root: string;
  config: string;
  key: string;
  meta: string;
  cache: string;
  blocks: string;
  lock: string;
}

export function repoPaths(root: string): RepoPaths {
  const r = path.resolve(root);
  return {
    root: r,
    config: path.join(r, 'config'),
    key: path.join(r, 'key'),
    meta: path.join(r, 'meta'),
    cache: path.join(r, 'cache'),
    blocks: path.join(r, 'cache', 'blocks'),
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
  const kf = await wrapMasterKey(newMasterKey(), opts.password);
  for (const spec of config.storage.backends) await initBackend(resolveBackendSpec(spec, p.root));
  await fs.promises.mkdir(p.blocks, { recursive: true });
  await fs.promises.mkdir(p.meta, { recursive: true });
  // The metadata database exists from the start, so read-only users (status, check) can open it.
  const meta = new Meta(p.meta);
  meta.initialise(process.getuid?.() ?? 0, process.getgid?.() ?? 0);
  await meta.sync();
  await meta.close();
  await writeFileDurable(p.key, JSON.stringify(kf, null, 2) + '\n', 0o600);
  // config last: its presence is what marks a complete repository.
  await writeFileDurable(p.config, JSON.stringify(config, null, 2) + '\n', 0o600); // may hold S3 secrets
  return config;
}

async function writeFileDurable(file: string, data: string, mode: number): Promise<void> {
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
}

export interface OpenedRepo {
  paths: RepoPaths;
  config: RepoConfig;
  keys: RepoKeys;
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
  return { paths: p, config, keys: deriveRepoKeys(master) };
}

export function deriveRepoKeys(master: Buffer): RepoKeys {
  return {
    master,
    block: { idKey: deriveSubkey(master, 'block-id'), encKey: deriveSubkey(master, 'block-enc') },
    gear: deriveGearTable(deriveSubkey(master, 'chunker')),
    pack: deriveSubkey(master, 'pack'),
  };
}

/** The write lock: one process at a time may open a repository for writing. */
export interface LockInfo {
  pid: number;
  mountpoint?: string;
  started: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function readLock(root: string): LockInfo | undefined {
  try {
    const info = JSON.parse(fs.readFileSync(repoPaths(root).lock, 'utf8')) as LockInfo;
    return alive(info.pid) ? info : undefined;
  } catch {
    return undefined;
  }
}

export function acquireLock(root: string, mountpoint?: string): () => void {
  const file = repoPaths(root).lock;
  const info: LockInfo = { pid: process.pid, mountpoint, started: new Date().toISOString() };
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
      if (holder) {
        throw new RepoError(
          `repository ${repoPaths(root).root} is already in use by pid ${holder.pid}` +
            (holder.mountpoint ? ` (mounted on ${holder.mountpoint})` : ''),
        );
      }
      fs.rmSync(file, { force: true }); // stale: its process is gone
    }
  }
  throw new RepoError(`cannot lock ${file}`);
}
