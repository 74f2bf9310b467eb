/**
 * Run by test/unit/decodefile.test.ts in a child process (node -r test/fuse/ts-register.js), so
 * that ISGFS_NO_NATIVE can be set before src/native loads: decodes a damaged block through
 * CodecPool, from a file and from memory, and prints what the rejections were as JSON lines.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BlockCorruptError, blockId, encodeBlock } from '../../src/block/codec';
import { compressionFor } from '../../src/block/compression';
import { CodecPool } from '../../src/block/pool';
import { DEFAULT_CHUNKER } from '../../src/chunk';
import { kindOf } from '../../src/errors';
import { deriveRepoKeys } from '../../src/repo/repository';

async function main(): Promise<void> {
  const keys = deriveRepoKeys(Buffer.alloc(32, 7));
  const spec = { name: 'zstd', level: 3 } as const;
  const pool = new CodecPool(
    { idKey: keys.block.idKey, encKey: keys.block.encKey, gear: keys.gear, chunker: DEFAULT_CHUNKER, compression: spec },
    { workers: 1 },
  );
  const plain = Buffer.from('a line of text\n'.repeat(10_000));
  const id = blockId(keys.block, plain);
  const bad = encodeBlock(keys.block, compressionFor(spec), id, plain);
  bad[bad.length >> 1] ^= 1;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'corrupt-decode-'));
  const file = path.join(dir, 'bad');
  fs.writeFileSync(file, bad);
  const describe = (e: unknown) => ({
    nativeDecode: pool.nativeDecode,
    isBlockCorruptError: e instanceof BlockCorruptError,
    kind: kindOf(e),
    name: (e as Error).name,
    blockId: (e as BlockCorruptError).blockId,
  });
  try {
    for (const run of [() => pool.decodeFile(id, [{ file }]), () => pool.decode(id, Buffer.from(bad))]) {
      const e = await run().then(
        () => null,
        (x: unknown) => x,
      );
      process.stdout.write(JSON.stringify(describe(e)) + '\n');
    }
  } finally {
    await pool.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

void main();
