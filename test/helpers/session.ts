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
