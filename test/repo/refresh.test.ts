/**
 * The refresh at open (src/repo/refresh.ts) without a mount: a publish cut short after its head
 * was stored is adopted, not taken for another writer's (and the next head follows it, no fork);
 * a metadata swap cut between its renames is finished at the next open; a rebuild keeps the
 * local tier's blocks that the new metadata names as the cache.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { constants as C } from 'node:fs';
import { BackendSpec, createBackend } from '../../src/backend/registry';
import { findHeads } from '../../src/head/head';
import { Meta, ROOT_INO } from '../../src/meta/meta';
import { PublishedHead } from '../../src/snapshot/publish';
import { connectRepository, readSeenHead } from '../../src/repo/connect';
import { repoPaths } from '../../src/repo/repository';
import { Session, SessionOptions } from '../../src/repo/session';
import { smallRepo } from '../helpers/session';
import { prng, tmpDir } from '../helpers/tmp';

jest.setTimeout(120_000);

const PASSWORD = 'refresh';
const me = { uid: 0, gid: 0 };
const FAST: SessionOptions = { password: PASSWORD, lease: { settleMs: 5 } };

async function writeFile(s: Session, name: string, data: Buffer): Promise<void> {
  const fh = await s.fs.create(`/${name}`, 0o644, C.O_WRONLY, me);
  await s.fs.write(fh, 0, data);
  await s.fs.release(fh);
}

async function readFile(s: Session, name: string, length: number): Promise<Buffer> {
  const fh = await s.fs.open(`/${name}`, C.O_RDONLY);
  try {
    return await s.fs.read(fh, 0, length);
  } finally {
    await s.fs.release(fh);
  }
}

describe('refresh at open', () => {
  let t: ReturnType<typeof tmpDir>;
  let specs: BackendSpec[];
  let first: string;
  beforeEach(async () => {
    t = tmpDir('isgfs-refresh-');
    specs = [0, 1, 2].map((i) => ({ name: `disk${i}`, type: 'local', tier: 'hot', path: path.join(t.dir, `disk${i}`) }));
    first = path.join(t.dir, 'first');
    const s = await smallRepo(first, {
      ...FAST,
      configure: (c) => {
        c.storage.ec = { name: 'rs-gf8', k: 2, m: 1 };
        c.storage.backends = specs;
      },
    });
    await writeFile(s, 'a', prng(1).bytes(50_000));
    await s.flush();
    await s.close();
  });
  afterEach(() => t.cleanup());

  const newestOnBackends = async (s: Session) => {
    const backends = await Promise.all(specs.map((spec) => createBackend(spec)));
    try {
      return await findHeads(backends, { repoId: s.repo.config.id, publicKey: s.repo.keys.head.publicKey });
    } finally {
      await Promise.all(backends.map((b) => b.close()));
    }
  };

  test('a head stored but not recorded (a publish cut short) is adopted; the next head follows it', async () => {
    const s = await Session.open(first, FAST);
    const before = s.publisher!.publishedHead()!;
    await writeFile(s, 'b', prng(2).bytes(20_000));
    await s.flush();
    const stored = s.publisher!.publishedHead()!;
    expect(stored.seq).toBe(before.seq + 1);
    await s.close();
    // The crash: the head is on the backends, the metadata still names the one before.
    const meta = await Meta.open(repoPaths(first).meta, s.repo.keys.meta);
    meta.txn(() => meta.setPublishValue('head', before satisfies PublishedHead));
    await meta.close();

    const again = await Session.open(first, FAST);
    try {
      expect(again.refreshed?.action).toBe('adopted');
      expect(again.publisher!.publishedHead()).toMatchObject({ seq: stored.seq, hash: stored.hash });
      await writeFile(again, 'c', prng(3).bytes(1000));
      await again.flush();
      const found = await newestOnBackends(again);
      expect(found.head!.seq).toBe(stored.seq + 1);
      expect(found.refused).toEqual([]);
    } finally {
      await again.close();
    }
  });

  test('a metadata swap cut between its renames is finished; a leftover build is removed', async () => {
    const p = repoPaths(first);
    fs.renameSync(p.meta, `${p.meta}-next`); // crashed after meta -> meta-prev
    const s = await Session.open(first, { ...FAST, readOnly: true });
    try {
      expect([...s.meta.entries(ROOT_INO)].map((e) => e.name)).toEqual(['a']);
    } finally {
      await s.close();
    }
    fs.mkdirSync(`${p.meta}-next`); // an unfinished build beside the metadata
    const w = await Session.open(first, FAST);
    await w.close();
    expect(fs.existsSync(`${p.meta}-next`)).toBe(false);
  });

  test('a rebuild keeps the local blocks the new metadata names as the cache, and removes the others', async () => {
    const second = path.join(t.dir, 'second');
    await connectRepository({ dataDir: second, specs, password: PASSWORD, lease: { settleMs: 5 } });
    const mine = prng(4).bytes(60_000);
    const gone = prng(5).bytes(30_000);
    // The second writes two files (blocks in its local tier), deletes one, publishes.
    const b = await Session.open(second, FAST);
    await writeFile(b, 'mine', mine);
    await writeFile(b, 'gone', gone);
    await b.flush();
    b.fs.unlink('/gone');
    await b.flush();
    await b.close();
    // The first writes on.
    const a = await Session.open(first, FAST);
    await writeFile(a, 'theirs', Buffer.from('theirs'));
    await a.flush();
    const head = a.publisher!.publishedHead()!;
    await a.close();

    const ro = await Session.open(second, { ...FAST, readOnly: true });
    try {
      expect(ro.refreshed).toMatchObject({ action: 'rebuilt', head: { seq: head.seq, hash: head.hash } });
      expect(ro.refreshed!.keptBlocks).toBeGreaterThan(0);
      expect((await readFile(ro, 'mine', mine.length)).equals(mine)).toBe(true);
      expect((await readFile(ro, 'theirs', 100)).toString()).toBe('theirs');
      for (const { row } of ro.meta.allBlocks()) expect(row.refs).toBeGreaterThan(0);
    } finally {
      await ro.close();
    }
    expect(await readSeenHead(second)).toEqual({ seq: head.seq, hash: head.hash });
  });
});
