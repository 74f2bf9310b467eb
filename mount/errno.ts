/**
 * Errors -> errno at the FUSE edge, in one place. src/fs's FsError carries its POSIX name; the
 * errors of the layers below carry a kind (src/errors.ts), mapped here; system errors keep their
 * code; anything else is EIO. The binding's callbacks want negative numbers: errno(name) and the
 * E* constants give those.
 */
import { constants } from 'node:os';
import { ErrorKind, kindOf } from '../src/errors';
import { FsError } from '../src/fs/errors';

const E = constants.errno as Record<string, number>;

/** The errno name each kind of error answers with. */
export const KIND_ERRNO: Readonly<Record<ErrorKind, string>> = Object.freeze({
  corrupt: 'EIO',
  missing: 'EIO',
  unavailable: 'EIO',
  'no-space': 'ENOSPC',
});

/** The errno name of any error: an FsError's own, its kind's, a system error's code; else EIO. */
export function errnoName(e: unknown): string {
  if (e instanceof FsError) return e.code;
  const kind = kindOf(e);
  if (kind) return KIND_ERRNO[kind];
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : 'EIO';
}

/** The negative errno of a name such as 'ENOENT' (EIO for unknown names). */
export function errno(name: string): number {
  const n = E[name];
  return typeof n === 'number' ? -n : -E.EIO;
}

// ---- errno constants (negative, as the callbacks want them) ---------------------------------------

export const EPERM = -E.EPERM;
export const ENOENT = -E.ENOENT;
export const EIO = -E.EIO;
export const EBADF = -E.EBADF;
export const EAGAIN = -E.EAGAIN;
export const ENOMEM = -E.ENOMEM;
export const EACCES = -E.EACCES;
export const EBUSY = -E.EBUSY;
export const EEXIST = -E.EEXIST;
export const EXDEV = -E.EXDEV;
export const ENODEV = -E.ENODEV;
export const ENOTDIR = -E.ENOTDIR;
export const EISDIR = -E.EISDIR;
export const EINVAL = -E.EINVAL;
export const ENFILE = -E.ENFILE;
export const EMFILE = -E.EMFILE;
export const EFBIG = -E.EFBIG;
export const ENOSPC = -E.ENOSPC;
export const ESPIPE = -E.ESPIPE;
export const EROFS = -E.EROFS;
export const EMLINK = -E.EMLINK;
export const ERANGE = -E.ERANGE;
export const ENAMETOOLONG = -E.ENAMETOOLONG;
export const ENOSYS = -E.ENOSYS;
export const ENOTEMPTY = -E.ENOTEMPTY;
export const ELOOP = -E.ELOOP;
export const ENODATA = -E.ENODATA;
export const E2BIG = -E.E2BIG;
export const EOPNOTSUPP = -E.EOPNOTSUPP;
export const ENOTSUP = -E.ENOTSUP;
export const ETIMEDOUT = -E.ETIMEDOUT;
export const ENOTCONN = -E.ENOTCONN;
export const EDQUOT = -E.EDQUOT;
