/** Errors of the filesystem core carry a POSIX errno name; mount/errno.ts maps them to FUSE numbers. */
export type Errno =
  | 'ENOENT'
  | 'EEXIST'
  | 'ENOTDIR'
  | 'EISDIR'
  | 'ENOTEMPTY'
  | 'EINVAL'
  | 'ENAMETOOLONG'
  | 'EPERM'
  | 'EACCES'
  | 'EBADF'
  | 'EIO'
  | 'ENOSPC'
  | 'ENODATA'
  | 'ERANGE'
  | 'E2BIG'
  | 'EOPNOTSUPP'
  | 'EROFS'
  | 'EBUSY'
  | 'EXDEV'
  | 'EFBIG'
  | 'ELOOP'
  | 'EMLINK';

/**
 * Most are ordinary answers (ENOENT to a lookup), thousands a second under tar or git: they carry
 * no stack, whose capture cost more than the lookup.
 */
export class FsError extends Error {
  readonly code: Errno;
  constructor(code: Errno, message?: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message ? `${code}: ${message}` : code);
    Error.stackTraceLimit = limit;
    this.code = code;
  }
}

export function fsError(code: Errno, message?: string): FsError {
  return new FsError(code, message);
}
