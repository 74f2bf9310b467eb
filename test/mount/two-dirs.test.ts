/**
 * Two data directories of one repository on the same backends (three local directories outside
 * both, 2+1): the first writes through its mount, the second was made by `isg connect` earlier.
 * The second cannot mount read-write while the first holds the writer lease, can mount read-only,
 * and then serves the state the first published after the connect (src/repo/refresh.ts), not its
 * own stale metadata; a second data directory with changes of its own that another writer
 * overtook has diverged: read-write refused, read-only serves its own state with a warning.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readSeenHead } from '../../src/repo/connect';
import { ISG, isg, kill9, mount, mountDirs, umount } from '../helpers/mount';
import { run } from '../helpers/proc';

jest.setTimeout(300_000);

describe('two data directories on the same backends', () => {
  const { t, data: first, mnt } = mountDirs();
  const second = path.join(t.dir, 'second');
  const mnt2 = path.join(t.dir, 'mnt2');
  const pw = () => ['--password-file', path.join(t.dir, 'pw')];
  const specs = () => [0, 1, 2].flatMap((i) => ['--backend', `disk${i}=local:${path.join(t.dir, `disk${i}`)}`]);
  const ok = async (args: string[]) => {
    const r = await isg(args);
    if (r.code !== 0) throw new Error(`isg ${args.join(' ')} -> ${r.code}\n${r.stderr}`);
    return r;
  };
  /** `isg mount` expected to fail: it must exit on its own (a mount that succeeds would block). */
  const refusedMount = async (dataDir: string, args: string[] = []) => {
    fs.mkdirSync(mnt2, { recursive: true });
    const r = await run(process.execPath, [ISG, 'mount', dataDir, mnt2, ...pw(), ...args], { timeout: 60_000 });
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBe(-1);
    return r.stderr;
  };

  beforeAll(async () => {
    fs.writeFileSync(path.join(t.dir, 'pw'), 'two dirs\n');
    await ok(['init', first, '--ec', '2+1', ...pw(), ...specs()]);
  });

  test('the second: read-write refused while the first writes, read-only serves what the first published', async () => {
    const a = await mount(first, mnt, pw());
    fs.writeFileSync(path.join(mnt, 'before'), 'published before the connect\n');
    await ok(['flush', first, ...pw()]);
    expect(await umount(a)).toBe(0);
    await ok(['connect', second, ...specs(), ...pw()]);
    const connected = await readSeenHead(second);
    expect(connected?.seq).toBeGreaterThan(0);

    // The first writes on; the second's metadata knows nothing of it.
    const a2 = await mount(first, mnt, pw());
    fs.writeFileSync(path.join(mnt, 'after'), 'published after the connect\n');
    fs.mkdirSync(path.join(mnt, 'dir'));
    fs.writeFileSync(path.join(mnt, 'dir/deep'), Buffer.alloc(300_000, 7));
    fs.rmSync(path.join(mnt, 'before'));
    await ok(['flush', first, ...pw()]);

    const stderr = await refusedMount(second);
    expect(stderr).toMatch(new RegExp(`repository in use by ${os.hostname()} since \\d{4}-\\d\\d-\\d\\dT`));

    const b = await mount(second, mnt2, [...pw(), '--read-only']);
    try {
      expect(fs.readFileSync(path.join(mnt2, 'after'), 'utf8')).toBe('published after the connect\n');
      expect(fs.readFileSync(path.join(mnt2, 'dir/deep')).equals(Buffer.alloc(300_000, 7))).toBe(true);
      expect(fs.existsSync(path.join(mnt2, 'before'))).toBe(false);
    } finally {
      expect(await umount(b)).toBe(0);
    }
    const seen = await readSeenHead(second);
    expect(seen!.seq).toBeGreaterThan(connected!.seq);

    // Mounted read-only again after another publish of the first: the newer state again.
    fs.writeFileSync(path.join(mnt, 'later'), 'later\n');
    await ok(['flush', first, ...pw()]);
    const b2 = await mount(second, mnt2, [...pw(), '--read-only']);
    try {
      expect(fs.readFileSync(path.join(mnt2, 'later'), 'utf8')).toBe('later\n');
    } finally {
      expect(await umount(b2)).toBe(0);
    }
    expect((await readSeenHead(second))!.seq).toBeGreaterThan(seen!.seq);
    expect(await umount(a2)).toBe(0);
  });

  test('a second data directory whose own changes another writer overtook has diverged', async () => {
    // The second writes without publishing, and dies.
    const b = await mount(second, mnt2, pw());
    fs.writeFileSync(path.join(mnt2, 'mine'), 'never published\n');
    const fd = fs.openSync(path.join(mnt2, 'mine'), 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    await kill9(b);
    // The first takes over the dead writer's lease and publishes.
    const a = await mount(first, mnt, [...pw(), '--take-over']);
    fs.writeFileSync(path.join(mnt, 'theirs'), 'published by the first\n');
    await ok(['flush', first, ...pw()]);
    expect(await umount(a)).toBe(0);

    const stderr = await refusedMount(second);
    expect(stderr).toMatch(/for writing: diverged: another writer \(.*\) published head \d+ after head \d+ this data directory saw/);
    expect(stderr).toContain('changed inode(s)');

    const ro = await mount(second, mnt2, [...pw(), '--read-only']);
    try {
      expect(fs.readFileSync(path.join(mnt2, 'mine'), 'utf8')).toBe('never published\n');
      expect(fs.existsSync(path.join(mnt2, 'theirs'))).toBe(false);
    } finally {
      expect(await umount(ro)).toBe(0);
    }
    expect(ro.stderr()).toContain('serving this data directory');
  });
});
