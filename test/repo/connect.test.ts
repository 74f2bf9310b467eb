/**
 * `isg connect` (src/repo/connect.ts, src/snapshot/connect.ts): a new data directory from the
 * backends alone. The tree restore is a stand-in here that fetches the root object through the
 * `fetch` connect provides, so the test sees the pack rows and locations it filled work.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { constants as C } from 'node:fs';
import { BackendSpec, createBackend } from '../../src/backend/registry';
import { Backend } from '../../src/backend/backend';
import { findHeads, headKey, nextHead, signHead, SignedHead, storeHead } from '../../src/head/head';
import { blockId } from '../../src/block/codec';
import { leaseKey } from '../../src/head/lease';
import { connectRepository, ConnectOptions, readSeenHead } from '../../src/repo/connect';
import { initRepository, deriveRepoKeys } from '../../src/repo/repository';
import { Session } from '../../src/repo/session';
import { unwrapMasterKey, parseKeyFile } from '../../src/crypto/keys';
import { BlockLoc, Meta } from '../../src/meta/meta';
import { INDEX_PREFIX } from '../../src/snapshot/index-objects';
import { RestoreTree } from '../../src/snapshot/connect';
import { smallRepo } from '../helpers/session';
import { unrecoverableReason } from '../../src/repo/status';
import { defaultConfig } from '../../src/repo/format';
import { prng, tmpDir } from '../helpers/tmp';

jest.setTimeout(120_000);

const me = { uid: 0, gid: 0 };
const PASSWORD = 'correct horse';

describe('isg connect', () => {
  const t = tmpDir('isgfs-connect-');
  const specs: BackendSpec[] = Array.from({ length: 6 }, (_, i) => ({
    name: `d${i}`,
    type: 'local',
    tier: 'hot',
    path: path.join(t.dir, `d${i}`),
  }));
  let backends: Backend[];
  let keys: ReturnType<typeof deriveRepoKeys>;
  let repoId: string;
  let head1: SignedHead;
  const data = prng(3).bytes(150_000);
  let rootId: Buffer;
  let writerLocs: Map<string, BlockLoc>;
  let n = 0;
  const target = () => path.join(t.dir, `new${n++}`);

  /** A stand-in for the tree restore: fetches the root through connect's reader. */
  let fetched: Buffer[] = [];
  const restore: RestoreTree = async (_meta, root, fetch) => {
    fetched.push(await fetch(root, 1));
  };
  const connect = (o: Partial<ConnectOptions> & { dataDir: string }) =>
    connectRepository({ specs, password: PASSWORD, restore, lease: { settleMs: 5 }, ...o });

  async function locsOf(dir: string): Promise<Map<string, BlockLoc>> {
    const kf = parseKeyFile(fs.readFileSync(path.join(dir, 'key'), 'utf8'));
    const k = deriveRepoKeys(await unwrapMasterKey(kf, PASSWORD));
    const meta = await Meta.open(path.join(dir, 'meta'), k.meta, true);
    try {
      const out = new Map<string, BlockLoc>();
      for (const hex of writerLocs.keys()) {
        const loc = meta.getLoc(Buffer.from(hex, 'hex'));
        if (loc) out.set(hex, loc);
      }
      return out;
    } finally {
      await meta.close();
    }
  }

  beforeAll(async () => {
    const s: Session = await smallRepo(path.join(t.dir, 'writer'), { password: PASSWORD, configure: (c) => (c.storage.backends = specs) });
    try {
      const fh = await s.fs.create('/f', 0o644, C.O_WRONLY, me);
      await s.fs.write(fh, 0, data);
      await s.fs.release(fh);
      await s.flush();
      keys = s.repo.keys;
      repoId = s.repo.config.id;
      writerLocs = new Map();
      for (const { id } of s.meta.allBlocks()) {
        const loc = s.meta.getLoc(id);
        if (loc) writerLocs.set(id.toString('hex'), loc);
      }
      // The flush published head 1: the tree's top object and the index objects.
      backends = await Promise.all(specs.map((spec) => createBackend(spec)));
      const found = await findHeads(backends, { repoId, publicKey: keys.head.publicKey });
      head1 = found.head!;
      rootId = head1.root;
    } finally {
      await s.close();
    }
  });
  afterAll(async () => {
    await Promise.all(backends.map((b) => b.close()));
    t.cleanup();
  });
  beforeEach(() => {
    fetched = [];
  });

  test('builds a data directory from the backends: index objects, pack rows, the head taken, the root fetched', async () => {
    const dir = target();
    const r = await connect({ dataDir: dir });
    expect(r).toMatchObject({ repository: repoId, index: 'objects', problems: [], ignoredHeads: [] });
    expect(r.head).toMatchObject({ seq: 1, hash: head1.hash.toString('hex'), host: head1.host });
    expect(fetched.map((f) => blockId(keys.block, f))).toEqual([rootId]);
    expect(await locsOf(dir)).toEqual(writerLocs);
    expect(await readSeenHead(dir)).toEqual({ seq: 1, hash: head1.hash.toString('hex') });
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config'), 'utf8')) as { id: string; storage: { backends: BackendSpec[] } };
    expect(config.id).toBe(repoId);
    expect(config.storage.backends).toEqual(specs);
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    // The data directory opens (read-only: the tree restore is a stand-in here).
    const s = await Session.open(dir, { password: PASSWORD, readOnly: true });
    await s.close();
  });

  test('without the index objects, the trailers give the same locations', async () => {
    const saved = new Map<string, Buffer>();
    for (const b of backends)
      for await (const o of b.list(INDEX_PREFIX)) {
        saved.set(`${b.name}\0${o.key}`, await b.get(o.key));
        await b.delete(o.key);
      }
    try {
      const dir = target();
      const r = await connect({ dataDir: dir });
      expect(r.index).toBe('trailers');
      expect(r.indexProblem).toMatch(/cannot be read/);
      expect(fetched.map((f) => blockId(keys.block, f))).toEqual([rootId]);
      expect(await locsOf(dir)).toEqual(writerLocs);
    } finally {
      for (const [k, v] of saved) await backends.find((b) => b.name === k.split('\0')[0])!.put(k.split('\0')[1], v);
    }
  });

  test('two backends lost (given as empty directories): the same result, read around them', async () => {
    const lost = specs.map((s, i) => (i < 2 ? { ...s, path: path.join(t.dir, `empty${i}`) } : s));
    for (const s of lost.slice(0, 2)) fs.mkdirSync(s.path as string);
    const dir = target();
    const r = await connect({ dataDir: dir, specs: lost });
    expect(fetched.map((f) => blockId(keys.block, f))).toEqual([rootId]);
    expect(r.problems).toEqual([]);
    expect(await locsOf(dir)).toEqual(writerLocs);
  });

  test('bad input is refused with nothing written', async () => {
    // A non-empty target.
    const full = target();
    fs.mkdirSync(full);
    fs.writeFileSync(path.join(full, 'x'), 'x');
    await expect(connect({ dataDir: full })).rejects.toThrow(/is not empty/);
    expect(fs.readdirSync(full)).toEqual(['x']);

    const refuses = async (o: Partial<ConnectOptions>, message: RegExp) => {
      const dir = target();
      await expect(connect({ dataDir: dir, ...o })).rejects.toThrow(message);
      expect(fs.existsSync(dir)).toBe(false);
    };
    await refuses({ password: 'wrong' }, /^wrong password/);
    await refuses({ password: undefined }, /password-protected: give --password-file/);

    // Fewer than k = 4 reachable: three backends whose directories do not exist.
    const gone = specs.map((s, i) => (i < 3 ? { ...s, path: path.join(t.dir, `nowhere${i}`) } : s));
    await refuses(
      { specs: gone },
      /3 of the backends given can be reached, 4 needed \(4\+2 erasure code\); failed: d0 \(.*\), d1 \(.*\), d2 \(/,
    );

    // Another repository's backend among them.
    const other = path.join(t.dir, 'other');
    await initRepository(path.join(t.dir, 'other-repo'), {
      password: PASSWORD,
      configure: (c) =>
        (c.storage.backends = Array.from({ length: 6 }, (_, i) => ({ name: `o${i}`, type: 'local', tier: 'hot', path: `${other}${i}` }))),
    });
    const mixed = specs.map((s, i) => (i === 5 ? { ...s, path: `${other}0` } : s));
    await refuses({ specs: mixed }, new RegExp(`different repositories: ${repoId} on d0, d1, d2, d3, d4; [0-9a-f-]+ on d5`));

    // A live writer lease on the backends.
    const lease = {
      version: 1,
      repository: repoId,
      holder: 'ab'.repeat(16),
      host: 'elsewhere',
      pid: 1,
      dataDir: 'cd'.repeat(16),
      since: '2026-01-01T00:00:00.000Z',
      renewed: new Date().toISOString(),
      expires: new Date(Date.now() + 300_000).toISOString(),
      displaced: [],
    };
    await Promise.all(backends.map((b) => b.put(leaseKey(lease.holder), Buffer.from(JSON.stringify(lease)))));
    await refuses({}, /in use by elsewhere since 2026-01-01T00:00:00.000Z/);
    // --take-over displaces it.
    const dir = target();
    await connect({ dataDir: dir, takeOver: true });
    for (const b of backends) expect(await b.stat(leaseKey(lease.holder))).toBeNull();
  });

  test('forged and misnamed heads are ignored; a newer signed head off the chain is refused unless accepted', async () => {
    const put = (key: string, bytes: Buffer) => Promise.all(backends.map((b) => b.put(key, bytes)));
    const del = (key: string) => Promise.all(backends.map((b) => b.delete(key)));
    // A forged head 2: bytes of head 1 with a flipped byte, under a head-2 key.
    const forged = Buffer.from(head1.bytes);
    forged[30] ^= 1;
    const forgedKey = headKey(2, Buffer.alloc(32, 9));
    // Head 1 copied under a head-3 key (an older head passed off as newer).
    const misnamedKey = headKey(3, head1.hash);
    await put(forgedKey, forged);
    await put(misnamedKey, head1.bytes);
    try {
      const r = await connect({ dataDir: target() });
      expect(r.head!.seq).toBe(1);
      expect(r.ignoredHeads.map((h) => h.key).sort()).toEqual(
        [...new Set([...specs.map(() => forgedKey), ...specs.map(() => misnamedKey)])].sort().flatMap((k) => specs.map(() => k)),
      );
      expect(r.ignoredHeads.find((h) => h.key === forgedKey)!.reason).toMatch(/signature does not verify/);
      expect(r.ignoredHeads.find((h) => h.key === misnamedKey)!.reason).toMatch(/key does not name this head/);
    } finally {
      await del(forgedKey);
      await del(misnamedKey);
    }

    // A validly signed head 3 that does not follow head 2 (head 2 exists): a rollback or two writers.
    const head2 = signHead(
      nextHead(head1, { repoId, root: rootId, index: head1.index, time: Date.now(), host: 'writer' }),
      keys.head.privateKey,
    );
    const stray = signHead(
      { repoId, seq: 3, prev: Buffer.alloc(32, 1), root: rootId, index: head1.index, time: Date.now(), host: 'other' },
      keys.head.privateKey,
    );
    await storeHead(backends, head2);
    await put(headKey(3, stray.hash), stray.bytes);
    try {
      const dir = target();
      await expect(connect({ dataDir: dir })).rejects.toThrow(/holds a signed head 3, newer than the head 2 taken.*--accept-rollback/);
      expect(fs.existsSync(dir)).toBe(false);
      const r = await connect({ dataDir: dir, acceptRollback: true });
      expect(r.head!.seq).toBe(2);
      expect(r.rollback).toMatch(/signed head 3/);
      expect(await readSeenHead(dir)).toEqual({ seq: 2, hash: head2.hash.toString('hex') });
    } finally {
      await del(headKey(3, stray.hash));
      await del(headKey(2, head2.hash));
    }
  });
});

test('status says when a repository cannot be recovered from its backends', () => {
  const c = defaultConfig('00112233-4455-6677-8899-aabbccddeeff');
  expect(unrecoverableReason(c, '/data/isg', true)).toMatch(/^all its backends lie inside the data directory: .*isg init --backend/);
  c.storage.backends = c.storage.backends.map((b, i) => (i < 3 ? { ...b, path: `/mnt/d${i}` } : b));
  expect(unrecoverableReason(c, '/data/isg', true)).toMatch(/^only 3 of its backends lie outside the data directory, 4 needed/);
  c.storage.backends = c.storage.backends.map((b, i) => ({ ...b, path: `/mnt/d${i}` }));
  expect(unrecoverableReason(c, '/data/isg', true)).toBeNull();
  expect(unrecoverableReason(c, '/data/isg', false)).toMatch(/^no password/);
});
