/**
 * Block codec: id = keyed BLAKE3 of the plaintext; encoded = header | nonce | AEAD(compressed?) | tag.
 *
 *   byte 0   format version (1)
 *   byte 1   flags: bit 0 = compressed; bits 1..3 = object kind (ObjectKind); bits 4..7 zero
 *   byte 2   cipher id (1 = AES-256-GCM)
 *   3..15    96-bit random nonce
 *   15..n-16 ciphertext
 *   n-16..n  GCM tag
 *
 * The AES key of a block is keyed-BLAKE3(block-enc subkey, id): a nonce could only repeat under
 * one key for the same id, i.e. the same plaintext, so random nonces are safe at any block count.
 * The header and the id are the associated data: a block swapped for another, a flipped flag or a
 * wrong key is rejected; after decryption the plaintext is hashed again and must give the id.
 * The object kind is in the header, so it is authenticated with the rest: a decoder told the kind
 * it expects refuses a block of another kind, and no kind can be passed off as another.
 */
import { randomBytes } from 'node:crypto';
import { aesGcmOpen, aesGcmSeal, blake3Keyed } from '../native';
import { Compression } from './compression';
import { IsgError, registerErrorClass } from '../errors';

export const BLOCK_FORMAT_VERSION = 1;
export const CIPHER_AES_256_GCM = 1;
const HEADER = 3;
const NONCE = 12;
const TAG = 16;
export const BLOCK_OVERHEAD = HEADER + NONCE + TAG;

/** What a block holds (docs/formats.md "Block"): header byte 1, bits 1..3. */
export const ObjectKind = { data: 0, tree: 1, chunkList: 2, index: 3, snapshotList: 4 } as const;
export type ObjectKind = (typeof ObjectKind)[keyof typeof ObjectKind];
const KIND_SHIFT = 1;
const KIND_MASK = 7;
const FLAG_COMPRESSED = 1;
/** Flag bits this isgfs knows; a block with another set is refused. */
const KNOWN_FLAGS = FLAG_COMPRESSED | (KIND_MASK << KIND_SHIFT);
const KIND_NAMES = ['data', 'tree', 'chunk list', 'index', 'snapshot list', 'kind 5', 'kind 6', 'kind 7'];

/** The kind an encoded block's header names (authenticated only once the block decodes). */
export function kindOfEncoded(encoded: Uint8Array): number {
  return (encoded[1] >> KIND_SHIFT) & KIND_MASK;
}

/**
 * Throws a BlockCorruptError unless the encoded block's header names `expected`. Sound before the
 * decryption: the header is associated data, so a header that passes here and then decodes is
 * the writer's.
 */
export function checkKind(id: Buffer, encoded: Uint8Array, expected: ObjectKind | undefined): void {
  if (encoded.length < HEADER) return; // the decoder reports it truncated
  if ((encoded[1] & ~KNOWN_FLAGS) !== 0) throw new BlockCorruptError(id.toString('hex'), `unknown flags ${encoded[1]}`);
  if (expected === undefined) return;
  const kind = kindOfEncoded(encoded);
  if (kind !== expected) throw new BlockCorruptError(id.toString('hex'), `is a ${KIND_NAMES[kind]} object, not ${KIND_NAMES[expected]}`);
}

/** A block whose bytes fail their checks (kind 'corrupt'); the same class out of a worker or the addon. */
export class BlockCorruptError extends IsgError {
  constructor(
    readonly blockId: string,
    why: string,
  ) {
    super('corrupt', `block ${blockId.slice(0, 16)}…: ${why}`);
  }
}
registerErrorClass(BlockCorruptError);

export interface BlockKeys {
  idKey: Buffer; // keyed BLAKE3 key for ids
  encKey: Buffer; // keyed BLAKE3 key for per-block AES keys
}

export function blockId(keys: BlockKeys, plain: Uint8Array): Buffer {
  return blake3Keyed(keys.idKey, plain);
}

function aad(header: Uint8Array, id: Uint8Array): Buffer {
  return Buffer.concat([header, id]);
}

const SAMPLE = 64 * 1024;

/**
 * Incompressible data (media, archives, encrypted files) is recognised from one 64 KiB sample in
 * the middle of the block, as borg's "auto" mode does: compressing the sample costs ~40 µs, the
 * whole 1 MiB block ~1 ms for nothing.
 */
function worthCompressing(compression: Compression, plain: Uint8Array): boolean {
  if (plain.length <= 2 * SAMPLE) return true;
  const at = (plain.length >> 1) - (SAMPLE >> 1);
  return compression.compress(plain.subarray(at, at + SAMPLE)).length < SAMPLE - (SAMPLE >> 4);
}

export function encodeBlock(
  keys: BlockKeys,
  compression: Compression,
  id: Buffer,
  plain: Uint8Array,
  kind: ObjectKind = ObjectKind.data,
): Buffer {
  if (!Number.isInteger(kind) || kind < 0 || kind > KIND_MASK) throw new RangeError(`bad object kind ${kind}`);
  let body: Uint8Array = plain;
  let flags = kind << KIND_SHIFT;
  if (compression.name !== 'none' && plain.length > 64 && worthCompressing(compression, plain)) {
    const packed = compression.compress(plain);
    // Stored raw unless compression saves at least 1/32: decompressing for nothing costs reads.
    if (packed.length < plain.length - (plain.length >> 5)) {
      body = packed;
      flags |= FLAG_COMPRESSED;
    }
  }
  const out = Buffer.allocUnsafe(HEADER + NONCE + body.length + TAG);
  out[0] = BLOCK_FORMAT_VERSION;
  out[1] = flags;
  out[2] = CIPHER_AES_256_GCM;
  const nonce = out.subarray(HEADER, HEADER + NONCE);
  randomBytes(NONCE).copy(nonce);
  aesGcmSeal(blake3Keyed(keys.encKey, id), nonce, aad(out.subarray(0, HEADER), id), body, out.subarray(HEADER + NONCE));
  return out;
}

/** The plaintext of an encoded block, verified; with `kind`, only a block of that kind. */
export function decodeBlock(keys: BlockKeys, compression: Compression, id: Buffer, encoded: Uint8Array, kind?: ObjectKind): Buffer {
  const hex = id.toString('hex');
  if (encoded.length < BLOCK_OVERHEAD) throw new BlockCorruptError(hex, 'truncated');
  checkKind(id, encoded, kind);
  if (encoded[0] !== BLOCK_FORMAT_VERSION) throw new BlockCorruptError(hex, `unknown block format version ${encoded[0]}`);
  if (encoded[2] !== CIPHER_AES_256_GCM) throw new BlockCorruptError(hex, `unknown cipher ${encoded[2]}`);
  const ct = encoded.subarray(HEADER + NONCE, encoded.length - TAG);
  const body = Buffer.allocUnsafe(ct.length);
  const authentic = aesGcmOpen(
    blake3Keyed(keys.encKey, id),
    encoded.subarray(HEADER, HEADER + NONCE),
    aad(encoded.subarray(0, HEADER), id),
    ct,
    encoded.subarray(encoded.length - TAG),
    body,
  );
  if (!authentic) throw new BlockCorruptError(hex, 'authentication failed (corrupt, swapped, or a wrong key)');
  const plain = encoded[1] & FLAG_COMPRESSED ? compression.decompress(body) : body;
  if (!blockId(keys, plain).equals(id)) throw new BlockCorruptError(hex, 'content does not hash to its id');
  return plain;
}
