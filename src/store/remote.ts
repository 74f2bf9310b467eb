/**
 * Blocks that are not in the local tier: what the block store needs of the backends, declared
 * here and implemented above it (src/pack/remote.ts reads ranges of a block's pack shards,
 * rebuilds around lost or damaged ones and decodes). store/ imports nothing from pack/.
 */

/**
 * Where a block read from the backends may be kept: the local tier (LocalTier). A codec worker
 * writes the block file after answering (CodecPool.decode's keepIn) and reports it through
 * CodecPool.onKept; `begin` and `abandon` count those writes, so that closing waits for them.
 */
import type { FilePart } from '../block/pool';

export interface KeepTarget {
  /** The local tier's directory of block files. */
  readonly dir: string;
  /** A decode with keepIn `dir` is about to start. */
  begin(): void;
  /** That decode failed: no file is written and onKept is not called. */
  abandon(): void;
}

export interface RemoteBlocks {
  /**
   * Plaintext of a block from the backends; BlockMissingError when it is in no pack. With `keep`,
   * a block that came (in part) from a slower tier is kept there; one from hot backends only is
   * not: reading it there again costs what reading a local copy would, and the copy would cost a
   * write and tier space.
   */
  readPlain(id: Buffer, o?: { keep?: KeepTarget }): Promise<Buffer>;
  /**
   * Where a block's encoded bytes lie in local files (see ShardReader.localParts), for a caller
   * that decodes them itself and uses readPlain when that fails; null when readPlain does better.
   */
  localParts?(id: Buffer): FilePart[] | null;
  /** Forgets what it kept of recent reads (`isg cache drop`: reads afterwards are truly cold). */
  forgetRebuilt(): void;
}
