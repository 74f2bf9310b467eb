/**
 * Keys: one random 32-byte master key per repository; every purpose gets its own HKDF subkey,
 * so a leak of one (say the chunker's gear table) says nothing about the others.
 * The master key is stored plain in a 0600 file, or wrapped with an Argon2id-derived key.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { argon2id } from 'hash-wasm';

export const MASTER_KEY_BYTES = 32;

export type SubkeyPurpose = 'block-id' | 'block-enc' | 'chunker' | 'pack' | 'snapshot';

export function deriveSubkey(master: Uint8Array, purpose: SubkeyPurpose, length = 32): Buffer {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), `isgfs ${purpose} v1`, length));
}

export class WrongPasswordError extends Error {
  constructor() {
    super('wrong password: the key file could not be unwrapped');
  }
}

export interface Argon2Params {
  memoryKiB: number;
  iterations: number;
  parallelism: number;
}

/** OWASP's second recommended Argon2id setting; ~0.2 s here. */
export const DEFAULT_ARGON2: Argon2Params = { memoryKiB: 19 * 1024, iterations: 2, parallelism: 1 };

/** The on-disk `key` file, versioned. */
export type KeyFile =
  | { version: 1; kdf: 'none'; key: string }
  | { version: 1; kdf: 'argon2id'; params: Argon2Params; salt: string; nonce: string; wrapped: string; tag: string };

async function passwordKey(password: string, salt: Buffer, p: Argon2Params): Promise<Buffer> {
  const out = await argon2id({
    password, salt, iterations: p.iterations, parallelism: p.parallelism, memorySize: p.memoryKiB,
    hashLength: 32, outputType: 'binary',
  });
  return Buffer.from(out);
}

const WRAP_AAD = Buffer.from('isgfs key v1');

export async function wrapMasterKey(master: Buffer, password: string | undefined, params = DEFAULT_ARGON2): Promise<KeyFile> {
  if (password === undefined) return { version: 1, kdf: 'none', key: master.toString('base64') };
  const salt = randomBytes(16);
  const nonce = randomBytes(12);
  const kek = await passwordKey(password, salt, params);
  const c = createCipheriv('aes-256-gcm', kek, nonce);
  c.setAAD(WRAP_AAD);
  const wrapped = Buffer.concat([c.update(master), c.final()]);
  return {
    version: 1, kdf: 'argon2id', params, salt: salt.toString('base64'), nonce: nonce.toString('base64'),
    wrapped: wrapped.toString('base64'), tag: c.getAuthTag().toString('base64'),
  };
}

export async function unwrapMasterKey(kf: KeyFile, password: string | undefined): Promise<Buffer> {
  if (kf.version !== 1) throw new Error(`key file version ${String((kf as { version: unknown }).version)} is not supported`);
  if (kf.kdf === 'none') {
    if (password !== undefined) throw new Error('this repository has no password, but a password file was given');
    return Buffer.from(kf.key, 'base64');
  }
  if (password === undefined) throw new Error('this repository is password-protected: give --password-file');
  const kek = await passwordKey(password, Buffer.from(kf.salt, 'base64'), kf.params);
  const d = createDecipheriv('aes-256-gcm', kek, Buffer.from(kf.nonce, 'base64'));
  d.setAAD(WRAP_AAD);
  d.setAuthTag(Buffer.from(kf.tag, 'base64'));
  try {
    return Buffer.concat([d.update(Buffer.from(kf.wrapped, 'base64')), d.final()]);
  } catch {
    throw new WrongPasswordError();
  }
}

export function newMasterKey(): Buffer {
  return randomBytes(MASTER_KEY_BYTES);
}
