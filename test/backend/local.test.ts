/**
 * The local backend on a real temp directory: the shared conformance suite, then what only a
 * directory can get wrong: atomic replacement, leftovers of failed puts, errno mapping, and
 * an absent root (an unmounted disk).
 *
 * Faults are injected at the fs boundary (a FileHandle method that fails half-way), because
 * a real full or failing disk cannot be produced in a test, and we run as root, so
 * permission bits do not stop us either.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { BackendError } from '../../src/backend/backend';
import { fsErrorKind, LocalBackend } from '../../src/backend/local';
import * as native from '../../src/native';
import { tmpDir } from '../helpers/tmp';
import { collect, conformance, expectKind } from './conformance';

const dirs: Array<() => void> = [];
afterAll(() => dirs.forEach((c) => c()));

function fresh(): { b: LocalBackend; root: string } {
  const { dir, cleanup } = tmpDir('isgfs-local-');
  dirs.push(cleanup);
  return { b: new LocalBackend('disk1', dir), root: dir };
}

let shared: LocalBackend;
beforeAll(() => {
  shared = fresh().b;
});
conformance('local', () => shared, { manyKeys: 300 }); // > 1000 matters only for S3 paging

/** Every file under dir, relative. */
function walk(dir: string, rel = ''): string[] {
  return fs
    .readdirSync(path.join(dir, rel), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? walk(dir, path.join(rel, e.name)) : [path.join(rel, e.name)]));
}

async function fileHandleProto(dir: string): Promise<fsp.FileHandle> {
  const fh = await fsp.open(path.join(dir, 'probe'), 'w');
  const proto = Object.getPrototypeOf(fh) as fsp.FileHandle;
  await fh.close();
  await fsp.unlink(path.join(dir, 'probe'));
  return proto;
}

function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated`), { code });
}

describe('local: atomicity', () => {
  afterEach(() => jest.restoreAllMocks());

  test('a put whose write fails half-way leaves no object, no partial file and no temp file', async () => {
    const { b, root } = fresh();
    const proto = await fileHandleProto(root);
    const realWrite = proto.write as (...a: unknown[]) => Promise<unknown>;
    jest.spyOn(proto, 'write').mockImplementation(async function (this: fsp.FileHandle, ...args: unknown[]) {
      const [buf, off, len, pos] = args as [Buffer, number, number, number];
      await realWrite.call(this, buf, off, Math.floor(len / 2), pos); // half of it reaches the disk
      throw errno('EIO');
    } as typeof proto.write);
    const e = await expectKind(b.put('atom/new', Buffer.alloc(1 << 20, 7)), 'transient');
    expect(e.message).toMatch(/EIO/);
    expect(await b.stat('atom/new')).toBeNull();
    expect(walk(root)).toEqual([]); // not even the temp file
  });

  test('a failed overwrite keeps the old object whole', async () => {
    const { b, root } = fresh();
    await b.put('atom/x', Buffer.alloc(300_000, 1));
    const proto = await fileHandleProto(root);
    const realWrite = proto.write as (...a: unknown[]) => Promise<unknown>;
    jest.spyOn(proto, 'write').mockImplementation(async function (this: fsp.FileHandle, ...args: unknown[]) {
      const [buf, off, , pos] = args as [Buffer, number, number, number];
      await realWrite.call(this, buf, off, 1000, pos);
      throw errno('ENOSPC');
    } as typeof proto.write);
    const e = await expectKind(b.put('atom/x', Buffer.alloc(500_000, 2)), 'permanent');
    expect(e.message).toMatch(/no space left on device/);
    jest.restoreAllMocks();
    expect((await b.get('atom/x')).equals(Buffer.alloc(300_000, 1))).toBe(true);
    expect(walk(root)).toEqual([path.join('atom', 'x')]);
  });

  test('concurrent readers see a whole old or a whole new object, never a mix or a part', async () => {
    const { b } = fresh();
    const size = 1024 * 1024;
    await b.put('race/obj', Buffer.alloc(size, 0));
    let writing = true;
    const writer = (async () => {
      for (let v = 1; v <= 12; v++) await b.put('race/obj', Buffer.alloc(size, v));
      writing = false;
    })();
    const seen = new Set<number>();
    const reader = async () => {
      while (writing) {
        const got = await b.get('race/obj');
        expect(got.length).toBe(size);
        const v = got[0];
        expect(got.every((x) => x === v)).toBe(true);
        seen.add(v);
        const info = await b.stat('race/obj');
        expect(info?.size).toBe(size);
      }
    };
    await Promise.all([writer, reader(), reader()]);
    expect((await b.get('race/obj'))[0]).toBe(12);
    expect(seen.size).toBeGreaterThan(1); // the readers really overlapped the writer
    expect((await collect(b.list('race/'))).map((o) => o.key)).toEqual(['race/obj']);
  });

  test('temp files of an interrupted put are not listed', async () => {
    const { b, root } = fresh();
    await b.put('tmp/a', Buffer.from('a'));
    fs.writeFileSync(path.join(root, 'tmp', '.isg-tmp-deadbeef'), 'partial');
    expect((await collect(b.list(''))).map((o) => o.key)).toEqual(['tmp/a']);
    await expectKind(b.put('tmp/.isg-tmp-x', Buffer.from('x')), 'permanent');
  });
});

describe('local: errors', () => {
  afterEach(() => jest.restoreAllMocks());

  test('errno -> kind', () => {
    expect(fsErrorKind('EACCES')).toBe('unauthorised');
    expect(fsErrorKind('EPERM')).toBe('unauthorised');
    expect(fsErrorKind('ENOSPC')).toBe('permanent');
    expect(fsErrorKind('EIO')).toBe('transient');
    expect(fsErrorKind('EROFS')).toBe('permanent');
  });

  test('EACCES while reading is unauthorised (whole and ranged)', async () => {
    const { b } = fresh();
    await b.put('acc/x', Buffer.from('x'));
    // Reads go through one addon call (root ignores file modes, so the error is injected there).
    jest.spyOn(native, 'preadFile').mockRejectedValue(errno('EACCES'));
    await expectKind(b.get('acc/x'), 'unauthorised');
    await expectKind(b.get('acc/x', { offset: 0, length: 1 }), 'unauthorised');
  });

  test('an absent root (unmounted disk) is transient, not not-found; init creates it', async () => {
    const { root } = fresh();
    const b = new LocalBackend('disk2', path.join(root, 'not', 'yet'));
    await expectKind(b.get('x'), 'transient');
    await expectKind(b.put('a/b', Buffer.from('x')), 'transient');
    await expect(collect(b.list(''))).rejects.toMatchObject({ kind: 'transient' });
    await expect(b.stat('x')).rejects.toBeInstanceOf(BackendError);
    expect(fs.existsSync(path.join(root, 'not'))).toBe(false);
    await b.init();
    await b.put('a/b', Buffer.from('x'));
    expect((await b.get('a/b')).toString()).toBe('x');
  });

  test('a key under an existing object is a permanent error (files cannot be directories)', async () => {
    const { b } = fresh();
    await b.put('f', Buffer.from('x'));
    await expectKind(b.put('f/g', Buffer.from('y')), 'permanent');
    expect(await b.stat('f/g')).toBeNull();
    await expectKind(b.get('f/g'), 'not-found');
  });

  test('a directory of other keys is not an object', async () => {
    const { b } = fresh();
    await b.put('d/e', Buffer.from('x'));
    expect(await b.stat('d')).toBeNull();
    await expectKind(b.get('d'), 'not-found');
    await b.delete('d');
    expect(await b.stat('d/e')).not.toBeNull();
  });
});
