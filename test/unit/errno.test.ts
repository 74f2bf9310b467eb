/** mount/errno.ts: every error reaches FUSE as the right errno, from one table. */
import { constants } from 'node:os';
import { BlockCorruptError } from '../../src/block/codec';
import { ERROR_KINDS, ErrorKind, fromWire, IsgError, toWire } from '../../src/errors';
import { fsError } from '../../src/fs/errors';
import { PackUnavailableError } from '../../src/pack/fetch';
import { ShardCorruptError } from '../../src/pack/format';
import { BlockMissingError } from '../../src/store/blockstore';
import * as fuse from '../../mount/fuse';
import { EIO, ENOENT, ENOSPC, errno, errnoName, KIND_ERRNO } from '../../mount/errno';

const E = constants.errno;

test('each kind maps to its errno', () => {
  const want: Record<ErrorKind, number> = { corrupt: E.EIO, missing: E.EIO, unavailable: E.EIO, 'no-space': E.ENOSPC };
  for (const kind of ERROR_KINDS) {
    expect(KIND_ERRNO[kind]).toBeDefined();
    expect(errno(errnoName(new IsgError(kind, 'x')))).toBe(-want[kind]);
  }
  expect(Object.keys(KIND_ERRNO).sort()).toEqual([...ERROR_KINDS].sort());
});

test('the error classes, also after a worker boundary', () => {
  const hex = 'cd'.repeat(32);
  for (const e of [
    new BlockCorruptError(hex, 'bad'),
    new ShardCorruptError('bad'),
    new BlockMissingError(hex),
    new PackUnavailableError('down'),
  ]) {
    expect(errno(errnoName(e))).toBe(-E.EIO);
    expect(errno(errnoName(fromWire(toWire(e))))).toBe(-E.EIO);
  }
  const full = Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
  expect(errnoName(full)).toBe('ENOSPC');
  expect(errno(errnoName(fromWire(toWire(full))))).toBe(ENOSPC);
});

test('FsError keeps its POSIX name; system errors their code; anything else is EIO', () => {
  expect(errnoName(fsError('ENOENT'))).toBe('ENOENT');
  expect(errno(errnoName(fsError('ENOTEMPTY')))).toBe(-E.ENOTEMPTY);
  expect(errno(errnoName(fsError('EROFS')))).toBe(-E.EROFS);
  expect(errno(errnoName(Object.assign(new Error('x'), { code: 'EDQUOT' })))).toBe(-E.EDQUOT);
  expect(errnoName(Object.assign(new Error('x'), { code: 'ERR_SOMETHING' }))).toBe('EIO');
  expect(errnoName(new Error('plain'))).toBe('EIO');
  expect(errnoName(undefined)).toBe('EIO');
  expect(errno('ENOTANERRNO')).toBe(EIO);
  expect(errno('ENOENT')).toBe(ENOENT);
  expect(ENOENT).toBe(-E.ENOENT);
});

test('mount/fuse.ts gives the same constants (one table)', () => {
  expect(fuse.ENOENT).toBe(ENOENT);
  expect(fuse.EIO).toBe(EIO);
  expect(fuse.errno).toBe(errno);
});
