/**
 * An LMDB program for the power-loss tests, run in its own process (it is killed with SIGKILL, and
 * opening a damaged database may kill it with SIGBUS):
 *
 *   node -r ./test/fuse/ts-register.js test/powerloss/lmdb-child.ts write <dir> <sync|nosync> <from> <count>
 *     puts key i (from <= i < from + count) in a transaction of its own, awaits each commit (and in
 *     sync mode db.flushed at the end), prints {"done": count} and waits to be killed.
 *   node -r ./test/fuse/ts-register.js test/powerloss/lmdb-child.ts read <dir>
 *     prints {"keys": [i...], "bad": [i...]} (keys whose value is wrong), or {"error": message}.
 *
 * Opened as src/meta/meta.ts opens it (maxDbs 16) with noSync (nosync) or lmdb-js's defaults (sync:
 * overlappingSync on Linux). Values are 3000 bytes, so that each transaction dirties pages of its own.
 */
import { open } from 'lmdb';

export const value = (i: number): Buffer => Buffer.alloc(3000, `value ${i};`);

async function main(): Promise<void> {
  const [cmd, dir, mode, from, count] = process.argv.slice(2);
  if (cmd === 'write') {
    const db = open({ path: dir, maxDbs: 16, ...(mode === 'nosync' ? { noSync: true } : {}) });
    const data = db.openDB({ name: 'data', keyEncoding: 'uint32', encoding: 'binary' });
    const n = Number(count);
    for (let i = Number(from); i < Number(from) + n; i++) await data.put(i, value(i));
    if (mode !== 'nosync') await db.flushed;
    process.stdout.write(JSON.stringify({ done: n }) + '\n');
    setInterval(() => undefined, 60_000);
    return;
  }
  try {
    // safeRestore: after a simulated power cut the boot id is still the same, and lmdb-js would
    // otherwise trust the newest meta page even when it was never flushed (mdb_pick_meta).
    const db = open({ path: dir, maxDbs: 16, ...({ safeRestore: true } as object) });
    const data = db.openDB({ name: 'data', keyEncoding: 'uint32', encoding: 'binary' });
    const keys: number[] = [];
    const bad: number[] = [];
    for (const { key, value: v } of data.getRange()) {
      keys.push(key as number);
      if (!Buffer.isBuffer(v) || !v.equals(value(key as number))) bad.push(key as number);
    }
    process.stdout.write(JSON.stringify({ keys, bad }) + '\n');
    await db.close();
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: (e as Error).message }) + '\n');
  }
}

main().catch((e: Error) => {
  process.stderr.write(`lmdb-child: ${e.stack ?? e.message}\n`);
  process.exit(1);
});
