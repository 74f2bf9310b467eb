/**
 * BackendSpec (the JSON form of a backend, kept in the repository config) and the factory
 * contract a backend type implements, with small helpers for factories.
 *
 * Decisions (why): these live apart from registry.ts so backend files can import them without
 * an import cycle (registry.ts imports every backend file to register it).
 */
import type { Backend, Tier } from './backend';

export type SpecValue = string | number | boolean;

export interface BackendSpec {
  /** The user's name, unique in a repository: [A-Za-z0-9][A-Za-z0-9_.-]{0,63}. */
  name: string;
  /** Registry type: "local", "s3", ... */
  type: string;
  tier: Tier;
  /** Type-specific options, JSON scalars only (see each backend file). */
  [option: string]: SpecValue | undefined;
}

export interface BackendFactory {
  /** Tier when the spec text does not give `tier=`. */
  readonly defaultTier: Tier;
  /** Option names that hold secrets (hidden by redactSpec). */
  readonly secrets?: readonly string[];
  /**
   * Option names that identify an account without being secret (an access key id): with the
   * secrets, left out of the format record the backends hold (publicSpec).
   */
  readonly credentials?: readonly string[];
  /**
   * BODY of `TYPE:BODY?QUERY` and QUERY without `tier` -> the type's options. Must throw on
   * unknown parameters.
   */
  parse(body: string, params: URLSearchParams): Record<string, SpecValue>;
  /** Validates the options (the spec may come from a hand-edited config) and opens the backend. */
  create(spec: BackendSpec): Backend | Promise<Backend>;
  /** Optional preparation for a new repository (create the directory, check the bucket). */
  init?(spec: BackendSpec): Promise<void>;
}

/** Shared helper for factories: throws if `params` holds a name not in `known`. */
export function rejectUnknownParams(params: URLSearchParams, known: readonly string[]): void {
  for (const k of params.keys()) {
    if (!known.includes(k)) throw new Error(`unknown parameter '${k}' (known: tier, ${known.join(', ')})`);
  }
}

/**
 * Shared helper for factories: reads a string option of a spec (which may come from a
 * hand-edited config), throwing a plain Error that names the backend when it is wrong.
 */
export function specString(spec: BackendSpec, key: string, required: true): string;
export function specString(spec: BackendSpec, key: string, required?: false): string | undefined;
export function specString(spec: BackendSpec, key: string, required = false): string | undefined {
  const v = spec[key];
  if (v === undefined) {
    if (required) throw new Error(`backend '${spec.name}': option '${key}' is required`);
    return undefined;
  }
  if (typeof v !== 'string') throw new Error(`backend '${spec.name}': option '${key}' must be a string`);
  return v;
}

/** Like specString, for a positive integer option with a default. */
export function specNumber(spec: BackendSpec, key: string, dflt: number): number {
  const v = spec[key];
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0)
    throw new Error(`backend '${spec.name}': option '${key}' must be a positive integer`);
  return v;
}
