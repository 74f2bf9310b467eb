/**
 * The repository's `config`: its format record. Every algorithm stage is named here, so a
 * repository is always read with the algorithms it was written with.
 */
import { ChunkerParams, DEFAULT_CHUNKER, validateChunkerParams } from '../chunk/fastcdc';
import { CompressionSpec } from '../block/compression';

export const REPO_FORMAT = 1;

export interface RepoConfig {
  format: typeof REPO_FORMAT;
  id: string;
  created: string;
  chunker: { name: 'fastcdc-gear32' } & ChunkerParams;
  hash: 'blake3-keyed';
  compression: CompressionSpec;
  cipher: 'aes-256-gcm';
  cache: { memoryBytes: number };
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
    cache: { memoryBytes: 256 * 1024 * 1024 },
  };
}

export function validateConfig(c: RepoConfig): RepoConfig {
  if (c.format !== REPO_FORMAT) throw new Error(`repository format ${String(c.format)} is not supported by this isg (format ${REPO_FORMAT})`);
  if (c.chunker?.name !== 'fastcdc-gear32') throw new Error(`unknown chunker '${String(c.chunker?.name)}'`);
  validateChunkerParams(c.chunker);
  if (c.hash !== 'blake3-keyed') throw new Error(`unknown hash '${String(c.hash)}'`);
  if (c.cipher !== 'aes-256-gcm') throw new Error(`unknown cipher '${String(c.cipher)}'`);
  return c;
}

/** "64M", "1G", "512k", "1048576" -> bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw new Error(`not a size: '${text}' (use bytes or a K/M/G/T suffix)`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.floor(parseFloat(m[1]) * mult);
}
