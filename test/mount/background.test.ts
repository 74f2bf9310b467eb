/** Failures of the daemon's background work are visible: in its log (once, not every second) and in `isg status --json`. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isg, mount, mountDirs, Mounted, sh, umount } from '../helpers/mount';

jest.setTimeout(300_000);

async function status(data: string) {
  const r = await isg(['status', data, '--json']);
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as {
    lastError: { time: string; stage: string; message: string } | null;
    uploadStalledSince: string | null;
    pendingUploadBlocks: number;
  };
}

async function until<T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

describe('every backend unwritable', () => {
  const { t, data, mnt } = mountDirs();
  const disk = (i: number) => path.join(t.dir, `disk${i}`);
  let m: Mounted;

  beforeAll(async () => {
    const args = ['init', data, '--ec', '2+1'];
    for (let i = 0; i < 3; i++) args.push('--backend', `disk${i}=local:${disk(i)}`);
    const r = await isg(args);
    if (r.code !== 0) throw new Error(r.stderr);
    // Partial packs are sealed after 300 ms instead of 10 s: the packer tries every second.
    const config = path.join(data, 'config');
    const c = JSON.parse(fs.readFileSync(config, 'utf8'));
    c.storage.packQuietMs = 300;
    fs.writeFileSync(config, JSON.stringify(c, null, 2));
    m = await mount(data, mnt);
  });

  test('the upload failure is in status (lastError, uploadStalledSince) and logged once; both clear when uploads work again', async () => {
    await sh(`head -c 300000 /dev/urandom > ${t.dir}/ok.bin && cp ${t.dir}/ok.bin ${mnt}/`);
    await until(
      'the first upload',
      () => status(data),
      (s) => s.pendingUploadBlocks === 0,
    );
    let s = await status(data);
    expect(s.lastError).toBeNull();
    expect(s.uploadStalledSince).toBeNull();

    // The backends' directories become files: every put fails (ENOTDIR), so no pack gets its k shards.
    for (let i = 0; i < 3; i++) {
      fs.renameSync(disk(i), disk(i) + '.away');
      fs.writeFileSync(disk(i), 'not a directory');
    }
    const before = Date.now();
    await sh(`head -c 300000 /dev/urandom > ${t.dir}/stuck.bin && cp ${t.dir}/stuck.bin ${mnt}/`);
    s = await until(
      'the upload failure in status',
      () => status(data),
      (x) => x.lastError !== null,
    );
    expect(s.lastError!.stage).toBe('upload');
    expect(s.lastError!.message).toMatch(/only 0 of 3 shards stored \(need 2\)/);
    expect(s.uploadStalledSince).not.toBeNull();
    const since = Date.parse(s.uploadStalledSince!);
    expect(since).toBeGreaterThanOrEqual(before - 1000);
    expect(since).toBeLessThanOrEqual(Date.parse(s.lastError!.time));
    expect(s.pendingUploadBlocks).toBeGreaterThan(0);

    // The packer tries every second: after 6 s more, still one warn line (and the stall did not move).
    await new Promise((r) => setTimeout(r, 6000));
    s = await status(data);
    expect(Date.parse(s.lastError!.time)).toBeGreaterThan(Date.parse(s.uploadStalledSince!) + 3000);
    expect(s.uploadStalledSince).toBe(new Date(since).toISOString());
    const warned = m
      .stderr()
      .split('\n')
      .filter((l) => / warn background upload failed: /.test(l));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatch(/only 0 of 3 shards stored/);

    // The text form says so too.
    const text = await isg(['status', data]);
    expect(text.stdout).toMatch(/uploads +STALLED since /);
    expect(text.stdout).toMatch(/last error +\S+ upload: pack /);

    // Backends back: the queue drains, the stall clears; the last error stays (it is history).
    for (let i = 0; i < 3; i++) {
      fs.rmSync(disk(i));
      fs.renameSync(disk(i) + '.away', disk(i));
    }
    s = await until(
      'the stall to clear',
      () => status(data),
      (x) => x.uploadStalledSince === null && x.pendingUploadBlocks === 0,
    );
    expect(s.lastError!.stage).toBe('upload');
    await sh(`cmp ${t.dir}/stuck.bin ${mnt}/stuck.bin`);
    expect(await umount(m)).toBe(0);

    // Not mounted: no background work runs, so nothing is reported.
    s = await status(data);
    expect(s.lastError).toBeNull();
    expect(s.uploadStalledSince).toBeNull();
  });
});
