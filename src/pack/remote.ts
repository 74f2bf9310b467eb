/**
 * The block store's way to blocks that are not local (store/'s RemoteBlocks): where the block
 * lies (its pack and offset, from the metadata), its bytes from the pack's shards (ShardReader)
 * and their decoding (CodecPool), with the retry that checks every shard range when a block read
 * straight from its data shard(s) does not decode.
 */
import { LRUCache } from 'lru-cache';
import { Meta, PackRow } from '../meta/meta';
import { CodecPool, FilePart } from '../block/pool';
import { BlockMissingError } from '../store/blockstore';
import type { KeepTarget, RemoteBlocks } from '../store/remote';
import { isKind } from '../errors';
import { ShardReader } from './fetch';

export class PackRemote implements RemoteBlocks {
  constructor(
    private readonly reader: ShardReader,
    private readonly pool: CodecPool,
    /** Where blocks lie: the repository's metadata (a tree view adds its own copies). */
    private readonly meta: Pick<Meta, 'getLoc' | 'getPack'>,
  ) {}

  /**
   * Read straight from the data shard(s) first; when that does not decode, once more with every
   * shard range checked, which rebuilds around a damaged shard. A kept block (`keep`, and from a
   * slower tier) is written by the worker after answering.
   */
  async readPlain(id: Buffer, o: { keep?: KeepTarget } = {}): Promise<Buffer> {
    const loc = this.meta.getLoc(id);
    const pack = loc && this.meta.getPack(loc.pack);
    if (!loc || !pack) throw new BlockMissingError(id.toString('hex'));
    let checked = false;
    // A block in shard files of local backends is read (pieces on lost shards rebuilt) and
    // decoded in one step off this thread. When that fails, the backend read below reports the
    // failure (a damaged block goes straight to the checked read that finds the bad shard).
    const parts = this.reader.localParts(loc, pack, { rebuild: this.pool.nativeDecode });
    if (parts) {
      try {
        return await this.pool.decodeFile(id, parts);
      } catch (e) {
        checked = isKind(e, 'corrupt'); // damage, as either decoder reports it
      }
    }
    for (; ; checked = true) {
      const fetched = await this.reader.readBlock(loc, pack, { checked });
      const keep = fetched.slow ? o.keep : undefined;
      keep?.begin();
      try {
        return await this.pool.decode(id, fetched.encoded, { keepIn: keep?.dir, shared: fetched.shared });
      } catch (e) {
        keep?.abandon(); // nothing is written for a block that failed
        if (fetched.checked) throw e;
      }
    }
  }

  /**
   * Pack rows for localParts, kept a short while: a restore asks for thousands of blocks of the
   * same few packs, and a row (with its segment checksums) is kilobytes to read and decode. A
   * row gone stale (a pack repaired or repacked meanwhile) costs nothing wrong: the decode checks
   * the block's id, and a caller whose decode fails reads the block with readPlain, afresh.
   */
  private readonly packRows = new LRUCache<string, PackRow>({ max: 256, ttl: 10_000 });

  localParts(id: Buffer): FilePart[] | null {
    const loc = this.meta.getLoc(id);
    if (!loc) return null;
    let pack = this.packRows.get(loc.pack);
    if (!pack) {
      pack = this.meta.getPack(loc.pack);
      if (pack) this.packRows.set(loc.pack, pack);
    }
    return pack ? this.reader.localParts(loc, pack, { rebuild: this.pool.nativeDecode }) : null;
  }

  forgetRebuilt(): void {
    this.reader.forgetRebuilt();
  }
}
