/**
 * The format record and the key envelope on every backend (docs/formats.md "On the backends"),
 * so the backends describe the repository without the data directory.
 *
 * Decisions (why):
 * - The format record is the `config` file's JSON with the credentials of every backend spec
 *   left out (publicSpec): the same format a reader already knows, and no secret on a backend.
 *   Local paths stay as they are (relative ones are relative to the data directory that wrote
 *   them; a new machine gives its own backend specs anyway).
 * - The key envelope is the key file's JSON, and only when it is wrapped (Argon2id): with no
 *   password the key file holds the master key in plain, and that must never reach a backend.
 *   Such a repository cannot be opened from its backends alone without the local key file.
 * - Neither object is authenticated by itself (no key is known before the envelope is opened);
 *   readers validate every field, and the envelope's AES-GCM tag authenticates the master key.
 * - A read-write open puts them where they are missing or differ from the local copy (the data
 *   directory is the authority for both today), best effort: an unreachable backend is named,
 *   not fatal. A backend holding another repository's record is fatal: two repositories must
 *   not share backends (their heads and leases would collide).
 */
import { Backend, CallOptions } from '../backend/backend';
import { credentialOptions, publicSpec, validateBackendSpec } from '../backend/registry';
import { KeyFile, parseKeyFile } from '../crypto/keys';
import { FORMAT_RECORD_KEY, getSmallObject, KEY_ENVELOPE_KEY, onEveryBackend, OversizeObjectError } from '../head/objects';
import { RepoConfig, validateConfig } from './format';

export { FORMAT_RECORD_KEY, KEY_ENVELOPE_KEY };

/** Largest format record a reader accepts (a config with a hundred backends is ~30 KB). */
export const FORMAT_RECORD_MAX_BYTES = 1024 * 1024;
/** Largest key envelope a reader accepts (as the local key file). */
export const KEY_ENVELOPE_MAX_BYTES = 64 * 1024;

export class RecordError extends Error {
  constructor(message: string, opts?: { cause?: unknown }) {
    super(message, opts);
    this.name = 'RecordError';
  }
}

/** The config as the backends hold it: every backend spec without its credentials. */
export function formatRecordOf(config: RepoConfig): RepoConfig {
  const copy = JSON.parse(JSON.stringify(config)) as RepoConfig;
  copy.storage.backends = copy.storage.backends.map((s) => publicSpec(s));
  return copy;
}

export function encodeFormatRecord(config: RepoConfig): Buffer {
  return Buffer.from(JSON.stringify(formatRecordOf(config), null, 2) + '\n', 'utf8');
}

