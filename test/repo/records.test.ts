/**
 * The format record and key envelope on every backend (src/repo/replicas.ts): written at init
 * and at a read-write open that finds them missing, without credentials or a plain master key,
 * validated when read back.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LocalBackend } from '../../src/backend/local';
import { BackendSpec } from '../../src/backend/registry';
import { DEFAULT_ARGON2, KeyFileError, unwrapMasterKey } from '../../src/crypto/keys';
import { RepoConfig } from '../../src/repo/format';
import {
  encodeFormatRecord,
  FORMAT_RECORD_KEY,
  formatRecordOf,
  KEY_ENVELOPE_KEY,
  parseFormatRecord,
  readFormatRecord,
  readKeyEnvelope,
  RecordError,
} from '../../src/repo/replicas';
import { initRepository, openRepository, repoPaths } from '../../src/repo/repository';
import { Session } from '../../src/repo/session';
import { tmpDir } from '../helpers/tmp';

let t: ReturnType<typeof tmpDir>;
beforeEach(() => {
  t = tmpDir('isgfs-records-');
});
afterEach(() => t.cleanup());

const disk = (i: number) => path.join(t.dir, `disk${i}`);
const disks = (n = 3): BackendSpec[] =>
  Array.from({ length: n }, (_, i) => ({ name: `disk${i}`, type: 'local', tier: 'hot', path: disk(i) }));
const backendsOf = (n = 3) => Array.from({ length: n }, (_, i) => new LocalBackend(`disk${i}`, disk(i)));
const cheapArgon = () => {
  Object.assign(DEFAULT_ARGON2, { memoryKiB: 64, iterations: 1, parallelism: 1 });
};
const REAL_ARGON = { ...DEFAULT_ARGON2 };
afterAll(() => Object.assign(DEFAULT_ARGON2, REAL_ARGON));

async function init(dir: string, password?: string): Promise<RepoConfig> {
  return initRepository(dir, {
    password,
    configure: (c) => {
      c.storage.ec = { name: 'rs-gf8', k: 2, m: 1 };
      c.storage.backends = disks();
    },
  });
}

test('init with a password puts the format record and the key envelope, whole, on every backend', async () => {
  cheapArgon();
  const data = path.join(t.dir, 'data');
  const config = await init(data, 'pw');
  const keyFileBytes = fs.readFileSync(repoPaths(data).key);
  const { keys } = await openRepository(data, 'pw');
  for (const b of backendsOf()) {
    // The record is the config file's JSON (no credentials here to leave out).
    expect(await b.get(FORMAT_RECORD_KEY)).toEqual(fs.readFileSync(repoPaths(data).config));
    expect(await readFormatRecord(b)).toEqual(config);
    expect(await b.get(KEY_ENVELOPE_KEY)).toEqual(keyFileBytes);
    const envelope = await readKeyEnvelope(b);
    expect(await unwrapMasterKey(envelope!, 'pw')).toEqual(keys.master);
  }
});

test('without a password no key envelope goes to the backends (the key file holds the key in plain)', async () => {
  const data = path.join(t.dir, 'data');
  await init(data);
  for (const b of backendsOf()) {
    expect(await readFormatRecord(b)).not.toBeNull();
    expect(await b.stat(KEY_ENVELOPE_KEY)).toBeNull();
    expect(await readKeyEnvelope(b)).toBeNull();
  }
});

test('the format record leaves out every credential of a backend spec', () => {
  const config = {
    id: '00000000-0000-4000-8000-000000000000',
    storage: {
      backends: [
        {
          name: 's3a',
          type: 's3',
          tier: 'warm',
          endpoint: 'http://127.0.0.1:9000',
          bucket: 'b',
          region: 'us-east-1',
          accessKeyId: 'AKIAEXAMPLE',
          secretAccessKey: 'SECRET',
          sessionToken: 'TOKEN',
        },
        { name: 'd', type: 'local', tier: 'hot', path: '/mnt/a' },
      ],
    },
  } as unknown as RepoConfig;
  const record = formatRecordOf(config);
  expect(record.storage.backends).toEqual([
    { name: 's3a', type: 's3', tier: 'warm', endpoint: 'http://127.0.0.1:9000', bucket: 'b', region: 'us-east-1' },
    { name: 'd', type: 'local', tier: 'hot', path: '/mnt/a' },
  ]);
  expect(config.storage.backends[0].secretAccessKey).toBe('SECRET'); // the config itself is untouched
  expect(encodeFormatRecord(config).toString()).not.toMatch(/AKIAEXAMPLE|SECRET|TOKEN/);
});

test('reading back validates: a damaged, foreign-format or credential-holding record and a bad envelope are refused', async () => {
  cheapArgon();
  const data = path.join(t.dir, 'data');
  const config = await init(data, 'pw');
  const [b] = backendsOf();
  const record = JSON.parse((await b.get(FORMAT_RECORD_KEY)).toString()) as RepoConfig;
  const bad = (c: unknown) => Buffer.from(JSON.stringify(c));
  expect(() => parseFormatRecord(Buffer.from('{"format":'), 'x')).toThrow(/not JSON/);
  expect(() => parseFormatRecord(bad({ ...record, cipher: 'rot13' }), 'x')).toThrow(/unknown cipher 'rot13'/);
  expect(() => parseFormatRecord(bad({ ...record, id: 'x' }), 'x')).toThrow(/not a UUID/);
  const withSecret = { ...record, storage: { ...record.storage, backends: [...record.storage.backends] } };
  withSecret.storage.backends[0] = { ...record.storage.backends[0], type: 's3', endpoint: 'http://h:1', bucket: 'b', secretAccessKey: 's' };
  expect(() => parseFormatRecord(bad(withSecret), 'x')).toThrow(/holds credential 'secretAccessKey'/);
  expect(parseFormatRecord(bad(record), 'x')).toEqual(config);

  // The key envelope passes parseKeyFile's bounds, and must be wrapped.
  const envelope = JSON.parse((await b.get(KEY_ENVELOPE_KEY)).toString()) as Record<string, unknown>;
  await b.put(KEY_ENVELOPE_KEY, bad({ ...envelope, params: { memoryKiB: 64 * 1024 * 1024, iterations: 3, parallelism: 4 } }));
  await expect(readKeyEnvelope(b)).rejects.toThrow(KeyFileError);
  await expect(readKeyEnvelope(b)).rejects.toThrow(/disk0: isgfs\/key: params.memoryKiB is 67108864, outside/);
  await b.put(KEY_ENVELOPE_KEY, bad({ version: 1, kdf: 'none', key: Buffer.alloc(32).toString('base64') }));
  await expect(readKeyEnvelope(b)).rejects.toThrow(/must be password-wrapped/);
  await b.put(KEY_ENVELOPE_KEY, Buffer.alloc(64 * 1024 + 1, 32));
  await expect(readKeyEnvelope(b)).rejects.toThrow(/more than it can be/);
});

test('a read-write open puts back what a backend lacks or holds damaged; a read-only open writes nothing', async () => {
  cheapArgon();
  const data = path.join(t.dir, 'data');
  await init(data, 'pw');
  const [b0, b1, b2] = backendsOf();
  const record = await b0.get(FORMAT_RECORD_KEY);
  const envelope = await b0.get(KEY_ENVELOPE_KEY);
  await b1.delete(FORMAT_RECORD_KEY);
  await b1.delete(KEY_ENVELOPE_KEY);
  await b2.put(KEY_ENVELOPE_KEY, Buffer.from('{"damaged'));
  const ro = await Session.open(data, { password: 'pw', readOnly: true });
  await ro.close();
  expect(await b1.stat(FORMAT_RECORD_KEY)).toBeNull();
  const rw = await Session.open(data, { password: 'pw', lease: { settleMs: 5 } });
  await rw.close();
  for (const b of [b0, b1, b2]) {
    expect(await b.get(FORMAT_RECORD_KEY)).toEqual(record);
    expect(await b.get(KEY_ENVELOPE_KEY)).toEqual(envelope);
  }
});

test('backends of another repository: init refuses and writes nothing; a read-write open refuses', async () => {
  const first = path.join(t.dir, 'first');
  const firstConfig = await init(first);
  const second = path.join(t.dir, 'second');
  await expect(init(second)).rejects.toThrow(RecordError);
  await expect(init(second)).rejects.toThrow(`backend 'disk0' already holds repository ${firstConfig.id}`);
  expect(fs.readdirSync(second)).toEqual([]);
  expect((await readFormatRecord(backendsOf()[0]))?.id).toBe(firstConfig.id);

  // A repository whose config names backends that another repository took over.
  const third = path.join(t.dir, 'third');
  await initRepository(third, {
    configure: (c) => {
      c.storage.ec = { name: 'rs-gf8', k: 2, m: 1 };
      c.storage.backends = ['x0', 'x1', 'x2'].map((n) => ({ name: n, type: 'local', tier: 'hot', path: path.join(t.dir, n) }));
    },
  });
  const config = JSON.parse(fs.readFileSync(repoPaths(third).config, 'utf8')) as RepoConfig;
  config.storage.backends = disks();
  fs.writeFileSync(repoPaths(third).config, JSON.stringify(config));
  await expect(Session.open(third, { lease: { settleMs: 5 } })).rejects.toThrow(
    `holds repository ${firstConfig.id}, not this one (${config.id})`,
  );
  // The refused open took no lease and left the backends as they were.
  expect(fs.existsSync(path.join(disk(0), 'isgfs/leases'))).toBe(false);
});
