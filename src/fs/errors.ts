/** Errors of the filesystem core carry a POSIX errno name; mount/ maps them to FUSE numbers. */
export type Errno =
  | 'ENOENT' | 'EEXIST' | 'ENOTDIR' | 'EISDIR' | 'ENOTEMPTY' | 'EINVAL' | 'ENAMETOOLONG' | 'EPERM'
  | 'EACCES' | 'EBADF' | 'EIO' | 'ENOSPC' | 'ENODATA' | 'ERANGE' | 'E2BIG' | 'EOPNOTSUPP' | 'EROFS'
  | 'EBUSY' | 'EXDEV' | 'EFBIG' | 'ELOOP' | 'EMLINK';

export class FsError extends Error {
  constructor(readonly code: Errno, message?: string) {
    super(message ? `${code}: ${message}` : code);
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
