/**
 * The repository's `config`: its format record. Every algorithm stage is named here, so a
 * repository is always read with the algorithms it was written with.
 */
import { ChunkerParams, DEFAULT_CHUNKER, validateChunkerParams } from '../chunk';
import { CompressionSpec } from '../block/compression';
import type { BackendSpec } from '../backend/spec';

export const REPO_FORMAT = 1;

export interface RepoConfig {
  format: typeof REPO_FORMAT;
  id: string;
  created: string;
  chunker: { name: 'fastcdc-gear32' } & ChunkerParams;
  hash: 'blake3-keyed';
  compression: CompressionSpec;
  cipher: 'aes-256-gcm';
  cache: { memoryBytes: number; diskBytes: number };
  storage: {
    /** Reed-Solomon: k data + m parity shards per pack. */
    ec: { name: 'rs-gf8'; k: number; m: number };
    packSize: number;
    /** A partial pack is sealed when its oldest block has waited this long. */
    packQuietMs: number;
    /** Local backends may give a path relative to the data directory (the embedded default does). */
    backends: BackendSpec[];
  };
}

/** The embedded default: six local backends inside the data directory, one per shard of 4+2. */
export function embeddedBackends(n = 6): BackendSpec[] {
  return Array.from({ length: n }, (_, i) => ({ name: `local${i}`, type: 'local', tier: 'hot' as const, path: `backends/local${i}` }));
}

/** "4+2" -> {k: 4, m: 2} */
export function parseEc(text: string): { k: number; m: number } {
  const m = /^(\d+)\+(\d+)$/.exec(text.trim());
  if (!m) throw new Error(`--ec wants K+M, e.g. 4+2 (got '${text}')`);
  const k = Number(m[1]);
  const mm = Number(m[2]);
  if (k < 1 || mm < 0 || k + mm > 255) throw new Error(`--ec ${text}: need k >= 1, m >= 0, k + m <= 255`);
  return { k, m: mm };
}

export function defaultConfig(id: string): RepoConfig {
  return {
    format: REPO_FORMAT,
    id,
    created: new Date().toISOString(),
    chunker: { name: 'fastcdc-gear32', ...DEFAULT_CHUNKER },
    hash: 'blake3-keyed',
    compression: { name: 'zstd', level: 3 },
    cipher: 'aes-256-gcm',
    cache: { memoryBytes: 256 * 1024 * 1024, diskBytes: 10 * 1024 ** 3 },
    storage: { ec: { name: 'rs-gf8', k: 4, m: 2 }, packSize: 16 * 1024 * 1024, packQuietMs: 10_000, backends: embeddedBackends() },
  };
}

export function validateConfig(c: RepoConfig): RepoConfig {
  if (c.format !== REPO_FORMAT)
    throw new Error(`repository format ${String(c.format)} is not supported by this isg (format ${REPO_FORMAT})`);
  if (c.chunker?.name !== 'fastcdc-gear32') throw new Error(`unknown chunker '${String(c.chunker?.name)}'`);
  validateChunkerParams(c.chunker);
  if (c.hash !== 'blake3-keyed') throw new Error(`unknown hash '${String(c.hash)}'`);
  if (c.cipher !== 'aes-256-gcm') throw new Error(`unknown cipher '${String(c.cipher)}'`);
  const st = c.storage;
  if (st?.ec?.name !== 'rs-gf8') throw new Error(`unknown erasure code '${String(st?.ec?.name)}'`);
  if (st.backends.length < st.ec.k + st.ec.m) {
    throw new Error(`${st.ec.k}+${st.ec.m} erasure coding needs at least ${st.ec.k + st.ec.m} backends; ${st.backends.length} configured`);
  }
  const names = new Set(st.backends.map((b) => b.name));
  if (names.size !== st.backends.length) throw new Error('backend names must be unique');
  return c;
}

export { parseSize } from '../util/size';
