/**
 * The s3 backend against a real s3rver (child process, 127.0.0.1, random port): the shared
 * conformance suite, then what only S3 has: multipart, key prefixes, credentials and the
 * mapping of S3 error codes.
 *
 * To see which requests the backend makes (multipart or not) and to fail one part of an
 * upload, the tests spy on S3Client.prototype.send: the server stays real, only the fault is
 * injected at the SDK boundary.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { BackendError } from '../../src/backend/backend';
import { createBackend, initBackend, parseBackendSpec } from '../../src/backend/registry';
import { resilient } from '../../src/backend/resilient';
import { mapS3Error, parseRetryAfter, S3Backend } from '../../src/backend/s3';
import { collect, conformance, expectKind } from './conformance';
import { S3RVER_KEY, S3rverProcess } from './s3rver';

const BUCKET = 'isg-conformance';
let server: S3rverProcess;
let b: S3Backend;
const creds = `accessKeyId=${S3RVER_KEY}&secretAccessKey=${S3RVER_KEY}`;

beforeAll(async () => {
  server = await S3rverProcess.start(BUCKET);
  b = (await createBackend(parseBackendSpec(`s3a=s3:${server.endpoint}/${BUCKET}?region=us-east-1&${creds}`))) as S3Backend;
});
afterAll(async () => {
  await b?.close();
  await server?.close();
});

let sent: string[] = [];
function recordCommands(): void {
  sent = [];
  const real = S3Client.prototype.send;
  jest.spyOn(S3Client.prototype, 'send').mockImplementation(function (this: S3Client, ...args: unknown[]) {
    sent.push((args[0] as object).constructor.name);
    return (real as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof real);
}

conformance('s3', () => b, {
  manyKeys: 1100,
  // s3rver 3.7.1 bugs, worked around here only (the backend is right for real S3):
  // - listObjects walks its directory tree, so "p/b/c" is listed before "p/b-" (S3: after);
  // - getObject computes a range on an empty object as 0-0 and sends Content-Length 1 with no
  //   body, so the request hangs until the socket closes.
  // (Its other bug, `bytes=0-0` answered with the whole object, is handled by the backend
  // itself, which checks Content-Range against what it asked for.)
  serverBugs: { unsortedListing: true, rangedGetOfEmptyObjectHangs: true },
  // 1100 PUTs through the SDK take 6-10 s here; the listing fixture goes straight to disk.
  seedMany: async (objects) => server.seedObjects(objects),
  beforeBigPut: recordCommands,
  afterBigPut: () => {
    jest.restoreAllMocks();
    // 40 MiB in 8 MiB parts
    expect(sent).toEqual(['CreateMultipartUploadCommand', ...Array(5).fill('UploadPartCommand'), 'CompleteMultipartUploadCommand']);
  },
});

describe('s3: specifics', () => {
  afterEach(() => jest.restoreAllMocks());

  test('the spec parses into a plain JSON object and the backend describes itself without secrets', () => {
    const spec = parseBackendSpec(`s3a=s3:${server.endpoint}/${BUCKET}?region=us-east-1&${creds}`);
    expect(spec).toEqual({
      name: 's3a',
      type: 's3',
      tier: 'warm',
      endpoint: server.endpoint,
      bucket: BUCKET,
      region: 'us-east-1',
      accessKeyId: S3RVER_KEY,
      secretAccessKey: S3RVER_KEY,
    });
    expect(b.describe()).toEqual({ endpoint: server.endpoint, bucket: BUCKET, region: 'us-east-1' });
  });

  test('small objects go up in one PUT', async () => {
    recordCommands();
    await b.put('single/x', randomBytes(1 << 20));
    expect(sent).toEqual(['PutObjectCommand']);
  });

  test('a key prefix keeps a repository to its part of the bucket', async () => {
    const p = await createBackend(parseBackendSpec(`pre=s3:${server.endpoint}/${BUCKET}/repos/one?${creds}`));
    try {
      expect(p.describe()).toMatchObject({ prefix: 'repos/one/' });
      await p.put('k/1', Buffer.from('in prefix'));
      expect((await b.get('repos/one/k/1')).toString()).toBe('in prefix');
      expect(await collect(p.list('k/'))).toEqual([{ key: 'k/1', size: 9 }]);
      expect((await collect(p.list(''))).map((o) => o.key)).toEqual(['k/1']);
      await p.delete('k/1');
      expect(await b.stat('repos/one/k/1')).toBeNull();
    } finally {
      await p.close();
    }
  });

  test('a failing part aborts the multipart upload and leaves no object', async () => {
    const m = await createBackend(
      parseBackendSpec(`mp=s3:${server.endpoint}/${BUCKET}?${creds}&multipartThreshold=5M&partSize=5M&partConcurrency=2`),
    );
    try {
      const real = S3Client.prototype.send;
      sent = [];
      jest.spyOn(S3Client.prototype, 'send').mockImplementation(function (this: S3Client, ...args: unknown[]) {
        const cmd = args[0] as { constructor: { name: string }; input: { PartNumber?: number } };
        sent.push(cmd.constructor.name);
        if (cmd.constructor.name === 'UploadPartCommand' && cmd.input.PartNumber === 3) {
          return Promise.reject(
            Object.assign(new Error('We encountered an internal error'), { name: 'InternalError', $metadata: { httpStatusCode: 500 } }),
          );
        }
        return (real as (...a: unknown[]) => unknown).apply(this, args);
      } as typeof real);
      const e = await expectKind(m.put('mp/fails', randomBytes(21 * 1024 * 1024)), 'transient');
      expect(e.message).toMatch(/multipart.*500/);
      expect(sent).toContain('AbortMultipartUploadCommand');
      expect(sent).not.toContain('CompleteMultipartUploadCommand');
      jest.restoreAllMocks();
      expect(await m.stat('mp/fails')).toBeNull();
      // and a retry of the same put goes through
      const data = randomBytes(12 * 1024 * 1024);
      await m.put('mp/fails', data);
      expect((await m.get('mp/fails')).equals(data)).toBe(true);
    } finally {
      await m.close();
    }
  });

  test('wrong credentials are unauthorised', async () => {
    const bad = await createBackend(parseBackendSpec(`bad=s3:${server.endpoint}/${BUCKET}?accessKeyId=NOPE&secretAccessKey=wrong`));
    try {
      await expectKind(bad.put('auth/x', Buffer.from('x')), 'unauthorised');
      await expectKind(bad.get('rt/one'), 'unauthorised');
    } finally {
      await bad.close();
    }
  });

  test('credentials from AWS_* environment variables when the spec has none', async () => {
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = S3RVER_KEY;
    process.env.AWS_SECRET_ACCESS_KEY = S3RVER_KEY;
    const spec = parseBackendSpec(`env=s3:${server.endpoint}/${BUCKET}`);
    expect(spec.accessKeyId).toBeUndefined();
    const e = await createBackend(spec);
    try {
      await e.put('envcreds/x', Buffer.from('via env'));
      expect((await e.get('envcreds/x')).toString()).toBe('via env');
    } finally {
      await e.close();
      for (const [k, v] of [
        ['AWS_ACCESS_KEY_ID', saved.id],
        ['AWS_SECRET_ACCESS_KEY', saved.secret],
      ] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  test('a missing bucket is permanent, not not-found; init creates it', async () => {
    const spec = parseBackendSpec(`nb=s3:${server.endpoint}/not-there-yet?${creds}`);
    const nb = await createBackend(spec);
    try {
      await expectKind(nb.get('x'), 'permanent');
      await expectKind(nb.put('x', Buffer.from('x')), 'permanent');
      await initBackend(spec);
      await initBackend(spec); // idempotent
      await nb.put('x', Buffer.from('now'));
      expect((await nb.get('x')).toString()).toBe('now');
    } finally {
      await nb.close();
    }
  });

  test('S3 error mapping', () => {
    const err = (name: string, status?: number, headers: Record<string, string> = {}) =>
      Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status }, $response: { statusCode: status, headers } });
    const kind = (e: unknown) => mapS3Error(e, 'x', 'op').kind;
    expect(kind(err('NoSuchKey', 404))).toBe('not-found');
    expect(kind(err('NotFound', 404))).toBe('not-found');
    expect(kind(err('NoSuchBucket', 404))).toBe('permanent');
    expect(kind(err('AccessDenied', 403))).toBe('unauthorised');
    expect(kind(err('SignatureDoesNotMatch', 403))).toBe('unauthorised');
    expect(kind(err('SlowDown', 503))).toBe('rate-limited');
    expect(kind(err('TooManyRequests', 429))).toBe('rate-limited');
    expect(kind(err('ServiceUnavailable', 503))).toBe('transient');
    expect(kind(err('InternalError', 500))).toBe('transient');
    expect(kind(err('RequestTimeout', 400))).toBe('transient');
    expect(kind(err('InvalidArgument', 400))).toBe('permanent');
    expect(kind(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe('transient');
    expect(kind(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }))).toBe('transient');
    const slow = mapS3Error(err('SlowDown', 503, { 'retry-after': '3' }), 'x', 'op');
    expect(slow).toBeInstanceOf(BackendError);
    expect(slow.retryAfterMs).toBe(3000);
    expect(parseRetryAfter(new Date(Date.now() + 5000).toUTCString())).toBeGreaterThan(3000);
    expect(parseRetryAfter('soon')).toBeUndefined();
  });
});

// Last in this file: it stops the shared server. Uses the 1100 "many/" keys of the conformance run.
describe('s3: resilient listing across an outage', () => {
  test('a listing interrupted between pages resumes after the last key: every key once, in order', async () => {
    const r = resilient(b, { attempts: 60, baseDelayMs: 50, maxDelayMs: 250, unhealthyAfter: 100 });
    const keys: string[] = [];
    let restarted: Promise<void> | undefined;
    try {
      for await (const o of r.list('many/')) {
        keys.push(o.key);
        if (keys.length === 500) {
          // The first page (1000 keys) is already here; the next page request meets a dead server.
          await server.stop();
          restarted = new Promise((res) => setTimeout(res, 300)).then(() => server.run());
        }
      }
    } finally {
      await restarted;
    }
    expect(r.health().lastError).toMatch(/ECONN|socket|closed/i); // the outage really was met
    expect(keys.length).toBe(1100);
    expect(new Set(keys).size).toBe(1100);
    expect(keys).toEqual([...keys].sort());
  });
});
