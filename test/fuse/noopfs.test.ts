/**
 * bench/noopfs.ts, the benchmark's FUSE ceiling: a namespace that works for tar and ls -lR, writes
 * that keep only the size, reads of zeros, FUSE_DEFAULTS, and a clean exit 0 on SIGTERM.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FUSE_DEFAULTS } from '../../mount/fuse';
import { findMount, listFuseMounts } from '../../mount/teardown';
import { Server, sh, startServer, stopAllServers, tmpdir } from './harness';

let work: string;
let srv: Server;

beforeAll(async () => {
  work = tmpdir('noopfs');
  srv = await startServer('bench/noopfs.ts', path.join(work, 'mnt'));
});

afterAll(async () => {
  try {
    await stopAllServers();
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
});

test('mounted with FUSE_DEFAULTS', () => {
  const m = listFuseMounts().find((x) => x.mountpoint === srv.mnt);
  expect(m).toEqual(expect.objectContaining({ source: 'noopfs', fstype: 'fuse' }));
  expect(m!.options.split(',')).toContain(`max_read=${FUSE_DEFAULTS.maxRead}`);
});

test('writes keep only the size; reads return zeros', async () => {
  const mnt = srv.mnt;
  await sh(`head -c 3000000 /dev/urandom > ${mnt}/r && dd if=/dev/urandom of=${mnt}/big bs=1M count=64 conv=fsync status=none`);
  expect((await sh(`stat -c %s ${mnt}/r ${mnt}/big`)).trim().split('\n')).toEqual(['3000000', String(64 * 2 ** 20)]);
  await sh(`cmp -n ${64 * 2 ** 20} ${mnt}/big /dev/zero && cmp -n 3000000 ${mnt}/r /dev/zero`);
  expect((await sh(`wc -c < ${mnt}/r`)).trim()).toBe('3000000');
  await sh(`rm ${mnt}/r ${mnt}/big`);
});

test("tar x of a tree and ls -lR work (the benchmark's workloads)", async () => {
  const mnt = srv.mnt;
  const src = path.join(work, 'src');
  await sh(
    `mkdir -p ${src}/a/b ${src}/c && echo one > ${src}/a/one && echo two > ${src}/a/b/two && ln -s ../a/one ${src}/c/link && ` +
      `ln ${src}/a/one ${src}/c/hard && chmod 600 ${src}/a/b/two && touch -d @1234567890 ${src}/a/one && tar -C ${src} -cf ${work}/t.tar .`,
  );
  await sh(`mkdir ${mnt}/tree && tar -C ${mnt}/tree -xf ${work}/t.tar`);
  const ls = await sh(`cd ${mnt}/tree && find . | sort && stat -c '%n %a %s %h %Y' a/one a/b/two c/hard && readlink c/link`);
  expect(ls.trim().split('\n')).toEqual([
    '.',
    './a',
    './a/b',
    './a/b/two',
    './a/one',
    './c',
    './c/hard',
    './c/link',
    'a/one 644 4 2 1234567890',
    'a/b/two 600 4 1 ' + (await sh(`stat -c %Y ${src}/a/b/two`)).trim(),
    'c/hard 644 4 2 1234567890',
    '../a/one',
  ]);
  await sh(`ls -lR ${mnt}/tree > /dev/null && rm -r ${mnt}/tree`);
  expect((await sh(`ls -A ${mnt}`)).trim()).toBe('');
});

test('SIGTERM: unmounts and exits 0', async () => {
  expect(await srv.stop()).toBe(0);
  expect(findMount(srv.mnt)).toBeUndefined();
});
