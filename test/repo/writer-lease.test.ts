/**
 * The writer lease wired into Session (src/repo/session.ts): two data directories of one
 * repository on the same backends (local directories, then S3): the second cannot open
 * read-write while the first holds the lease, can open read-only, and takes it with takeOver.
 * The embedded default takes no lease.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BackendSpec, createBackend } from '../../src/backend/registry';
import { LEASES_PREFIX } from '../../src/head/objects';
import { LeaseLostError } from '../../src/head/lease';
import { FORMAT_RECORD_KEY } from '../../src/repo/replicas';
import { initRepository, repoPaths } from '../../src/repo/repository';
import { Session, SessionOptions } from '../../src/repo/session';
import { S3rverProcess, S3RVER_KEY } from '../backend/s3rver';
import { tmpDir } from '../helpers/tmp';

jest.setTimeout(120_000);

const FAST: SessionOptions = { lease: { settleMs: 5 } };

/** Copies a data directory without its id and lock: a second machine's copy of the repository. */
function secondDataDir(from: string, to: string): void {
  fs.cpSync(from, to, { recursive: true });
  fs.rmSync(repoPaths(to).id);
  fs.rmSync(repoPaths(to).lock, { force: true });
}

async function leaseKeys(specs: BackendSpec[]): Promise<string[][]> {
  const out: string[][] = [];
  for (const spec of specs) {
    const b = await createBackend(spec);
    const keys: string[] = [];
    for await (const o of b.list(LEASES_PREFIX)) keys.push(o.key);
    out.push(keys);
    await b.close();
  }
  return out;
}

async function twoWriters(specs: BackendSpec[], dir: string, ec: { k: number; m: number }) {
  const first = path.join(dir, 'first');
  const second = path.join(dir, 'second');
  await initRepository(first, {
    configure: (c) => {
      c.storage.ec = { name: 'rs-gf8', ...ec };
      c.storage.backends = specs;
    },
  });
  secondDataDir(first, second);

  const a = await Session.open(first, FAST);
  try {
    expect(a.lease).toBeDefined();
    // The second data directory: read-write is refused, naming the holder.
    const err = (await Session.open(second, FAST).then(
      (s) => s.close().then(() => new Error('the second read-write open succeeded')),
      (e: unknown) => e,
    )) as Error;
    expect(err.message).toMatch(
      new RegExp(`^cannot open .*second for writing: repository in use by ${os.hostname()} since \\d{4}-\\d\\d-\\d\\dT`),
    );
    expect(err.message).toContain(a.lease!.current.since);
    expect(await leaseKeys(specs)).toEqual(specs.map(() => [`${LEASES_PREFIX}${a.lease!.holder}`]));

    // Read-only: allowed, and takes nothing.
    const ro = await Session.open(second, { ...FAST, readOnly: true });
    expect(ro.lease).toBeUndefined();
    await ro.close();

    // Take-over: the second writes, the first learns it lost the lease when it renews.
    const b = await Session.open(second, { ...FAST, takeOver: true });
    try {
      expect(await leaseKeys(specs)).toEqual(specs.map(() => [`${LEASES_PREFIX}${b.lease!.holder}`]));
      await expect(a.lease!.renew()).rejects.toThrow(LeaseLostError);
    } finally {
      await b.close();
    }
  } finally {
    await a.close();
  }
  // Both closed: nothing held, and the first opens again without a take-over.
  expect(await leaseKeys(specs)).toEqual(specs.map(() => []));
  const again = await Session.open(first, FAST);
  await again.close();
}

describe('local-directory backends outside the data directories', () => {
  let t: ReturnType<typeof tmpDir>;
  beforeEach(() => {
    t = tmpDir('isgfs-lease-');
  });
  afterEach(() => t.cleanup());

  test('the second data directory: read-write refused with the holder, read-only allowed, take-over works', async () => {
    const specs: BackendSpec[] = [0, 1, 2].map((i) => ({
      name: `disk${i}`,
      type: 'local',
      tier: 'hot',
      path: path.join(t.dir, `disk${i}`),
    }));
    await twoWriters(specs, t.dir, { k: 2, m: 1 });
  });

  test('the embedded default takes no lease (its backends are inside the data directory)', async () => {
    const data = path.join(t.dir, 'data');
    await initRepository(data);
    const s = await Session.open(data, FAST);
    expect(s.lease).toBeUndefined();
    await s.close();
    const local0 = path.join(data, 'backends/local0');
    expect(fs.existsSync(path.join(local0, FORMAT_RECORD_KEY))).toBe(true);
    expect(fs.existsSync(path.join(local0, LEASES_PREFIX))).toBe(false);
  });
});

describe('S3 backends (s3rver)', () => {
  let s3: S3rverProcess;
  let t: ReturnType<typeof tmpDir>;
  beforeAll(async () => {
    s3 = await S3rverProcess.start('isglease');
    t = tmpDir('isgfs-lease-s3-');
  });
  afterAll(async () => {
    await s3.close();
    t.cleanup();
  });

  test('the same protocol over S3; the format record there holds no credentials', async () => {
    const specs: BackendSpec[] = [0, 1, 2].map((i) => ({
      name: `s3${i}`,
      type: 's3',
      tier: 'warm',
      endpoint: s3.endpoint,
      bucket: 'isglease',
      prefix: `b${i}/`,
      region: 'us-east-1',
      accessKeyId: S3RVER_KEY,
      secretAccessKey: S3RVER_KEY,
    }));
    await twoWriters(specs, t.dir, { k: 2, m: 1 });
    const b = await createBackend(specs[0]);
    const record = JSON.parse((await b.get(FORMAT_RECORD_KEY)).toString()) as { storage: { backends: BackendSpec[] } };
    await b.close();
    expect(record.storage.backends[0]).toEqual({
      name: 's30',
      type: 's3',
      tier: 'warm',
      endpoint: s3.endpoint,
      bucket: 'isglease',
      prefix: 'b0/',
      region: 'us-east-1',
    });
  });
});
