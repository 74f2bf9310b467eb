/**
 * The behaviour every Backend must show, run against each real backend type.
 *
 * Decisions (why): one suite for all types, because the pack layer programs against the
 * interface and must not learn which backend it talks to; a type that passes this suite is
 * a drop-in. Keys are unique per test so tests do not depend on each other's leftovers.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Backend, BackendError, ObjectInfo } from '../../src/backend/backend';

export interface ConformanceOptions {
  /** Keys to list in the "many keys" test (> 1000 exercises S3 continuation). */
  manyKeys: number;
  /**
   * Creates the many-keys fixture some faster way than put (test setup only; the other tests
   * cover put). Default: put through the backend.
   */
  seedMany?: (objects: Array<[string, Buffer]>) => Promise<void>;
  /** Runs after the big-object put; e.g. to check multipart was used. */
  afterBigPut?: () => void;
  beforeBigPut?: () => void;
  /** Test-setup workarounds for a server's known bugs (see the s3rver notes in s3.test.ts). */
  serverBugs?: {
    /** Listings are not in key order when keys differ by a character below '/' ("b-" vs "b/"). */
    unsortedListing?: boolean;
    /** A ranged GET of an empty object is answered with Content-Length 1 and no body. */
    rangedGetOfEmptyObjectHangs?: boolean;
  };
}

export async function collect(it: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const o of it) out.push(o);
  return out;
}

export async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (i < items.length) await fn(items[i++]);
    }),
  );
}

