/**
 * Tampered backends, through real mounts (src/repo/refresh.ts, src/head/head.ts, the block codec):
 * a writer `first` and a data directory `second` made by `isg connect`, on three local directories
 * outside both (2+1). Each tampering is detected and refused, never served:
 * - bytes flipped in the newest head (every copy): that head is ignored and reported, the one
 *   before it is used; the writer, which saw the newer head, is refused (a rollback);
 * - the newest head's object replaced by the previous head's bytes: ignored (its key names
 *   another head); a data directory that saw the newer head refuses to mount, and mounts the
 *   older state with --accept-rollback;
 * - the newest head's top tree object swapped for a data block of the same encoded length.
 *   The vector: shard checksums are not keyed, so whoever can write a backend can rewrite a pack
 *   consistently (reassemble it from its data shards, swap the bytes, recompute the parity and
 *   every checksum); index objects and pack trailers are authenticated and cannot be pointed
 *   elsewhere. The swapped block is refused because its header names another kind, and, with the
 *   header's kind rewritten too, because the kind and id are in the AEAD associated data.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openHead } from '../../src/head/head';
import { HEADS_PREFIX } from '../../src/head/objects';
import { Meta } from '../../src/meta/meta';
import { rsEncode } from '../../src/native';
import { decodeShardHeader, encodeShard, layoutFor, shardHeaderSize, splitPack } from '../../src/pack/format';
import { readSeenHead } from '../../src/repo/connect';
import { openRepository, OpenedRepo } from '../../src/repo/repository';
import { ISG, isg, mount, mountDirs, umount } from '../helpers/mount';
import { run } from '../helpers/proc';

jest.setTimeout(300_000);

const PASSWORD = 'tampered';
const DISKS = [0, 1, 2];

describe('tampered backends are detected and refused', () => {
  const { t, data: first, mnt } = mountDirs();
  const second = path.join(t.dir, 'second');
  const disk = (i: number) => path.join(t.dir, `disk${i}`);
  const pw = () => ['--password-file', path.join(t.dir, 'pw')];
  const specs = () => DISKS.flatMap((i) => ['--backend', `disk${i}=local:${disk(i)}`]);
  const ok = async (args: string[]) => {
    const r = await isg(args);
    if (r.code !== 0) throw new Error(`isg ${args.join(' ')} -> ${r.code}\n${r.stderr}`);
    return r;
  };
  /** A mount that must fail (and exit on its own: one that succeeds would block). */
  const refusedMount = async (dataDir: string, args: string[] = []) => {
    const at = path.join(t.dir, 'refused');
    fs.mkdirSync(at, { recursive: true });
    const r = await run(process.execPath, [ISG, 'mount', dataDir, at, ...pw(), ...args], { timeout: 60_000 });
    expect([0, -1]).not.toContain(r.code);
    return r.stderr;
  };
  /** Head keys, oldest first (every disk holds every head). */
  const heads = () => fs.readdirSync(path.join(disk(0), HEADS_PREFIX)).sort();
  const headFiles = (key: string) => DISKS.map((i) => path.join(disk(i), HEADS_PREFIX, key));
  let repo: OpenedRepo;
  let newest: string;
  let previous: string;
  let newestBytes: Buffer;
  const restoreNewest = () => headFiles(newest).forEach((f) => fs.writeFileSync(f, newestBytes));

  beforeAll(async () => {
    fs.writeFileSync(path.join(t.dir, 'pw'), `${PASSWORD}\n`);
    await ok(['init', first, '--ec', '2+1', ...pw(), ...specs()]);
    const a = await mount(first, mnt, pw());
    fs.writeFileSync(path.join(mnt, 'one'), 'the first state\n');
    // Random (incompressible) files of every size up to 640 bytes: a data block of any small
    // encoded length exists, for the swap of a tree object below.
    await run('python3', [
      '-c',
      `import os\nos.mkdir("${mnt}/sizes")\nfor i in range(1, 641): open(f"${mnt}/sizes/{i}", "wb").write(os.urandom(i))`,
    ]);
    await ok(['flush', first, ...pw()]);
    expect(await umount(a)).toBe(0);
    await ok(['connect', second, ...specs(), ...pw()]);
    const a2 = await mount(first, mnt, pw());
    fs.writeFileSync(path.join(mnt, 'two'), 'the second state\n');
    await ok(['flush', first, ...pw()]);
    expect(await umount(a2)).toBe(0);
    const keys = heads();
    [previous, newest] = keys.slice(-2);
    newestBytes = fs.readFileSync(headFiles(newest)[0]);
    expect((await readSeenHead(second))!.seq).toBe(parseInt(previous.slice(0, 16), 16));
    repo = await openRepository(first, PASSWORD);
  });

  test('bytes flipped in the newest head: ignored and reported, the head before it used', async () => {
    for (const f of headFiles(newest)) {
      const b = Buffer.from(newestBytes);
      b[Math.floor(b.length / 2)] ^= 0x40;
      fs.writeFileSync(f, b);
    }
    try {
      const b = await mount(second, mnt, [...pw(), '--read-only']);
      try {
        expect(fs.readFileSync(path.join(mnt, 'one'), 'utf8')).toBe('the first state\n');
        expect(fs.existsSync(path.join(mnt, 'two'))).toBe(false);
      } finally {
        expect(await umount(b)).toBe(0);
      }
      expect(b.stderr()).toContain(`head ignored: disk0 ${HEADS_PREFIX}${newest}: head signature does not verify`);
      // The writer published that head: for it the backends went back.
      const refused = await refusedMount(first);
      expect(refused).toMatch(/rollback: the newest valid head on the backends is \d+, older than head \d+ this data directory saw/);
      expect(refused).toContain('--accept-rollback');
    } finally {
      restoreNewest();
    }
  });

  test("the newest head replaced by an older head's bytes: a data directory that saw it refuses, --accept-rollback mounts", async () => {
    // The second sees the newest head first.
    const b = await mount(second, mnt, [...pw(), '--read-only']);
    try {
      expect(fs.readFileSync(path.join(mnt, 'two'), 'utf8')).toBe('the second state\n');
    } finally {
      expect(await umount(b)).toBe(0);
    }
    const older = fs.readFileSync(headFiles(previous)[0]);
    for (const f of headFiles(newest)) fs.writeFileSync(f, older);
    try {
      const refused = await refusedMount(second, ['--read-only']);
      expect(refused).toContain(`head ignored: disk0 ${HEADS_PREFIX}${newest}: the key does not name this head`);
      expect(refused).toMatch(/rollback: the newest valid head on the backends is \d+, older than head \d+ this data directory saw/);

      const accepted = await mount(second, mnt, [...pw(), '--read-only', '--accept-rollback']);
      try {
        expect(fs.existsSync(path.join(mnt, 'two'))).toBe(false);
        expect(fs.readFileSync(path.join(mnt, 'one'), 'utf8')).toBe('the first state\n');
      } finally {
        expect(await umount(accepted)).toBe(0);
      }
      expect(accepted.stderr()).toContain('accepted (--accept-rollback)');
      expect((await readSeenHead(second))!.seq).toBe(parseInt(previous.slice(0, 16), 16));
    } finally {
      restoreNewest();
    }
  });

  test('a tree object swapped for a data block of the same length, the pack rewritten consistently: refused', async () => {
    const head = openHead(newestBytes, { repoId: repo.config.id, publicKey: repo.keys.head.publicKey });
    const meta = await Meta.open(repo.paths.meta, repo.keys.meta, true);
    let top: { pack: string; offset: number; length: number };
    let data: { pack: string; offset: number; length: number } | undefined;
    try {
      top = meta.getLoc(head.root)!;
      for (const { extent } of meta.allExtents()) {
        const loc = meta.getLoc(extent.id);
        if (loc?.length === top.length) data = loc;
      }
    } finally {
      await meta.close();
    }
    expect(data).toBeDefined();
    const original = readPack(top.pack);
    const swapped = Buffer.from(original.pack);
    readPack(data!.pack).pack.copy(swapped, top.offset, data!.offset, data!.offset + data!.length);
    expect(swapped[top.offset + 1] >> 1).toBe(0); // a data block's header names the data kind
    const seen = await readSeenHead(second);
    try {
      await writePack(top.pack, swapped, original);
      let refused = await refusedMount(second, ['--read-only']);
      expect(refused).toMatch(/cannot rebuild .*second's metadata from head \d+ on the backends: .*is a data object, not tree/);

      // The attacker's better try: the header names a tree object. The AEAD refuses it.
      swapped[top.offset + 1] = (swapped[top.offset + 1] & 1) | (1 << 1);
      await writePack(top.pack, swapped, original);
      refused = await refusedMount(second, ['--read-only']);
      expect(refused).toMatch(/cannot rebuild .*second's metadata from head \d+ on the backends: .*authentication failed/);
      // Never served, not even to a new data directory.
      const c = await isg(['connect', path.join(t.dir, 'third'), ...specs(), ...pw()]);
      expect(c.code).not.toBe(0);
      expect(c.stderr).toContain('authentication failed');
      // The second's own metadata is as it was.
      expect(await readSeenHead(second)).toEqual(seen);
      expect(fs.existsSync(path.join(second, 'meta-next'))).toBe(false);
    } finally {
      await writePack(top.pack, original.pack, original);
    }
    const b = await mount(second, mnt, [...pw(), '--read-only']);
    try {
      expect(fs.readFileSync(path.join(mnt, 'two'), 'utf8')).toBe('the second state\n');
    } finally {
      expect(await umount(b)).toBe(0);
    }
  });

  /** The shard files of a pack, by shard index. */
  function shardFiles(packId: string): string[] {
    const out: string[] = [];
    for (const i of DISKS) {
      const dir = path.join(disk(i), 'shards', packId.slice(0, 2));
      for (const n of fs.existsSync(dir) ? fs.readdirSync(dir) : [])
        if (n.startsWith(`${packId}.`)) out[Number(n.slice(packId.length + 1))] = path.join(dir, n);
    }
    return out;
  }

  /** A pack reassembled from its data shards. */
  function readPack(packId: string): { pack: Buffer; files: string[] } {
    const files = shardFiles(packId);
    const shards = files.map((f) => fs.readFileSync(f));
    const h = decodeShardHeader(shards[0]);
    const body = Buffer.concat(shards.slice(0, h.k).map((s) => s.subarray(shardHeaderSize(h.shardSize))));
    return { pack: body.subarray(0, h.packLength), files };
  }

  /** Writes a pack as the packer does: data shards, parity, headers with fresh checksums. */
  async function writePack(packId: string, pack: Buffer, was: { files: string[] }): Promise<void> {
    const h = decodeShardHeader(fs.readFileSync(was.files[0]));
    const layout = layoutFor(pack.length, h.k, h.m);
    const dataShards = splitPack(pack, layout);
    const shards = [...dataShards, ...(await rsEncode(h.k, h.m, dataShards))];
    shards.forEach((s, i) => fs.writeFileSync(was.files[i], encodeShard(packId, i, layout, s)));
  }
});
