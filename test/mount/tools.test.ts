/** Real tools against a real mount: cp -a, diff -r, rsync, tar, git, sqlite3. */
import * as fs from 'node:fs';
import { isg, mount, mountDirs, Mounted, ROOT, sh, umount } from '../helpers/mount';

jest.setTimeout(600_000);

describe('tools in the mount', () => {
  const { data, mnt } = mountDirs();
  let m: Mounted;

  beforeAll(async () => {
    // No publish during the tests: its tree objects are blocks too, and one landing between two
    // readings of storedBytes would count the metadata of every earlier test as the copy's.
    m = await mount(data, mnt, ['--publish-interval', '1h']);
  });

  test('cp -a of the project node_modules (thousands of files), then diff -r', async () => {
    await sh(`cp -a ${ROOT}/node_modules ${mnt}/nm`);
    await sh(`diff -r --no-dereference ${ROOT}/node_modules ${mnt}/nm`);
    const count = Number((await sh(`find ${mnt}/nm -type f | wc -l`)).trim());
    expect(count).toBeGreaterThan(5000);
    // metadata kept by cp -a: modes and nanosecond mtimes
    // (directory sizes are the filesystem's own business: ext4 says 4096, isgfs 0)
    const meta = (dir: string) =>
      `cd ${dir} && find . -path ./.cache -prune -o -print0 | sort -z | xargs -0 stat -c '%n %F %a %Y.%y' | head -3000 && ` +
      `find . -path ./.cache -prune -o -type f -print0 | sort -z | xargs -0 stat -c '%n %s' | head -3000`;
    const want = await sh(meta(`${ROOT}/node_modules`));
    const got = await sh(meta(`${mnt}/nm`));
    expect(got).toBe(want);
  });

  test('a second copy of a tree leaves storedBytes almost unchanged', async () => {
    const src = `${ROOT}/node_modules/typescript`;
    await sh(`cp -a ${src} ${mnt}/ts1 && sync -f ${mnt}/ts1`);
    const before = JSON.parse((await isg(['status', data, '--json'])).stdout);
    await sh(`cp -a ${src} ${mnt}/ts2 && sync -f ${mnt}/ts2`);
    const after = JSON.parse((await isg(['status', data, '--json'])).stdout);
    expect(after.logicalBytes - before.logicalBytes).toBeGreaterThan(10_000_000);
    expect(after.storedBytes - before.storedBytes).toBeLessThan(0.01 * (after.logicalBytes - before.logicalBytes));
    for (const k of ['files', 'directories', 'logicalBytes', 'storedBytes', 'uniqueBlocks']) expect(typeof after[k]).toBe('number');
  });

  test('rsync -a twice: the second run transfers nothing', async () => {
    const src = `${ROOT}/node_modules/lmdb`;
    await sh(`rsync -a ${src}/ ${mnt}/rs/`);
    await sh(`diff -r ${src} ${mnt}/rs`);
    const out = await sh(`rsync -a --stats ${src}/ ${mnt}/rs/`);
    expect(out).toMatch(/Number of regular files transferred: 0/);
  });

  test('tar c | tar x round trip', async () => {
    await sh(`tar -C ${ROOT}/node_modules -cf - winston logform | tar -C ${mnt} -xf - && mkdir -p ${mnt}/tx`);
    await sh(`tar -C ${mnt} -cf - winston logform | tar -C ${mnt}/tx -xf -`);
    await sh(`diff -r ${ROOT}/node_modules/winston ${mnt}/tx/winston && diff -r ${ROOT}/node_modules/logform ${mnt}/tx/logform`);
  });

  test('git init / add / commit / log inside the mount', async () => {
    const repo = `${mnt}/gitrepo`;
    await sh(
      `mkdir ${repo} && cp -a ${ROOT}/src ${repo}/ && cd ${repo} && git init -q && git add -A && ` +
        `git -c user.name=t -c user.email=t@t commit -qm first && echo more >> src/log.ts && ` +
        `git -c user.name=t -c user.email=t@t commit -qam second && git gc -q && git fsck --strict`,
    );
    const log = await sh(`cd ${repo} && git log --oneline`);
    expect(log.trim().split('\n')).toHaveLength(2);
    expect(await sh(`cd ${repo} && git status --porcelain`)).toBe('');
  });

  test('sqlite3 database created, written and queried inside the mount', async () => {
    const db = `${mnt}/test.sqlite`;
    await sh(
      `sqlite3 ${db} "create table t(id integer primary key, v text); ` +
        `with recursive c(x) as (select 1 union all select x+1 from c where x < 20000) insert into t(v) select hex(randomblob(50)) from c; ` +
        `create index iv on t(v); delete from t where id % 3 = 0; vacuum;"`,
    );
    expect((await sh(`sqlite3 ${db} "select count(*) from t; pragma integrity_check;"`)).trim()).toBe('13334\nok');
  });

  test('umount returns after the daemon is done', async () => {
    expect(await umount(m)).toBe(0);
    expect(fs.readFileSync('/proc/mounts', 'utf8')).not.toContain(mnt);
  });
});
