/** Bytes [offset, offset + length) of something: a shard, an object on a backend. */
export interface ByteRange {
  offset: number;
  length: number;
}
