/**
 * `isg snapshot` against a real mount (the daemon answers over its control socket): a snapshot
 * taken while a writer appends holds a prefix of the appends, never a torn record; a file
 * overwritten after the snapshot still reads its old contents through the snapshot's tree, a
 * `--snapshot` mount beside the live one, `isg restore` and `isg clone`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Session } from '../../src/repo/session';
import { decodeTreeObject, extentsOfEntry, readDirectory, TreeEntry } from '../../src/snapshot/tree';
import { isg, mount, mountDirs, Mounted, umount } from '../helpers/mount';
import { spawnKeepingStderr } from '../helpers/proc';

jest.setTimeout(300_000);

const RECORD = 4096;

/** The writer: appends records (seq, then the byte seq % 251) with write(2) on an O_APPEND fd until killed. */
const WRITER = `
const fs = require('fs');
const fd = fs.openSync(process.argv[1], 'a');
const b = Buffer.alloc(${RECORD});
for (let seq = 0; ; seq++) {
  b.fill(seq % 251);
  b.write(String(seq).padStart(8, '0'), 0);
  fs.writeSync(fd, b);
  if (seq === 20) process.send && process.send('going');
}`;

function checkRecords(data: Buffer): number {
  expect(data.length % RECORD).toBe(0);
  const n = data.length / RECORD;
  for (let seq = 0; seq < n; seq++) {
    const r = data.subarray(seq * RECORD, (seq + 1) * RECORD);
    expect(r.toString('latin1', 0, 8)).toBe(String(seq).padStart(8, '0'));
    for (let i = 8; i < RECORD; i += 509) expect(r[i]).toBe(seq % 251);
  }
  return n;
}

async function readThroughTree(s: Session, root: Buffer, p: string): Promise<Buffer> {
  const fetch = (oid: Buffer) => s.store.readPlain(oid);
  let entry: TreeEntry = (decodeTreeObject(await fetch(root)) as { entries: TreeEntry[] }).entries[0];
  for (const name of p.split('/').filter(Boolean))
    entry = (await readDirectory(entry.dir!, fetch)).find((e) => e.name.toString() === name)!;
  const out = Buffer.alloc(entry.size);
  for (const x of await extentsOfEntry(entry, fetch)) (await s.store.readPlain(x.id)).copy(out, x.offset);
  return out;
}

describe('isg snapshot on a mount', () => {
  const { data, mnt } = mountDirs();
  let m: Mounted;

  test('during appends: a prefix of whole records; an overwritten file keeps its old contents', async () => {
    m = await mount(data, mnt, ['--publish-interval', '1h']);
    const over = path.join(mnt, 'over');
    fs.writeFileSync(over, 'the contents before the snapshot\n');

    const log = path.join(mnt, 'log');
    const w = spawnKeepingStderr(process.execPath, ['-e', WRITER, log], true);
    await new Promise<void>((resolve, reject) => {
      w.proc.once('message', () => resolve());
      w.exited.then((c) => reject(new Error(`writer exited ${c}: ${w.stderr()}`)), reject);
    });
    const acknowledged = fs.statSync(log).size; // every write(2) that returned before the call
    const created = await isg(['snapshot', 'create', data, '--tag', 'during appends', '--json']);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const snap = JSON.parse(created.stdout) as { id: string; root: string; files: number; tag: string };
    await new Promise((r) => setTimeout(r, 300)); // appends after the snapshot
    w.proc.kill('SIGKILL');
    await w.exited;
    fs.writeFileSync(over, 'overwritten after it\n');

    const ls = await isg(['snapshot', 'ls', data, '--json']);
    expect(ls.code).toBe(0);
    expect(JSON.parse(ls.stdout)).toEqual([expect.objectContaining({ id: snap.id, tag: 'during appends', files: 2 })]);
    const diff = await isg(['snapshot', 'diff', data, snap.id.slice(0, 8), 'live', '--json']);
    expect(diff.code).toBe(0);
    expect((JSON.parse(diff.stdout) as { modified: { path: string }[] }).modified.map((x) => x.path).sort()).toEqual(['/log', '/over']);
    const unknown = await isg(['snapshot', 'rm', data, 'abcdef12']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/no snapshot "abcdef12"/);
    const finalLog = fs.readFileSync(log);
    expect(await umount(m)).toBe(0);

    let inSnapLog: Buffer | undefined;
    const s = await Session.open(data, { readOnly: true });
    try {
      const inSnap = await readThroughTree(s, Buffer.from(snap.root, 'hex'), '/log');
      inSnapLog = inSnap;
      const n = checkRecords(inSnap);
      expect(inSnap.length).toBeGreaterThanOrEqual(acknowledged);
      expect(finalLog.subarray(0, inSnap.length).equals(inSnap)).toBe(true);
      expect(finalLog.length).toBeGreaterThan(inSnap.length); // the appends after it are not in it
      checkRecords(finalLog.subarray(0, finalLog.length - (finalLog.length % RECORD)));
      expect((await readThroughTree(s, Buffer.from(snap.root, 'hex'), '/over')).toString()).toBe('the contents before the snapshot\n');
      console.log(`snapshot during appends: ${n} whole records of ${Math.floor(finalLog.length / RECORD)} written`);
    } finally {
      await s.close();
    }

    // The same snapshot, by id, through the three ways of reading it: a --snapshot mount beside
    // the live one, `isg restore` and `isg clone`; each has the contents from before the overwrite.
    m = await mount(data, mnt, ['--publish-interval', '1h']);
    const snapMnt = path.join(path.dirname(mnt), 'snapshot-mount');
    const view = await mount(data, snapMnt, ['--snapshot', snap.id]);
    try {
      expect(fs.readFileSync(path.join(snapMnt, 'over'), 'utf8')).toBe('the contents before the snapshot\n');
      expect(fs.readFileSync(path.join(snapMnt, 'log')).equals(inSnapLog!)).toBe(true);
      expect(fs.readFileSync(path.join(mnt, 'over'), 'utf8')).toBe('overwritten after it\n');
    } finally {
      expect(await umount(view)).toBe(0);
    }
    const restored = path.join(path.dirname(mnt), 'restored');
    const r = await isg(['restore', data, snap.id, restored]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(fs.readFileSync(path.join(restored, 'over'), 'utf8')).toBe('the contents before the snapshot\n');
    expect(fs.readFileSync(path.join(restored, 'log')).equals(inSnapLog!)).toBe(true);
    const c = await isg(['clone', data, snap.id, path.join(mnt, 'cloned')]);
    expect(c.stderr).toBe('');
    expect(c.code).toBe(0);
    expect(fs.readFileSync(path.join(mnt, 'cloned', 'over'), 'utf8')).toBe('the contents before the snapshot\n');
    fs.appendFileSync(path.join(mnt, 'cloned', 'over'), 'the clone is writable\n');
    expect(fs.readFileSync(path.join(mnt, 'over'), 'utf8')).toBe('overwritten after it\n');
    expect(await umount(m)).toBe(0);

    // Not mounted: the command line opens the repository itself.
    const rm = await isg(['snapshot', 'rm', data, snap.id]);
    expect(rm.stderr).toBe('');
    expect(rm.stdout).toMatch(new RegExp(`removed snapshot ${snap.id} \\(\\d+ blocks no longer kept\\)`));
    expect(JSON.parse((await isg(['snapshot', 'ls', data, '--json'])).stdout)).toEqual([]);
    const again = await isg(['snapshot', 'diff', data, snap.id, 'latest']);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/no snapshot/);
  });
});
