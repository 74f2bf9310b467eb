/**
 * Backends by type name: `isg init --backend NAME=SPEC` text -> BackendSpec (plain JSON, kept in
 * the repository config) -> Backend.
 *
 * Decisions (why):
 * - The spec is a flat JSON object {name, type, tier, ...type options} rather than the command
 *   line text: the config must be read by later versions with no parser drift, and a flat
 *   object diffs and hand-edits well. The text form is only an input syntax.
 * - Syntax `NAME=TYPE:BODY[?k=v&...]`. The registry splits off the query and takes `tier` from
 *   it, so every type shares it; the BODY (a path, a URL without its query) and the remaining
 *   parameters belong to the type's `parse`, which must reject parameters it does not know
 *   (a typo must not silently become a default). Consequence: a local path cannot contain '?'.
 * - A type is one file exporting a BackendFactory plus one `registerBackend` line at the bottom
 *   of this file. Factories are cheap to import; heavy SDKs load inside `create`.
 * - Credentials may live in the spec (as rclone keeps them in its config): the repository must
 *   be mountable again without the user's shell environment. `redactSpec` hides them for display;
 *   `describe()` never shows them.
 */
import { Backend, TIERS, Tier } from './backend';
import { localFactory } from './local';
import { s3Factory } from './s3';
import { BackendFactory, BackendSpec, SpecValue } from './spec';

export type { BackendFactory, BackendSpec, SpecValue } from './spec';

const factories = new Map<string, BackendFactory>();

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const TYPE_RE = /^[a-z][a-z0-9-]{0,31}$/;

export function registerBackend(type: string, factory: BackendFactory): void {
  if (!TYPE_RE.test(type)) throw new Error(`invalid backend type name '${type}'`);
  if (factories.has(type)) throw new Error(`backend type '${type}' is already registered`);
  factories.set(type, factory);
}

export function backendTypes(): string[] {
  return [...factories.keys()].sort();
}

function factoryOf(type: string): BackendFactory {
  const f = factories.get(type);
  if (!f) throw new Error(`unknown backend type '${type}' (known: ${backendTypes().join(', ')})`);
  return f;
}

function parseTier(text: string, where: string): Tier {
  if (!(TIERS as readonly string[]).includes(text)) throw new Error(`${where}: tier must be one of ${TIERS.join(', ')}, not '${text}'`);
  return text as Tier;
}

/**
 * `NAME=TYPE:BODY[?k=v&...]` -> BackendSpec. Examples:
 *   disk1=local:/mnt/a/isg
 *   disk2=local:/mnt/b/isg?tier=cold
 *   s3a=s3:http://127.0.0.1:9000/bucket?region=us-east-1&tier=warm
 *   s3b=s3:https://s3.eu-west-1.amazonaws.com/bucket/some/prefix?accessKeyId=AKIA...&secretAccessKey=...
 */
export function parseBackendSpec(text: string): BackendSpec {
  const eq = text.indexOf('=');
  if (eq < 0) throw new Error(`backend '${text}': expected NAME=TYPE:SPEC, e.g. disk1=local:/mnt/a/isg`);
  const name = text.slice(0, eq);
  if (!NAME_RE.test(name))
    throw new Error(`backend name '${name}': use letters, digits, '_', '.', '-' (at most 64, starting with a letter or digit)`);
  const rest = text.slice(eq + 1);
  const colon = rest.indexOf(':');
  if (colon < 0) throw new Error(`backend '${name}': expected TYPE:SPEC after '=', e.g. local:/mnt/a/isg`);
  const type = rest.slice(0, colon);
  const factory = factoryOf(type);
  const afterType = rest.slice(colon + 1);
  const q = afterType.indexOf('?');
  const body = q < 0 ? afterType : afterType.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : afterType.slice(q + 1));
  const tierText = params.get('tier');
  params.delete('tier');
  const tier = tierText === null ? factory.defaultTier : parseTier(tierText, `backend '${name}'`);
  let options: Record<string, SpecValue>;
  try {
    options = factory.parse(body, params);
  } catch (e) {
    throw new Error(`backend '${name}': ${(e as Error).message}`, { cause: e });
  }
  return { ...options, name, type, tier };
}

/** Checks the common fields of a spec (e.g. one read back from a config file). */
export function validateBackendSpec(spec: BackendSpec): BackendSpec {
  if (typeof spec !== 'object' || spec === null) throw new Error('backend spec must be an object');
  if (typeof spec.name !== 'string' || !NAME_RE.test(spec.name)) throw new Error(`invalid backend name ${JSON.stringify(spec.name)}`);
  factoryOf(spec.type);
  parseTier(String(spec.tier), `backend '${spec.name}'`);
  for (const [k, v] of Object.entries(spec)) {
    if (v !== undefined && typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      throw new Error(`backend '${spec.name}': option '${k}' must be a string, number or boolean`);
    }
  }
  return spec;
}

/** Opens the backend a spec describes. Throws a plain Error for an invalid spec. */
export async function createBackend(spec: BackendSpec): Promise<Backend> {
  validateBackendSpec(spec);
  return factoryOf(spec.type).create(spec);
}

/** Prepares a backend for a new repository (`isg init`): creates the directory, checks the bucket. */
export async function initBackend(spec: BackendSpec): Promise<void> {
  validateBackendSpec(spec);
  await factoryOf(spec.type).init?.(spec);
}

/** The spec with secret options replaced by '***', for display and logs. */
export function redactSpec(spec: BackendSpec): BackendSpec {
  const out: BackendSpec = { ...spec };
  for (const k of factories.get(spec.type)?.secrets ?? []) if (out[k] !== undefined) out[k] = '***';
  return out;
}

/** Option names of a spec that are credentials, secret or not (never stored on a backend). */
export function credentialOptions(type: string): string[] {
  const f = factoryOf(type);
  return [...(f.secrets ?? []), ...(f.credentials ?? [])];
}

/** The spec without credentials: what the format record on the backends holds. */
export function publicSpec(spec: BackendSpec): BackendSpec {
  const out: BackendSpec = { ...spec };
  for (const k of credentialOptions(spec.type)) delete out[k];
  return out;
}

// Built-in types: one line each.
registerBackend('local', localFactory);
registerBackend('s3', s3Factory);
