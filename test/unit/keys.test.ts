import {
  ARGON2_LIMITS,
  DEFAULT_ARGON2,
  KeyFile,
  KeyFileError,
  newMasterKey,
  parseKeyFile,
  unwrapMasterKey,
  WrongPasswordError,
  wrapMasterKey,
} from '../../src/crypto/keys';

const CHEAP = { memoryKiB: 64, iterations: 1, parallelism: 1 };

/** Written by isgfs before RFC 9106's setting (OWASP's 19 MiB, t = 2, p = 1); password 'correct horse'. */
const OLD_KEY_FILE =
  '{"version":1,"kdf":"argon2id","params":{"memoryKiB":19456,"iterations":2,"parallelism":1},' +
  '"salt":"udiapY8TSAnDT6YmZYumvQ==","nonce":"MkIkHbv00lA4kCom","wrapped":"lYhDD9RJZvDYhahWU1z0jh8dXTdZZ9ELQNCf/tEDzBo=",' +
  '"tag":"PQl/Lg/2AIZ7bpLpX20vkA=="}';
const OLD_MASTER = Buffer.from(Array.from({ length: 32 }, (_, i) => i * 7 + 1));

test('new key files use RFC 9106 second recommended setting and unwrap with the right password only', async () => {
  expect(DEFAULT_ARGON2).toEqual({ memoryKiB: 65536, iterations: 3, parallelism: 4 });
  const master = newMasterKey();
  const kf = await wrapMasterKey(master, 'secret');
  expect(kf.kdf).toBe('argon2id');
  if (kf.kdf !== 'argon2id') return;
  expect(kf.params).toEqual({ memoryKiB: 65536, iterations: 3, parallelism: 4 });
  const reread = parseKeyFile(JSON.stringify(kf));
  expect(await unwrapMasterKey(reread, 'secret')).toEqual(master);
  await expect(unwrapMasterKey(reread, 'Secret')).rejects.toBeInstanceOf(WrongPasswordError);
});

test('a key file with the old parameters (19 MiB, t = 2, p = 1) still opens', async () => {
  const kf = parseKeyFile(OLD_KEY_FILE);
  expect(await unwrapMasterKey(kf, 'correct horse')).toEqual(OLD_MASTER);
  await expect(unwrapMasterKey(kf, 'wrong horse')).rejects.toBeInstanceOf(WrongPasswordError);
});

test('a key file without a password round-trips; a password given to it is refused', async () => {
  const master = newMasterKey();
  const kf = parseKeyFile(JSON.stringify(await wrapMasterKey(master, undefined)));
  expect(await unwrapMasterKey(kf, undefined)).toEqual(master);
  await expect(unwrapMasterKey(kf, 'x')).rejects.toThrow(/no password/);
});

