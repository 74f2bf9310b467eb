/**
 * An isgfs session for the power-loss tests of durability order, run in its own process on a lazyfs
 * mount (it is killed with SIGKILL):
 *
 *   node -r ./test/fuse/ts-register.js test/powerloss/session-child.ts <cmd> <repo> [args]
 *     write <repo> <name> <seed> <bytes> [fsync]  init the repository if needed, write the file (its
 *                                    data from the seed), let write-behind commit it, then (fsync) fsync
 *                                    it, or wait past one metadata epoch; prints {"done": ino}, waits
 *     meta <repo> <from> <count> <synced>  `count` files named m<i>, one transaction each; the first
 *                                    `synced` of them followed by meta.sync(), then prints {"done": n}
 *     read <repo> <name> <seed> <bytes>   prints {"ok": bool, "error"?: message, "problems": [...]}
 *                                    from a writable open (mount-time recovery), a read and isg check
 *     names <repo>                   prints {"names": [...]} of the root directory (read-only open)
 */
import { constants as C } from 'node:fs';
import * as fs from 'node:fs';
import { initRepository } from '../../src/repo/repository';
import { Session } from '../../src/repo/session';
import { checkRepository } from '../../src/repair/check';
import { prng } from '../helpers/tmp';

const me = { uid: 0, gid: 0 };
const print = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');
const forever = () => setInterval(() => undefined, 60_000);

async function open(repo: string): Promise<Session> {
  if (!fs.existsSync(repo)) await initRepository(repo, {});
  return Session.open(repo, { syncIntervalMs: 3_600_000 });
}

async function main(): Promise<void> {
  const [cmd, repo, ...a] = process.argv.slice(2);
  if (cmd === 'write') {
    const s = await open(repo);
    const [name, seed, bytes, mode] = [a[0], Number(a[1]), Number(a[2]), a[3]];
    const fh = await s.fs.create(`/${name}`, 0o644, C.O_WRONLY, me);
    await s.fs.write(fh, 0, prng(seed).bytes(bytes));
    if (mode === 'fsync') await s.fs.fsync(fh);
    else {
      await s.fs.flush(fh);
      await s.fs.flushAll();
      await new Promise((r) => setTimeout(r, 600)); // past the epoch: the commit is durable now
    }
    print({ done: s.fs.fgetattr(fh).ino });
    forever();
    return;
  }
  if (cmd === 'meta') {
    const s = await open(repo);
    const [from, count, synced] = a.map(Number);
    for (let i = from; i < from + count; i++) {
      s.fs.mkdir(`/m${i}`, 0o755, me);
      if (i < from + synced) await s.meta.sync();
    }
    print({ done: count });
    forever();
    return;
  }
  if (cmd === 'read') {
    const [name, seed, bytes] = [a[0], Number(a[1]), Number(a[2])];
    let s: Session | null = null;
    try {
      s = await Session.open(repo, { syncIntervalMs: 3_600_000 });
      let ok = false;
      let error: string | undefined;
      try {
        const fh = await s.fs.open(`/${name}`, C.O_RDONLY);
        const got = await s.fs.read(fh, 0, bytes + 1);
        ok = got.equals(prng(seed).bytes(bytes));
        await s.fs.release(fh);
      } catch (e) {
        error = (e as Error).message;
      }
      const report = await checkRepository(s.meta, s.store);
      print({ ok, error, problems: report.problems });
    } finally {
      await s?.close();
    }
    return;
  }
  if (cmd === 'names') {
    const s = await Session.open(repo, { readOnly: true });
    try {
      print({ names: s.fs.readdir('/').filter((n) => n !== '.' && n !== '..') });
    } finally {
      await s.close();
    }
    return;
  }
  throw new Error(`unknown command ${cmd}`);
}

main().catch((e: Error) => {
  print({ error: e.message });
  process.exit(1);
});
