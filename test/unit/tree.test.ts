/** Tree objects (src/snapshot/tree.ts, docs/formats.md "Tree"): encoding, decoding and splitting. */
import { constants as C } from 'node:fs';
import { blockId, ObjectKind } from '../../src/block/codec';
import { deriveRepoKeys } from '../../src/repo/repository';
import {
  decodeChunkList,
  encodeChunkList,
  decodeTreeObject,
  encodeChunks,
  encodeDirectory,
  encodeLeaf,
  EncodedObject,
  EntryType,
  extentsOfEntry,
  INLINE_EXTENTS,
  readDirectory,
  SPLIT_MAX_BYTES,
  SPLIT_MAX_ENTRIES,
  SPLIT_MIN_ENTRIES,
  TreeEntry,
  treeSplitKey,
} from '../../src/snapshot/tree';

const keys = deriveRepoKeys(Buffer.alloc(32, 3)).block;
const codec = { idOf: (p: Buffer) => blockId(keys, p), splitKey: treeSplitKey(keys.idKey) };

function fileEntry(name: string, n: number): TreeEntry {
  return {
    name: Buffer.from(name),
    type: EntryType.file,
    mode: C.S_IFREG | 0o644,
    uid: 1000,
    gid: 100,
    rdev: 0,
    nlink: 1,
    size: n,
    atimeNs: 1_700_000_000_000_000_001n,
    mtimeNs: 1_700_000_000_000_000_002n,
    ctimeNs: -3n,
    link: 10 + n,
    xattrs: [],
    chunks: { inline: n ? [{ offset: 0, length: n, id: Buffer.alloc(32, n & 0xff), forced: true }] : [] },
  };
}

