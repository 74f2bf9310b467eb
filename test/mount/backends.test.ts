/** The mount over erasure-coded backends: flush, cold reads, lost and corrupt shards, S3, a small cache. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isg, mount, mountDirs, Mounted, ROOT, sh, umount } from '../helpers/mount';
import { prng } from '../helpers/tmp';
import { S3rverProcess, S3RVER_KEY } from '../backend/s3rver';

jest.setTimeout(600_000);

async function status(data: string) {
  const r = await isg(['status', data, '--json']);
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}

async function flushAndDrop(data: string) {
  const f = await isg(['flush', data]);
  if (f.code !== 0) throw new Error(`isg flush: ${f.stderr}`);
  const d = await isg(['cache', 'drop', data]);
  if (d.code !== 0) throw new Error(`isg cache drop: ${d.stderr}`);
}

describe('six local backends (the embedded default)', () => {
  const { t, data, mnt } = mountDirs();
  const src = path.join(t.dir, 'src');
  let m: Mounted;
  const dir = (i: number) => path.join(data, 'backends', `local${i}`);

  beforeAll(async () => {
    fs.mkdirSync(src);
    await sh(`cp -a ${ROOT}/node_modules/winston ${ROOT}/node_modules/lru-cache ${src}/ && head -c 30000000 /dev/urandom > ${src}/big.bin`);
    m = await mount(data, mnt);
    await sh(`cp -a ${src}/. ${mnt}/`);
  });

  test('isg flush, isg cache drop, remount: everything reads back bit for bit from the backends', async () => {
    await flushAndDrop(data);
    const st = await status(data);
    expect(st.pendingUploadBytes).toBe(0);
    expect(st.localBytes).toBe(0);
    expect(st.backends.map((b: { name: string }) => b.name)).toEqual(['local0', 'local1', 'local2', 'local3', 'local4', 'local5']);
    expect(
      st.backends.every((b: { shards: number; healthy: boolean; path: string }) => b.shards > 0 && b.healthy && b.path.startsWith(data)),
    ).toBe(true);
    expect(await umount(m)).toBe(0);
    m = await mount(data, mnt);
    await sh(`diff -r ${src} ${mnt}`);
  });

  test('every combination of 2 lost backends: reads are bit for bit, status reports the missing shards', async () => {
    for (let a = 0; a < 6; a++) {
      for (let b = a + 1; b < 6; b++) {
        fs.renameSync(dir(a), dir(a) + '.away');
        fs.renameSync(dir(b), dir(b) + '.away');
        try {
          expect((await isg(['cache', 'drop', data])).code).toBe(0);
          await sh(`cmp ${src}/big.bin ${mnt}/big.bin && diff -r ${src}/winston ${mnt}/winston`);
          if (b === a + 1) {
            const st = await status(data);
            const missing = st.backends.filter((x: { missingShards: number }) => x.missingShards > 0).map((x: { name: string }) => x.name);
            expect(missing).toEqual([`local${a}`, `local${b}`]);
            expect(st.missingShards).toBeGreaterThan(0);
          }
        } finally {
          fs.renameSync(dir(a) + '.away', dir(a));
          fs.renameSync(dir(b) + '.away', dir(b));
        }
      }
    }
    expect((await status(data)).missingShards).toBe(0);
  });

  test('flipped bytes inside random shards are detected and served from the other shards', async () => {
    const r = prng(3);
    const shardFiles = (await sh(`find ${dir(0)} ${dir(3)} -type f`)).trim().split('\n');
    for (const f of shardFiles) {
      const b = fs.readFileSync(f);
      for (let n = 0; n < 50; n++) b[100 + r.int(b.length - 100)] ^= 0x5a;
      fs.writeFileSync(f, b);
    }
    expect((await isg(['cache', 'drop', data])).code).toBe(0);
    await sh(`diff -r ${src} ${mnt}`);
  });

  test('umount keeps pending uploads queued; they resume on the next mount and flush', async () => {
    await sh(`head -c 5000000 /dev/urandom > ${src}/late.bin && cp ${src}/late.bin ${mnt}/late.bin`);
    expect(await umount(m)).toBe(0);
    const st = await status(data);
    expect(st.pendingUploadBytes).toBeGreaterThan(4_000_000);
    m = await mount(data, mnt);
    await flushAndDrop(data);
    expect((await status(data)).pendingUploadBytes).toBe(0);
    await sh(`cmp ${src}/late.bin ${mnt}/late.bin`);
    expect(await umount(m)).toBe(0);
    const f = await isg(['flush', data]); // not mounted: drains by itself
    expect(f.code).toBe(0);
  });
});

describe('a cache far smaller than the data', () => {
  const { t, data, mnt } = mountDirs();

  test('8 MiB of cache for 500 MiB written: every file reads back correctly', async () => {
    const m = await mount(data, mnt, ['--cache-size', '8M', '--cache-dir-size', '8M']);
    await sh(`for i in $(seq 1 10); do head -c 50000000 /dev/urandom | tee ${t.dir}/f$i | cat > ${mnt}/f$i; done`);
    expect((await isg(['flush', data])).code).toBe(0);
    const st = await status(data);
    expect(st.localBytes).toBeLessThan(16 * 1024 * 1024);
    await sh(`for i in $(seq 1 10); do cmp ${t.dir}/f$i ${mnt}/f$i || exit 1; done`);
    expect((await status(data)).localBytes).toBeLessThan(16 * 1024 * 1024);
    expect(await umount(m)).toBe(0);
  });
});

describe('S3 backends on a real S3 server', () => {
  let s3: S3rverProcess;
  const { t, data, mnt } = mountDirs(() => s3.close());
  let m: Mounted;
  const dir = (i: number) => path.join(t.dir, `disk${i}`);

  beforeAll(async () => {
    s3 = await S3rverProcess.start('isgtest');
    const spec = (n: number) => `s3${n}=s3:${s3.endpoint}/isgtest/b${n}?accessKeyId=${S3RVER_KEY}&secretAccessKey=${S3RVER_KEY}`;
    const args = ['init', data, '--ec', '4+2'];
    for (let i = 0; i < 4; i++) args.push('--backend', `disk${i}=local:${dir(i)}`);
    args.push('--backend', spec(0), '--backend', spec(1));
    const r = await isg(args);
    if (r.code !== 0) throw new Error(r.stderr);
  });

  test('upload, ranged reads after cache drop, and the loss of two local disks (S3 shards needed)', async () => {
    m = await mount(data, mnt);
    await sh(`head -c 20000000 /dev/urandom > ${t.dir}/a.bin && cp ${t.dir}/a.bin ${mnt}/a.bin`);
    await flushAndDrop(data);
    const st = await status(data);
    const s3s = st.backends.filter((b: { type: string }) => b.type === 's3');
    expect(s3s).toHaveLength(2);
    expect(s3s.every((b: { shards: number; tier: string; healthy: boolean }) => b.shards > 0 && b.tier === 'warm' && b.healthy)).toBe(true);
    await sh(`cmp ${t.dir}/a.bin ${mnt}/a.bin`);
    fs.renameSync(dir(0), dir(0) + '.away');
    fs.renameSync(dir(2), dir(2) + '.away');
    try {
      expect((await isg(['cache', 'drop', data])).code).toBe(0);
      await sh(`cmp ${t.dir}/a.bin ${mnt}/a.bin`);
    } finally {
      fs.renameSync(dir(0) + '.away', dir(0));
      fs.renameSync(dir(2) + '.away', dir(2));
    }
  });

  test('the S3 server stops mid-workload: reads and writes go on; after it is back, isg flush completes and nothing is lost', async () => {
    await s3.stop();
    // Reads of evicted data: the four local disks hold k shards.
    expect((await isg(['cache', 'drop', data])).code).toBe(0);
    await sh(`cmp ${t.dir}/a.bin ${mnt}/a.bin`);
    // Writes land locally.
    await sh(`head -c 10000000 /dev/urandom > ${t.dir}/b.bin && cp ${t.dir}/b.bin ${mnt}/b.bin && cmp ${t.dir}/b.bin ${mnt}/b.bin`);
    await s3.run();
    const f = await isg(['flush', data]);
    expect(f.stderr).toBe('');
    expect(f.code).toBe(0);
    const st = await status(data);
    expect(st.pendingUploadBytes).toBe(0);
    expect(st.missingShards).toBe(0);
    expect(await umount(m)).toBe(0);
    m = await mount(data, mnt);
    expect((await isg(['cache', 'drop', data])).code).toBe(0);
    await sh(`cmp ${t.dir}/a.bin ${mnt}/a.bin && cmp ${t.dir}/b.bin ${mnt}/b.bin`);
    expect((await isg(['check', data])).code).toBe(0);
    expect(await umount(m)).toBe(0);
  });
});
