/** Errors of the filesystem core carry a POSIX errno name; mount/ maps them to FUSE numbers. */
export type Errno =
  | 'ENOENT' | 'EEXIST' | 'ENOTDIR' | 'EISDIR' | 'ENOTEMPTY' | 'EINVAL' | 'ENAMETOOLONG' | 'EPERM'
  | 'EACCES' | 'EBADF' | 'EIO' | 'ENOSPC' | 'ENODATA' | 'ERANGE' | 'E2BIG' | 'EOPNOTSUPP' | 'EROFS'
  | 'EBUSY' | 'EXDEV' | 'EFBIG' | 'ELOOP' | 'EMLINK';

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

/** Maps any error to an errno name: ours keep theirs, system errors keep their code, the rest are EIO. */
export function errnoOf(e: unknown): Errno {
  const code = (e as { code?: unknown })?.code;
  if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return code as Errno;
  return 'EIO';
}
