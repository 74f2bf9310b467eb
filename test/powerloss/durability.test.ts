/**
 * Durability order under a real power cut (lazyfs drops every write not fsynced): LMDB keeps its
 * integrity and every synced transaction across torn crashes, and block files reach the disk
 * before the metadata that names them.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import { lazyFsForFile } from './harness';

const ROOT = path.resolve(__dirname, '../..');
const REGISTER = path.join(ROOT, 'test/fuse/ts-register.js');
const CHILD = path.join(__dirname, 'session-child.ts');

const { lazy } = lazyFsForFile('isgfs-durability-');
const M = (name: string) => path.join(lazy().mnt, name);

function child(args: string[]): ChildProcess {
  return spawn(process.execPath, ['-r', REGISTER, CHILD, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs a writer until it reports done, then kills it with SIGKILL (stop everything on the mount before a crash). */
async function runAndKill(args: string[]): Promise<void> {
  const p = child(args);
  let out = '';
  let err = '';
  p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  await new Promise<void>((resolve, reject) => {
    p.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('"done"')) resolve();
      if (out.includes('"error"')) reject(new Error(`${args[0]}: ${out} ${err}`));
    });
    p.once('exit', (code) => reject(new Error(`${args[0]} exited ${code}: ${out} ${err}`)));
  });
  p.kill('SIGKILL');
  await exited;
}

/** Runs a reader to its end; its JSON line, or {error} with how it ended (a damaged LMDB may kill it). */
function runToEnd(args: string[]): Promise<Record<string, unknown>> {
  const p = child(args);
  let out = '';
  let err = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve) =>
    p.once('exit', (code, signal) => {
      const line = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as Record<string, unknown>);
      } catch {
        resolve({ error: `exit ${code ?? signal}: ${out} ${err.slice(-500)}` });
      }
    }),
  );
}

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => `m${from + i}`);

describe('power loss', () => {
  test('the metadata stays intact with every synced operation across crashes and torn crashes (also aimed at the meta pages)', async () => {
    const repo = M('meta-repo');
    let expected: string[] = [];
    for (let round = 0; round < 4; round++) {
      // 30 operations, the first 20 each synced, then 10 that nobody syncs.
      await runAndKill(['meta', repo, String(round * 30), '30', '20']);
      const held = await lazy().pending();
      if (round === 0) await lazy().crash();
      else if (round % 2 === 1) await lazy().crashTorn(round, { unit: round === 1 ? 'page' : 'write' });
      else await lazy().crashApply(held.filter((o) => o.path.endsWith('data.mdb') && o.offset < 3 * 4096).map((o) => o.seq));
      expected = [...expected, ...range(round * 30, 20)];
      const r = await runToEnd(['names', repo]);
      expect(r.error).toBeUndefined();
      const names = r.names as string[];
      for (const n of expected) expect([n, names.includes(n)]).toEqual([n, true]);
      expected = names.filter((n) => n.startsWith('m'));
    }
  }, 300_000);

  test('block files are durable before the commit that names them: a file whose metadata survived reads back', async () => {
    const repo = M('order-repo');
    const bytes = 3 * 1024 * 1024;
    await runAndKill(['write', repo, 'big', '42', String(bytes)]);
    // The worst case a disk may choose: every write LMDB made reaches it, none of the block files' do.
    const held = await lazy().pending();
    await lazy().crashApply(held.filter((o) => o.path.endsWith('data.mdb')).map((o) => o.seq));
    const r = await runToEnd(['read', repo, 'big', '42', String(bytes)]);
    // Either the file made it whole, or its commit did not (the write was never fsynced); never a
    // name whose blocks are gone.
    if (r.ok !== true) expect(r.error).toMatch(/ENOENT/);
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true); // the epoch committed 600 ms before the crash
  });
});
