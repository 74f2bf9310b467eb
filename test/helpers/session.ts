import { constants as fsConstants } from 'node:fs';
import { initRepository } from '../../src/repo/repository';
import { RepoConfig } from '../../src/repo/format';
import { Session, SessionOptions } from '../../src/repo/session';
import { ChunkerParams } from '../../src/chunk';

export const SMALL_CHUNKS: ChunkerParams = { minSize: 1024, avgSize: 4096, maxSize: 16384 };

/** A repository with small chunks, so tests cross many chunk boundaries with little data. */
export async function smallRepo(
  dir: string,
  o: SessionOptions & { chunker?: ChunkerParams; packSize?: number; configure?: (c: RepoConfig) => void } = {},
): Promise<Session> {
  await initRepository(dir, {
    password: o.password,
    configure: (c) => {
      Object.assign(c.chunker, o.chunker ?? SMALL_CHUNKS);
      c.storage.packSize = o.packSize ?? 128 * 1024;
      o.configure?.(c);
    },
  });
  return Session.open(dir, { dirtyCap: 64 * 1024, ...o });
}

/** A tree of 100,000 empty files, /d<i>/e<j>/f<k> (10 x 10 directories of 1,000), built through the core, not FUSE. */
export async function buildWideTree(s: Session): Promise<void> {
  const me = { uid: 0, gid: 0 };
  for (let i = 0; i < 10; i++) {
    s.fs.mkdir(`/d${i}`, 0o755, me);
    for (let j = 0; j < 10; j++) {
      s.fs.mkdir(`/d${i}/e${j}`, 0o755, me);
      for (let k = 0; k < 1000; k++) await s.fs.release(await s.fs.create(`/d${i}/e${j}/f${k}`, 0o644, fsConstants.O_RDWR, me));
    }
  }
}
