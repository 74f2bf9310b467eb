/**
 * What a user names when asking for a published tree: `latest` (the last head this data directory
 * published or connected to) or a snapshot id (src/snapshot/snapshots.ts adds those). Every
 * command that reads a tree (restore, snapshot diff, mount --snapshot, clone) resolves its
 * argument here, so they accept the same names. A snapshot id may be shortened to a unique prefix
 * of at least 4 hex digits.
 */
import { IsgError } from '../errors';
import { Meta, SnapshotRecord } from '../meta/meta';

/** A tree the backends hold: its top object (a tree object with one directory entry, empty name). */
export interface TreeRef {
  /** Id of the top tree object. */
  root: Buffer;
  /** What the user gave, for messages: `latest`, a snapshot id. */
  label: string;
}

export class UnknownTreeError extends IsgError {
  constructor(message: string) {
    super('missing', message);
    this.name = 'UnknownTreeError';
  }
}

/** A snapshot by its id or a unique prefix of at least 4 hex digits (UnknownTreeError otherwise). */
export function resolveSnapshot(meta: Meta, ref: string): SnapshotRecord {
  const want = ref.toLowerCase();
  if (!/^[0-9a-f]{4,16}$/.test(want))
    throw new UnknownTreeError(
      `no snapshot ${JSON.stringify(ref)}: give \`latest\` or a snapshot id (4 to 16 hex digits; see \`isg snapshot ls\`)`,
    );
  const exact = want.length === 16 ? meta.getSnapshot(want) : undefined;
  if (exact) return exact;
  const found = meta.allSnapshots().filter((s) => s.id.startsWith(want));
  if (found.length === 1) return found[0];
  if (found.length > 1)
    throw new UnknownTreeError(`snapshot id ${JSON.stringify(ref)} is ambiguous: ${found.map((s) => s.id).join(', ')}; give more digits`);
  throw new UnknownTreeError(`no snapshot ${JSON.stringify(ref)} (see \`isg snapshot ls\`)`);
}

/** Resolves `latest` or a snapshot id (exact, or a unique prefix of at least 4 hex digits). */
export function resolveTreeRef(meta: Meta, ref: string): TreeRef {
  if (ref === 'latest') {
    const top = meta.getPublishValue<string>('top');
    if (!top) throw new UnknownTreeError('nothing was published yet: there is no latest tree (run `isg flush` while mounted)');
    return { root: Buffer.from(top, 'hex'), label: 'latest' };
  }
  const snap = resolveSnapshot(meta, ref);
  return { root: snap.root, label: snap.id };
}

/** Splits `<ref>[:<path>]` into the reference and a path inside the tree ('/' when absent). */
export function splitTreeArg(arg: string): { ref: string; path: string } {
  const at = arg.indexOf(':');
  if (at < 0) return { ref: arg, path: '/' };
  const path = arg.slice(at + 1) || '/';
  return { ref: arg.slice(0, at), path: path.startsWith('/') ? path : `/${path}` };
}