function sortedNames(count: number): string[] {
  const names: string[] = [];
  for (let i = 0; i < count; i++) names.push(`file-${i.toString(36)}`);
  return names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

function store(objects: EncodedObject[]): Map<string, Buffer> {
  return new Map(objects.map((o) => [o.id.toString('hex'), o.plain]));
}

const fetchFrom = (m: Map<string, Buffer>) => (id: Buffer) => {
  const p = m.get(id.toString('hex'));
  if (!p) throw new Error('no such object');
  return Promise.resolve(p);
};

describe('tree objects', () => {
  test('every kind of entry round-trips', () => {
    const entries: TreeEntry[] = [
      { ...fileEntry('a file', 5), xattrs: [{ name: Buffer.from('user.x'), value: Buffer.from([0, 1, 2]) }] },
      { ...fileEntry('b dir', 0), type: EntryType.dir, mode: C.S_IFDIR | 0o755, nlink: 3, chunks: undefined, dir: Buffer.alloc(32, 9) },
      { ...fileEntry('c link', 0), type: EntryType.symlink, mode: C.S_IFLNK | 0o777, chunks: undefined, target: Buffer.from('../x/y') },
      { ...fileEntry('d dev', 0), type: EntryType.charDev, mode: C.S_IFCHR | 0o600, rdev: 0x0501, chunks: undefined },
      { ...fileEntry('e big', 1), chunks: { objects: [Buffer.alloc(32, 1), Buffer.alloc(32, 2)], extents: 9000 } },
      { ...fileEntry('f fifo', 0), type: EntryType.fifo, mode: C.S_IFIFO | 0o600, chunks: undefined },
      { ...fileEntry('g ünïcode', 0), type: EntryType.socket, mode: C.S_IFSOCK | 0o600, chunks: undefined },
    ];
    const decoded = decodeTreeObject(encodeLeaf(entries));
    expect(decoded).toEqual({ level: 0, entries });
  });

  test('damage is refused: truncation, trailing bytes, names out of order, a type the mode denies', () => {
    const plain = encodeLeaf([fileEntry('a', 1), fileEntry('b', 2)]);
    expect(() => decodeTreeObject(plain.subarray(0, plain.length - 1))).toThrow(/truncated/);
    expect(() => decodeTreeObject(Buffer.concat([plain, Buffer.alloc(1)]))).toThrow(/after the last field/);
    expect(() => decodeTreeObject(encodeLeaf([fileEntry('b', 1), fileEntry('a', 2)]))).toThrow(/out of order/);
    expect(() => decodeTreeObject(encodeLeaf([{ ...fileEntry('a', 1), mode: C.S_IFDIR | 0o755 }]))).toThrow(/does not agree/);
    const badMagic = Buffer.from(plain);
    badMagic[0] = 0x58;
    expect(() => decodeTreeObject(badMagic)).toThrow(/magic/);
  });

  test('long chunk lists go to chunk-list objects', async () => {
    const extents = Array.from({ length: 20_000 }, (_, i) => ({
      offset: i * 4096,
      length: 4096,
      id: Buffer.alloc(32, i & 0xff),
      forced: false,
    }));
    const objects: EncodedObject[] = [];
    expect(encodeChunks(extents.slice(0, INLINE_EXTENTS), codec, objects)).toEqual({ inline: extents.slice(0, INLINE_EXTENTS) });
    expect(objects).toHaveLength(0);
    const list = encodeChunks(extents, codec, objects);
    expect(objects.length).toBe(3);
    expect(objects.every((o) => o.kind === ObjectKind.chunkList)).toBe(true);
    expect(decodeChunkList(objects[0].plain).length).toBe(8192);
    const entry = { ...fileEntry('big', 1), chunks: list };
    const [back] = (decodeTreeObject(encodeLeaf([entry])) as { entries: TreeEntry[] }).entries;
    const read = await extentsOfEntry(back, fetchFrom(store(objects)));
    expect(encodeChunkList(read).equals(encodeChunkList(extents))).toBe(true); // toEqual is slow on 20,000 buffers
  });

  test('a small directory is one object; a large one splits within the bounds and reads back whole', async () => {
    const small = encodeDirectory(
      sortedNames(SPLIT_MIN_ENTRIES).map((n, i) => fileEntry(n, i)),
      codec,
    );
    expect(small.objects).toHaveLength(1);
    const empty = encodeDirectory([], codec);
    expect(empty.objects).toHaveLength(1);
    expect(decodeTreeObject(empty.objects[0].plain)).toEqual({ level: 0, entries: [] });

    const entries = sortedNames(20_000).map((n, i) => fileEntry(n, i));
    const dir = encodeDirectory(entries, codec);
    expect(dir.objects[0].id.equals(dir.root)).toBe(true);
    const leaves = dir.objects.map((o) => decodeTreeObject(o.plain)).filter((o) => o.level === 0) as { entries: TreeEntry[] }[];
    expect(leaves.length).toBeGreaterThan(20_000 / SPLIT_MAX_ENTRIES);
    const sizes = leaves.map((l) => l.entries.length);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(SPLIT_MAX_ENTRIES);
    // All but the last leaf (in name order) hold at least the minimum.
    expect(sizes.filter((n) => n < SPLIT_MIN_ENTRIES).length).toBeLessThanOrEqual(1);
    const back = await readDirectory(dir.root, fetchFrom(store(dir.objects)));
    expect(encodeLeaf(back).equals(encodeLeaf(entries))).toBe(true);

    // Large entries end objects by bytes.
    const fat = sortedNames(100).map((n, i) => ({
      ...fileEntry(n, i),
      xattrs: [{ name: Buffer.from('user.big'), value: Buffer.alloc(60_000, i) }],
    }));
    const fatDir = encodeDirectory(fat, codec);
    for (const o of fatDir.objects) expect(o.plain.length).toBeLessThan(SPLIT_MAX_BYTES + 61_000);
    expect(encodeLeaf(await readDirectory(fatDir.root, fetchFrom(store(fatDir.objects)))).equals(encodeLeaf(fat))).toBe(true);
  });

  test('one changed, added or removed entry of 100,000 rewrites only the objects on its path', () => {
    const names = sortedNames(100_000);
    const entries = names.map((n, i) => fileEntry(n, i));
    const before = encodeDirectory(entries, codec);
    const known = new Set(before.objects.map((o) => o.id.toString('hex')));
    const levels = 1 + Math.max(...before.objects.map((o) => decodeTreeObject(o.plain).level));
    expect(levels).toBeGreaterThanOrEqual(2);
    const fresh = (d: { objects: EncodedObject[] }) => d.objects.filter((o) => !known.has(o.id.toString('hex'))).length;

    const changed = [...entries];
    changed[54_321] = { ...changed[54_321], mtimeNs: 42n };
    // A leaf and the interior objects above it; at a cut that moves, one more per level.
    expect(fresh(encodeDirectory(changed, codec))).toBeLessThanOrEqual(levels);
    const added = [...entries];
    added.splice(777, 0, { ...fileEntry(names[777] + '-new', 1) });
    expect(fresh(encodeDirectory(added, codec))).toBeLessThanOrEqual(2 * levels);
    const removed = [...entries];
    removed.splice(99_000, 1);
    expect(fresh(encodeDirectory(removed, codec))).toBeLessThanOrEqual(2 * levels);
    // Against the whole directory: 100,000 entries in hundreds of objects.
    expect(before.objects.length).toBeGreaterThan(100);
  });
});
