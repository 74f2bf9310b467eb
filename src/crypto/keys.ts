/**
 * Keys: one random 32-byte master key per repository; every purpose gets its own HKDF subkey,
 * so a leak of one (say the chunker's gear table) says nothing about the others.
 * The master key is stored plain in a 0600 file, or wrapped with an Argon2id-derived key.
 */
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, hkdfSync, KeyObject, randomBytes } from 'node:crypto';
import { argon2id } from 'hash-wasm';

export const MASTER_KEY_BYTES = 32;

export type SubkeyPurpose = 'block-id' | 'block-enc' | 'chunker' | 'pack' | 'meta' | 'snapshot' | 'head';

export function deriveSubkey(master: Uint8Array, purpose: SubkeyPurpose, length = 32): Buffer {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), `isgfs ${purpose} v1`, length));
}

/** An Ed25519 key pair; `publicRaw` is the 32-byte public key of RFC 8032. */
export interface SigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicRaw: Buffer;
}

// node:crypto imports raw Ed25519 keys only wrapped in DER: these are the fixed prefixes of
// RFC 8410's PKCS#8 private key (seed follows) and SubjectPublicKeyInfo (public key follows).
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** The Ed25519 key pair of a 32-byte seed (RFC 8032's "private key"). */
export function ed25519FromSeed(seed: Uint8Array): SigningKey {
  if (seed.length !== 32) throw new Error(`an Ed25519 seed is 32 bytes, not ${seed.length}`);
  const privateKey = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const publicKey = createPublicKey(privateKey);
  const publicRaw = publicKey.export({ format: 'der', type: 'spki' }).subarray(ED25519_SPKI_PREFIX.length);
  return { privateKey, publicKey, publicRaw: Buffer.from(publicRaw) };
}

/** An Ed25519 public key from its 32 raw bytes. */
export function ed25519PublicKey(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new Error(`an Ed25519 public key is 32 bytes, not ${raw.length}`);
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** The key that signs heads: Ed25519 with the `head` subkey as its seed. */
export function headSigningKey(master: Uint8Array): SigningKey {
  return ed25519FromSeed(deriveSubkey(master, 'head'));
}

export class WrongPasswordError extends Error {
  constructor() {
    super('wrong password: the key file could not be unwrapped');
  }
}

/** A key file that is not one this version writes or accepts; `field` names the first bad field. */
export class KeyFileError extends Error {
  constructor(
    readonly field: string,
    problem: string,
    source = 'key file',
  ) {
    super(`${source}: ${field} ${problem}`);
  }
}

export interface Argon2Params {
  memoryKiB: number;
  iterations: number;
  parallelism: number;
}

/** RFC 9106's second recommended Argon2id setting (section 4): 64 MiB, t = 3, p = 4; ~0.55 s here. */
export const DEFAULT_ARGON2: Argon2Params = { memoryKiB: 64 * 1024, iterations: 3, parallelism: 4 };

/**
 * Bounds on the parameters a key file may ask for, so a hostile or damaged one cannot make
 * `isg mount` allocate 100 GiB or spin for hours: at most 1 GiB, 16 passes, 16 lanes, and
 * memory × passes at most 2 GiB (about 12 s here; the default costs 192 MiB). Key files written
 * before RFC 9106's setting (19 MiB, t = 2, p = 1) are well inside.
 */
export const ARGON2_LIMITS = { maxMemoryKiB: 1024 * 1024, maxIterations: 16, maxParallelism: 16, maxWorkKiB: 2 * 1024 * 1024 };

/** Byte lengths of the decoded base64 fields. */
const SALT_BYTES = { min: 8, max: 64 };
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/** The on-disk `key` file, versioned. */
export type KeyFile =
  | { version: 1; kdf: 'none'; key: string }
  | { version: 1; kdf: 'argon2id'; params: Argon2Params; salt: string; nonce: string; wrapped: string; tag: string };

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function base64Field(o: Record<string, unknown>, field: string, min: number, max: number, source: string): void {
  const v = o[field];
  if (typeof v !== 'string') throw new KeyFileError(field, `must be a base64 string, not ${describe(v)}`, source);
  if (v.length > 4 * Math.ceil(max / 3) || !BASE64.test(v)) throw new KeyFileError(field, 'is not base64 of the expected length', source);
  const n = Buffer.from(v, 'base64').length;
  if (n < min || n > max) throw new KeyFileError(field, `decodes to ${n} bytes, expected ${min === max ? min : `${min}..${max}`}`, source);
}

function intField(o: Record<string, unknown>, field: string, min: number, max: number, source: string): number {
  const v = o[field];
  if (typeof v !== 'number' || !Number.isInteger(v))
    throw new KeyFileError(`params.${field}`, `must be an integer, not ${describe(v)}`, source);
  if (v < min || v > max) throw new KeyFileError(`params.${field}`, `is ${v}, outside ${min}..${max}`, source);
  return v;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'number') return String(v);
  return typeof v;
}

/**
 * Parses and validates a key file's text before anything is derived from it: version, kdf,
 * Argon2 parameters within ARGON2_LIMITS, and every base64 field of its exact length.
 * Throws KeyFileError naming the first bad field. `source` (the file's path) prefixes the message.
 */
export function parseKeyFile(text: string, source = 'key file'): KeyFile {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new KeyFileError('JSON', `is damaged (${(e as Error).message})`, source);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new KeyFileError('the content', `must be a JSON object, not ${describe(v)}`, source);
  const o = v as Record<string, unknown>;
  if (o.version !== 1)
    throw new KeyFileError('version', `${JSON.stringify(o.version) ?? 'missing'} is not supported (this isgfs reads version 1)`, source);
  if (o.kdf === 'none') {
    base64Field(o, 'key', MASTER_KEY_BYTES, MASTER_KEY_BYTES, source);
    return { version: 1, kdf: 'none', key: o.key as string };
  }
  if (o.kdf !== 'argon2id')
    throw new KeyFileError('kdf', `${JSON.stringify(o.kdf) ?? 'missing'} is not supported (argon2id or none)`, source);
  const p = o.params;
  if (typeof p !== 'object' || p === null || Array.isArray(p))
    throw new KeyFileError('params', `must be an object, not ${describe(p)}`, source);
  const pr = p as Record<string, unknown>;
  const L = ARGON2_LIMITS;
  const parallelism = intField(pr, 'parallelism', 1, L.maxParallelism, source);
  const iterations = intField(pr, 'iterations', 1, L.maxIterations, source);
  // Argon2 needs 8 KiB per lane.
  const memoryKiB = intField(pr, 'memoryKiB', 8 * parallelism, L.maxMemoryKiB, source);
  if (memoryKiB * iterations > L.maxWorkKiB) {
    throw new KeyFileError('params', `memoryKiB × iterations = ${memoryKiB * iterations} exceeds ${L.maxWorkKiB}`, source);
  }
  base64Field(o, 'salt', SALT_BYTES.min, SALT_BYTES.max, source);
  base64Field(o, 'nonce', NONCE_BYTES, NONCE_BYTES, source);
  base64Field(o, 'tag', TAG_BYTES, TAG_BYTES, source);
  base64Field(o, 'wrapped', MASTER_KEY_BYTES, MASTER_KEY_BYTES, source);
  return {
    version: 1,
    kdf: 'argon2id',
    params: { memoryKiB, iterations, parallelism },
    salt: o.salt as string,
    nonce: o.nonce as string,
    wrapped: o.wrapped as string,
    tag: o.tag as string,
  };
}

async function passwordKey(password: string, salt: Buffer, p: Argon2Params): Promise<Buffer> {
  const out = await argon2id({
    password,
    salt,
    iterations: p.iterations,
    parallelism: p.parallelism,
    memorySize: p.memoryKiB,
    hashLength: 32,
    outputType: 'binary',
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
    version: 1,
    kdf: 'argon2id',
    params,
    salt: salt.toString('base64'),
    nonce: nonce.toString('base64'),
    wrapped: wrapped.toString('base64'),
    tag: c.getAuthTag().toString('base64'),
  };
}

/** Unwraps a key file; the file is validated first (parseKeyFile) whatever its origin. */
export async function unwrapMasterKey(keyFile: KeyFile, password: string | undefined): Promise<Buffer> {
  const kf = parseKeyFile(JSON.stringify(keyFile));
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
