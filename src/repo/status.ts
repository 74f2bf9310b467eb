/** `isg status`: what the repository holds, computed from the metadata (works while mounted). */
import { Meta } from '../meta/meta';
import { S_IFDIR, S_IFMT, S_IFREG } from '../fs/filesystem';
import { readLock, repoPaths } from './repository';

export interface RepoStatus {
  files: number;
  directories: number;
  symlinks: number;
  /** Sum of file sizes (what `du --apparent-size` shows). */
  logicalBytes: number;
  /** Bytes of file data held in chunks (holes excluded), before deduplication. */
  referencedBytes: number;
  uniqueBlocks: number;
  /** Plaintext bytes of the unique blocks. */
  uniqueBytes: number;
  /** Encoded (compressed + encrypted) bytes in the local tier. */
  storedBytes: number;
  dedupRatio: number;
  compressionRatio: number;
  mounted: boolean;
  mountpoint?: string;
}

export function repoStatus(dataDir: string): RepoStatus {
  const meta = new Meta(repoPaths(dataDir).meta, true);
  try {
    let files = 0, directories = 0, symlinks = 0, logicalBytes = 0, referencedBytes = 0;
    for (const i of meta.allInodes()) {
      const type = i.mode & S_IFMT;
      if (type === S_IFDIR) directories++;
      else if (type === S_IFREG) { files++; logicalBytes += i.size; }
      else symlinks++;
    }
    for (const { extent } of meta.allExtents()) referencedBytes += extent.length;
    let uniqueBlocks = 0, uniqueBytes = 0, storedBytes = 0;
    for (const { row } of meta.allBlocks()) {
      if (row.refs === 0) continue;
      uniqueBlocks++;
      uniqueBytes += row.plain;
      storedBytes += row.stored;
    }
    const lock = readLock(dataDir);
    return {
      files, directories, symlinks, logicalBytes, referencedBytes, uniqueBlocks, uniqueBytes, storedBytes,
      dedupRatio: uniqueBytes ? referencedBytes / uniqueBytes : 1,
      compressionRatio: storedBytes ? uniqueBytes / storedBytes : 1,
      mounted: !!lock?.mountpoint, mountpoint: lock?.mountpoint,
    };
  } finally {
    void meta.close();
  }
}