describe('a hostile or damaged key file is refused quickly, naming the bad field', () => {
  let good: Extract<KeyFile, { kdf: 'argon2id' }>;
  beforeAll(async () => {
    good = (await wrapMasterKey(newMasterKey(), 'pw', CHEAP)) as typeof good;
  });
  const edit = (f: (o: Record<string, unknown>) => void): string => {
    const o = JSON.parse(JSON.stringify(good)) as Record<string, unknown>;
    f(o);
    return JSON.stringify(o);
  };
  const params = (o: Record<string, unknown>) => o.params as Record<string, unknown>;

  const cases: [string, (o: Record<string, unknown>) => void, string][] = [
    [
      '100 GiB of memory',
      (o) => {
        params(o).memoryKiB = 100 * 1024 * 1024;
      },
      'params.memoryKiB',
    ],
    [
      'a billion passes',
      (o) => {
        params(o).iterations = 1e9;
      },
      'params.iterations',
    ],
    [
      'memory × passes over the budget',
      (o) => {
        Object.assign(params(o), { memoryKiB: ARGON2_LIMITS.maxMemoryKiB, iterations: 3 });
      },
      'params',
    ],
    [
      'no lanes',
      (o) => {
        params(o).parallelism = 0;
      },
      'params.parallelism',
    ],
    [
      'a thousand lanes',
      (o) => {
        params(o).parallelism = 1000;
      },
      'params.parallelism',
    ],
    [
      'less memory than the lanes need',
      (o) => {
        Object.assign(params(o), { memoryKiB: 16, parallelism: 4 });
      },
      'params.memoryKiB',
    ],
    [
      'memory as a string',
      (o) => {
        params(o).memoryKiB = '65536';
      },
      'params.memoryKiB',
    ],
    [
      'fractional passes',
      (o) => {
        params(o).iterations = 2.5;
      },
      'params.iterations',
    ],
    [
      'params missing',
      (o) => {
        delete o.params;
      },
      'params',
    ],
    [
      'params an array',
      (o) => {
        o.params = [1, 2, 3];
      },
      'params',
    ],
    [
      'version 2',
      (o) => {
        o.version = 2;
      },
      'version',
    ],
    [
      'version as a string',
      (o) => {
        o.version = '1';
      },
      'version',
    ],
    [
      'an unknown kdf',
      (o) => {
        o.kdf = 'scrypt';
      },
      'kdf',
    ],
    [
      'a 4-byte salt',
      (o) => {
        o.salt = Buffer.alloc(4).toString('base64');
      },
      'salt',
    ],
    [
      'a megabyte salt',
      (o) => {
        o.salt = Buffer.alloc(1 << 20).toString('base64');
      },
      'salt',
    ],
    [
      'an 8-byte nonce',
      (o) => {
        o.nonce = Buffer.alloc(8).toString('base64');
      },
      'nonce',
    ],
    [
      'a 12-byte tag',
      (o) => {
        o.tag = Buffer.alloc(12).toString('base64');
      },
      'tag',
    ],
    [
      'a 48-byte wrapped key',
      (o) => {
        o.wrapped = Buffer.alloc(48).toString('base64');
      },
      'wrapped',
    ],
    [
      'a nonce that is not base64',
      (o) => {
        o.nonce = '!!!!!!!!!!!!!!!!';
      },
      'nonce',
    ],
    [
      'a tag as a number',
      (o) => {
        o.tag = 12345;
      },
      'tag',
    ],
    [
      'a salt of null',
      (o) => {
        o.salt = null;
      },
      'salt',
    ],
    [
      'a plain key of 16 bytes',
      (o) => {
        for (const k of Object.keys(o)) delete o[k];
        Object.assign(o, { version: 1, kdf: 'none', key: Buffer.alloc(16).toString('base64') });
      },
      'key',
    ],
  ];
  test.each(cases)('%s', async (_what, f, field) => {
    const text = edit(f);
    const t0 = Date.now();
    let err: unknown;
    try {
      parseKeyFile(text, '/repo/key');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KeyFileError);
    expect((err as KeyFileError).field).toBe(field);
    expect((err as Error).message).toMatch(new RegExp(`^/repo/key: ${field.replace('.', '\\.')} `));
    // The object path (a KeyFile built in code) is checked the same way before any Argon2 work.
    await expect(unwrapMasterKey(JSON.parse(text) as KeyFile, 'pw')).rejects.toBeInstanceOf(KeyFileError);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  test.each([
    ['truncated JSON', () => JSON.stringify(good).slice(0, 40), 'JSON'],
    ['an empty file', () => '', 'JSON'],
    ['a JSON array', () => '[1,2]', 'the content'],
    ['JSON null', () => 'null', 'the content'],
  ])('%s', (_what, text, field) => {
    let err: unknown;
    try {
      parseKeyFile(text());
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KeyFileError);
    expect((err as KeyFileError).field).toBe(field);
  });

  test('the untouched file passes, and the old setting is inside the limits', () => {
    expect(parseKeyFile(JSON.stringify(good))).toEqual(good);
    expect(() => parseKeyFile(OLD_KEY_FILE)).not.toThrow();
  });
});