export async function expectKind(p: Promise<unknown>, kind: BackendError['kind']): Promise<BackendError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(BackendError);
  expect((e as BackendError).kind).toBe(kind);
  return e as BackendError;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export function conformance(label: string, get: () => Backend, opts: ConformanceOptions): void {
  describe(`${label}: Backend conformance`, () => {
    test('put then get returns the same bytes; stat gives the size', async () => {
      const b = get();
      const data = randomBytes(100_000);
      await b.put('rt/one', data);
      expect((await b.get('rt/one')).equals(data)).toBe(true);
      expect(await b.stat('rt/one')).toEqual({ key: 'rt/one', size: 100_000 });
    });

    test('overwrite replaces the whole object', async () => {
      const b = get();
      await b.put('ow/x', Buffer.alloc(5000, 1));
      await b.put('ow/x', Buffer.from('short'));
      expect((await b.get('ow/x')).toString()).toBe('short');
      expect((await b.stat('ow/x'))?.size).toBe(5);
    });

    test('ranged get: middle, start, exactly at the end, past the end, beyond the end, empty', async () => {
      const b = get();
      const data = randomBytes(10_000);
      await b.put('rg/obj', data);
      expect((await b.get('rg/obj', { offset: 1234, length: 100 })).equals(data.subarray(1234, 1334))).toBe(true);
      expect((await b.get('rg/obj', { offset: 0, length: 1 })).equals(data.subarray(0, 1))).toBe(true);
      expect((await b.get('rg/obj', { offset: 9000, length: 1000 })).equals(data.subarray(9000))).toBe(true);
      expect((await b.get('rg/obj', { offset: 9999, length: 1 })).equals(data.subarray(9999))).toBe(true);
      expect((await b.get('rg/obj', { offset: 9500, length: 5000 })).equals(data.subarray(9500))).toBe(true);
      expect((await b.get('rg/obj', { offset: 10_000, length: 10 })).length).toBe(0);
      expect((await b.get('rg/obj', { offset: 20_000, length: 10 })).length).toBe(0);
      expect((await b.get('rg/obj', { offset: 50, length: 0 })).length).toBe(0);
      await expectKind(b.get('rg/absent', { offset: 0, length: 10 }), 'not-found');
      await expectKind(b.get('rg/absent', { offset: 0, length: 0 }), 'not-found');
    });

    test('stat of an absent key is null', async () => {
      expect(await get().stat('st/absent')).toBeNull();
    });

    test('get of an absent key is not-found, naming the backend', async () => {
      const b = get();
      const e = await expectKind(b.get('nf/absent'), 'not-found');
      expect(e.backend).toBe(b.name);
      expect(e.retryable).toBe(false);
    });

    test('delete removes; deleting an absent key is fine', async () => {
      const b = get();
      await b.put('del/x', Buffer.from('x'));
      await b.delete('del/x');
      expect(await b.stat('del/x')).toBeNull();
      await expectKind(b.get('del/x'), 'not-found');
      await b.delete('del/x');
      await b.delete('del/never/was');
    });

    test('keys with slashes, deep', async () => {
      const b = get();
      const key = 'sl/a/b/c/d/e/f/0123456789abcdef.shard-3';
      await b.put(key, Buffer.from('deep'));
      expect((await b.get(key)).toString()).toBe('deep');
      expect(await collect(b.list('sl/a/b/'))).toEqual([{ key, size: 4 }]);
    });

    test('list by prefix: exact set, sorted, with sizes', async () => {
      const b = get();
      const keys = ['ls/p/a', 'ls/p/b/c', 'ls/p/b/d', 'ls/p-x', 'ls/pq', 'ls/other/z', 'ls/p/b-'];
      for (const [i, k] of keys.entries()) await b.put(k, Buffer.alloc(i + 1));
      const inOrder = (ks: string[]) => (opts.serverBugs?.unsortedListing ? [...ks].sort() : ks);
      const keysOf = async (p: string) => inOrder((await collect(b.list(p))).map((o) => o.key));
      expect(await keysOf('ls/p/')).toEqual(['ls/p/a', 'ls/p/b-', 'ls/p/b/c', 'ls/p/b/d']);
      expect(await keysOf('ls/p')).toEqual(['ls/p-x', 'ls/p/a', 'ls/p/b-', 'ls/p/b/c', 'ls/p/b/d', 'ls/pq']);
      expect(await keysOf('ls/p/b')).toEqual(['ls/p/b-', 'ls/p/b/c', 'ls/p/b/d']);
      expect(await keysOf('ls/nothing/')).toEqual([]);
      expect(await keysOf('ls/')).toEqual([...keys].sort());
      expect(await collect(b.list('ls/p/b/'))).toEqual([
        { key: 'ls/p/b/c', size: 2 },
        { key: 'ls/p/b/d', size: 3 },
      ]);
      const all = (await collect(b.list(''))).map((o) => o.key);
      for (const k of keys) expect(all).toContain(k);
    });

    test(`list of ${opts.manyKeys} keys under one prefix: all, once, in order`, async () => {
      const b = get();
      const keys = Array.from({ length: opts.manyKeys }, (_, i) => `many/${String(i).padStart(5, '0')}`);
      if (opts.seedMany) await opts.seedMany(keys.map((k) => [k, Buffer.from(k)]));
      else await pool(keys, 16, (k) => b.put(k, Buffer.from(k)));
      const listed = await collect(b.list('many/'));
      expect(listed.length).toBe(opts.manyKeys);
      expect(listed.map((o) => o.key)).toEqual(keys);
      expect(listed.every((o) => o.size === 10)).toBe(true);
    });

    test('a 40 MiB object', async () => {
      const b = get();
      const data = randomBytes(40 * 1024 * 1024);
      opts.beforeBigPut?.();
      await b.put('big/40m', data);
      opts.afterBigPut?.();
      expect((await b.stat('big/40m'))?.size).toBe(data.length);
      expect(sha(await b.get('big/40m'))).toBe(sha(data));
      const at = 8 * 1024 * 1024 - 10; // across a part boundary
      expect((await b.get('big/40m', { offset: at, length: 20 })).equals(data.subarray(at, at + 20))).toBe(true);
      const tail = data.length - 4096;
      expect((await b.get('big/40m', { offset: tail, length: 1 << 20 })).equals(data.subarray(tail))).toBe(true);
    });

    test('an empty object', async () => {
      const b = get();
      await b.put('empty/e', Buffer.alloc(0));
      expect((await b.get('empty/e')).length).toBe(0);
      expect(await b.stat('empty/e')).toEqual({ key: 'empty/e', size: 0 });
      expect(await collect(b.list('empty/'))).toEqual([{ key: 'empty/e', size: 0 }]);
      if (!opts.serverBugs?.rangedGetOfEmptyObjectHangs) expect((await b.get('empty/e', { offset: 0, length: 10 })).length).toBe(0);
    });

    test('invalid keys and ranges are refused as permanent errors', async () => {
      const b = get();
      for (const key of ['', '/abs', '../up', 'a/../b', 'a//b', 'a/./b', 'trailing/', 'nul\0x', 'back\\slash']) {
        await expectKind(b.put(key, Buffer.from('x')), 'permanent');
        await expectKind(b.get(key), 'permanent');
      }
      await expectKind(b.put('k'.repeat(1025), Buffer.from('x')), 'permanent');
      await b.put('rgbad/x', Buffer.from('x'));
      await expectKind(b.get('rgbad/x', { offset: -1, length: 1 }), 'permanent');
      await expectKind(b.get('rgbad/x', { offset: 0.5, length: 1 }), 'permanent');
      await expect(collect(b.list('../'))).rejects.toMatchObject({ kind: 'permanent' });
    });

    test('an aborted signal rejects with its reason', async () => {
      const b = get();
      const ctl = new AbortController();
      const reason = new Error('cancelled by caller');
      ctl.abort(reason);
      await expect(b.put('ab/x', Buffer.from('x'), { signal: ctl.signal })).rejects.toBe(reason);
      await expect(b.get('ab/x', undefined, { signal: ctl.signal })).rejects.toBe(reason);
      await expect(collect(b.list('ab/', { signal: ctl.signal }))).rejects.toBe(reason);
      expect(await b.stat('ab/x')).toBeNull();
    });

    test('describe names the place and no secrets', () => {
      const b = get();
      const d = JSON.stringify(b.describe());
      expect(d).not.toMatch(/secret|S3RVER/i);
      expect(Object.keys(b.describe()).length).toBeGreaterThan(0);
    });
  });
}