/** Parses a format record read from `where`; throws RecordError saying what is wrong. */
export function parseFormatRecord(data: Buffer, where: string): RepoConfig {
  let v: unknown;
  try {
    v = JSON.parse(data.toString('utf8'));
  } catch (e) {
    throw new RecordError(`${where}: the format record is not JSON (${(e as Error).message})`, { cause: e });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new RecordError(`${where}: the format record is not a JSON object`);
  const c = v as RepoConfig;
  try {
    if (typeof c.id !== 'string' || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(c.id))
      throw new Error(`id ${JSON.stringify(c.id)} is not a UUID`);
    if (!Array.isArray(c.storage?.backends)) throw new Error('storage.backends is not a list');
    validateConfig(c);
    for (const spec of c.storage.backends) {
      validateBackendSpec(spec);
      const secret = credentialOptions(spec.type).find((k) => spec[k] !== undefined);
      if (secret) throw new Error(`backend '${spec.name}' holds credential '${secret}', which a format record never does`);
    }
  } catch (e) {
    throw new RecordError(`${where}: the format record is invalid: ${(e as Error).message}`, { cause: e });
  }
  return c;
}

/** The key envelope of a key file, or null when the key file is not wrapped (no password). */
export function encodeKeyEnvelope(kf: KeyFile): Buffer | null {
  if (kf.kdf !== 'argon2id') return null;
  return Buffer.from(JSON.stringify(kf, null, 2) + '\n', 'utf8');
}

/** Parses a key envelope read from `where`: a valid key file (parseKeyFile's bounds), wrapped. */
export function parseKeyEnvelope(data: Buffer, where: string): KeyFile {
  const kf = parseKeyFile(data.toString('utf8'), where); // KeyFileError names the bad field
  if (kf.kdf !== 'argon2id') throw new RecordError(`${where}: a key envelope must be password-wrapped, this one holds a plain key`);
  return kf;
}

export async function readFormatRecord(b: Backend, opts?: CallOptions): Promise<RepoConfig | null> {
  const data = await getSmallObject(b, FORMAT_RECORD_KEY, FORMAT_RECORD_MAX_BYTES, opts);
  return data && parseFormatRecord(data, `${b.name}: ${FORMAT_RECORD_KEY}`);
}

export async function readKeyEnvelope(b: Backend, opts?: CallOptions): Promise<KeyFile | null> {
  const data = await getSmallObject(b, KEY_ENVELOPE_KEY, KEY_ENVELOPE_MAX_BYTES, opts);
  return data && parseKeyEnvelope(data, `${b.name}: ${KEY_ENVELOPE_KEY}`);
}

/** Refuses (RecordError) when any backend already holds a repository: `isg init` writes nothing then. */
export async function checkBackendsUnused(backends: readonly Backend[]): Promise<void> {
  for (const b of backends) {
    const info = await b.stat(FORMAT_RECORD_KEY);
    if (!info) continue;
    let which: string;
    try {
      which = ` ${(await readFormatRecord(b))?.id ?? ''}`;
    } catch {
      which = ' (its format record is unreadable)';
    }
    throw new RecordError(`backend '${b.name}' already holds repository${which}: give each repository its own backends`);
  }
}

export interface RecordsWritten {
  /** Backends given one or both objects now. */
  written: string[];
  /** Backends that already held both, as they are. */
  unchanged: string[];
  failed: { backend: string; error: Error }[];
}

/**
 * Makes every backend hold this repository's format record and (when the key is wrapped) key
 * envelope: reads what each holds, puts what is missing or different. Throws RecordError when a
 * backend holds another repository's format record; other failures are returned per backend.
 */
export async function ensureRecords(
  backends: readonly Backend[],
  config: RepoConfig,
  kf: KeyFile,
  opts?: CallOptions,
): Promise<RecordsWritten> {
  const record = encodeFormatRecord(config);
  const envelope = encodeKeyEnvelope(kf);
  const out: RecordsWritten = { written: [], unchanged: [], failed: [] };
  const per = await onEveryBackend(backends, async (b) => {
    let wrote = false;
    const have = await getSmallObject(b, FORMAT_RECORD_KEY, FORMAT_RECORD_MAX_BYTES, opts).catch((e: unknown) => {
      if (e instanceof OversizeObjectError) return null; // damaged: replaced below
      throw e;
    });
    if (have && !have.equals(record)) {
      let id: string | undefined;
      try {
        id = parseFormatRecord(have, b.name).id;
      } catch {
        /* damaged: replaced */
      }
      if (id !== undefined && id !== config.id)
        throw new RecordError(`backend '${b.name}' holds repository ${id}, not this one (${config.id})`);
    }
    if (!have?.equals(record)) {
      await b.put(FORMAT_RECORD_KEY, record, opts);
      wrote = true;
    }
    if (envelope) {
      const env = await getSmallObject(b, KEY_ENVELOPE_KEY, KEY_ENVELOPE_MAX_BYTES, opts).catch(() => null);
      if (!env?.equals(envelope)) {
        await b.put(KEY_ENVELOPE_KEY, envelope, opts);
        wrote = true;
      }
    }
    return wrote;
  });
  const foreign = per.failed.find((f) => f.error instanceof RecordError);
  if (foreign) throw foreign.error;
  for (const { backend, value } of per.ok) (value ? out.written : out.unchanged).push(backend);
  out.failed = per.failed;
  return out;
}
