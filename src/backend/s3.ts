/**
 * `s3`: an S3-compatible object store through @aws-sdk/client-s3.
 *
 * Spec: `NAME=s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX][?k=v&...]` with parameters
 *   region (default us-east-1), tier (default warm), accessKeyId, secretAccessKey, sessionToken,
 *   multipartThreshold (default 16M), partSize (default 8M), partConcurrency (default 4),
 *   checksum=when_supported|when_required (default when_supported)
 * -> {name, type: 's3', tier, endpoint, bucket, prefix?, region, accessKeyId?, ...}.
 * Without accessKeyId/secretAccessKey in the spec the SDK's default chain applies
 * (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, ~/.aws, instance roles).
 *
 * Decisions (why):
 * - Path-style addressing always: S3-compatible stores (MinIO, Ceph, Garage, SeaweedFS) on a
 *   bare host:port have no wildcard DNS for virtual-host buckets; AWS still accepts path style.
 * - SDK retries off (maxAttempts 1): retries, timeouts and health live in resilient.ts, once for
 *   every backend type; two retry layers would multiply waits and hide failures from health.
 * - Multipart above `multipartThreshold`: one PUT of a big object must be resent whole on any
 *   failure, and S3 caps a single PUT at 5 GiB. Parts go up in parallel (bounded) straight
 *   from subarrays of the caller's buffer (no copies); a failed upload is aborted so no
 *   invisible parts keep costing storage. The object only appears on Complete, so put stays
 *   atomic.
 * - `checksum=when_required` exists because SDK releases since early 2025 send CRC32 checksum
 *   headers by default that some S3-compatible stores reject; the default keeps them, as they
 *   catch corruption in transit.
 * - A ranged GET's answer is checked against its Content-Range and sliced to what was asked:
 *   some S3-compatible servers ignore Range (200, whole object) or send more than asked.
 *   416 (range starting at/after the end) is an empty result, per the contract.
 * - Error kinds: NoSuchBucket is 'permanent' (configuration), unlike NoSuchKey ('not-found').
 *   Anything without an HTTP status (refused, reset, DNS, truncated body) is 'transient'.
 *   (A HEAD answer has no body, so stat cannot tell a missing bucket from a missing key;
 *   get and put can.)
 * - The SDK is loaded in create(), not at import: the registry imports every backend file and
 *   the CLI should not pay ~250 ms for S3 when the repository has none.
 * - An optional key prefix lets several repositories share a bucket.
 */
import type * as S3 from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import {
  Backend,
  BackendError,
  BackendErrorKind,
  ByteRange,
  CallOptions,
  checkKey,
  checkPrefix,
  checkRange,
  ObjectInfo,
  throwIfAborted,
  Tier,
} from './backend';
import { BackendFactory, BackendSpec, rejectUnknownParams, specNumber, specString } from './spec';
import { parseSize } from '../util/size';

type Sdk = typeof S3;

export interface S3Options {
  /** Origin of the service, e.g. "http://127.0.0.1:9000". */
  endpoint: string;
  bucket: string;
  /** '' or a key prefix ending in '/'. */
  prefix: string;
  region: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  multipartThreshold: number;
  partSize: number;
  partConcurrency: number;
  checksum: 'when_supported' | 'when_required';
}

const MIB = 1024 * 1024;
export const S3_DEFAULTS = {
  region: 'us-east-1',
  multipartThreshold: 16 * MIB,
  partSize: 8 * MIB,
  partConcurrency: 4,
} as const;
/** S3's limits on multipart uploads. */
const MIN_PART = 5 * MIB;
const MAX_PARTS = 10_000;

export class S3Backend implements Backend {
  readonly type = 's3';
  private readonly client: S3.S3Client;

  constructor(
    readonly name: string,
    readonly tier: Tier,
    readonly options: S3Options,
    private readonly sdk: Sdk,
  ) {
    const checksum = options.checksum === 'when_required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED';
    this.client = new sdk.S3Client({
      endpoint: options.endpoint,
      region: options.region,
      forcePathStyle: true,
      maxAttempts: 1,
      requestChecksumCalculation: checksum,
      responseChecksumValidation: checksum,
      credentials:
        options.accessKeyId !== undefined && options.secretAccessKey !== undefined
          ? { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey, sessionToken: options.sessionToken }
          : undefined,
    });
  }

  describe(): Record<string, unknown> {
    const d: Record<string, unknown> = { endpoint: this.options.endpoint, bucket: this.options.bucket, region: this.options.region };
    if (this.options.prefix) d.prefix = this.options.prefix;
    return d;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  /** Checks the bucket is reachable with these credentials, creating it if it does not exist. */
  async init(opts: CallOptions = {}): Promise<void> {
    const Bucket = this.options.bucket;
    try {
      await this.client.send(new this.sdk.HeadBucketCommand({ Bucket }), { abortSignal: opts.signal });
      return;
    } catch (e) {
      const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status !== 404) this.fail(e, `head bucket ${Bucket}`, opts.signal);
    }
    try {
      await this.client.send(new this.sdk.CreateBucketCommand({ Bucket }), { abortSignal: opts.signal });
    } catch (e) {
      this.fail(e, `create bucket ${Bucket}`, opts.signal);
    }
  }

  async put(key: string, data: Buffer, opts: CallOptions = {}): Promise<void> {
    const Key = this.keyOf(key);
    throwIfAborted(opts.signal);
    if (data.length > this.options.multipartThreshold) return this.putMultipart(key, Key, data, opts.signal);
    try {
      await this.client.send(new this.sdk.PutObjectCommand({ Bucket: this.options.bucket, Key, Body: data, ContentLength: data.length }), {
        abortSignal: opts.signal,
      });
    } catch (e) {
      this.fail(e, `put ${key}`, opts.signal);
    }
  }

  private async putMultipart(key: string, Key: string, data: Buffer, signal?: AbortSignal): Promise<void> {
    const Bucket = this.options.bucket;
    const partSize = Math.max(this.options.partSize, MIN_PART, Math.ceil(data.length / MAX_PARTS));
    const count = Math.ceil(data.length / partSize);
    let uploadId: string | undefined;
    try {
      const created = await this.client.send(new this.sdk.CreateMultipartUploadCommand({ Bucket, Key }), { abortSignal: signal });
      uploadId = created.UploadId;
      if (!uploadId) throw new BackendError('transient', `put ${key}: server returned no UploadId`, this.name);
      const etags: string[] = new Array(count);
      let next = 0;
      let failed = false;
      const worker = async () => {
        while (!failed && next < count) {
          const i = next++;
          const body = data.subarray(i * partSize, Math.min(data.length, (i + 1) * partSize));
          try {
            const r = await this.client.send(
              new this.sdk.UploadPartCommand({
                Bucket,
                Key,
                UploadId: uploadId,
                PartNumber: i + 1,
                Body: body,
                ContentLength: body.length,
              }),
              { abortSignal: signal },
            );
            if (!r.ETag) throw new BackendError('transient', `put ${key}: part ${i + 1} got no ETag`, this.name);
            etags[i] = r.ETag;
          } catch (e) {
            failed = true;
            throw e;
          }
        }
      };
      const results = await Promise.allSettled(Array.from({ length: Math.min(this.options.partConcurrency, count) }, worker));
      const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (rejected) throw rejected.reason;
      await this.client.send(
        new this.sdk.CompleteMultipartUploadCommand({
          Bucket,
          Key,
          UploadId: uploadId,
          MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
        }),
        { abortSignal: signal },
      );
    } catch (e) {
      if (uploadId !== undefined) {
        // Best effort, on its own short deadline: the caller's signal may be what failed us.
        await this.client
          .send(new this.sdk.AbortMultipartUploadCommand({ Bucket, Key, UploadId: uploadId }), { abortSignal: AbortSignal.timeout(10_000) })
          .catch(() => undefined);
      }
      this.fail(e, `put ${key} (multipart)`, signal);
    }
  }

  async get(key: string, range?: ByteRange, opts: CallOptions = {}): Promise<Buffer> {
    const Key = this.keyOf(key);
    if (range) checkRange(range, this.name);
    throwIfAborted(opts.signal);
    if (range && range.length === 0) {
      // "bytes=a-(a-1)" is not a valid Range; existence still has to be checked.
      if ((await this.stat(key, opts)) === null) throw this.notFound(key);
      return Buffer.alloc(0);
    }
    try {
      const out = await this.client.send(
        new this.sdk.GetObjectCommand({
          Bucket: this.options.bucket,
          Key,
          Range: range ? `bytes=${range.offset}-${range.offset + range.length - 1}` : undefined,
        }),
        { abortSignal: opts.signal },
      );
      const body = await readBody(out.Body as Readable | undefined, out.ContentLength, opts.signal, this.name, key);
      if (!range) return body;
      // Check the answer against the question: 200 without Content-Range is the whole object
      // (Range ignored); a server may also send more than asked. Slice to what was asked.
      const start = out.ContentRange === undefined ? 0 : parseContentRangeStart(out.ContentRange);
      if (start === undefined || start > range.offset) {
        throw new BackendError(
          'transient',
          `get ${key}: asked for bytes from ${range.offset}, got Content-Range ${String(out.ContentRange)}`,
          this.name,
        );
      }
      const from = range.offset - start;
      if (from === 0 && body.length <= range.length) return body;
      return body.subarray(Math.min(from, body.length), Math.min(body.length, from + range.length));
    } catch (e) {
      if (range && !opts.signal?.aborted && s3Status(e) === 416) return Buffer.alloc(0);
      this.fail(e, `get ${key}`, opts.signal);
    }
  }

  async stat(key: string, opts: CallOptions = {}): Promise<ObjectInfo | null> {
    const Key = this.keyOf(key);
    throwIfAborted(opts.signal);
    try {
      const out = await this.client.send(new this.sdk.HeadObjectCommand({ Bucket: this.options.bucket, Key }), {
        abortSignal: opts.signal,
      });
      return { key, size: out.ContentLength ?? 0 };
    } catch (e) {
      if (!opts.signal?.aborted) {
        const mapped = mapS3Error(e, this.name, `stat ${key}`);
        if (mapped.kind === 'not-found') return null;
      }
      this.fail(e, `stat ${key}`, opts.signal);
    }
  }

  async delete(key: string, opts: CallOptions = {}): Promise<void> {
    const Key = this.keyOf(key);
    throwIfAborted(opts.signal);
    try {
      await this.client.send(new this.sdk.DeleteObjectCommand({ Bucket: this.options.bucket, Key }), { abortSignal: opts.signal });
    } catch (e) {
      if (!opts.signal?.aborted && mapS3Error(e, this.name, '').kind === 'not-found') return;
      this.fail(e, `delete ${key}`, opts.signal);
    }
  }

  async *list(prefix: string, opts: CallOptions = {}): AsyncIterable<ObjectInfo> {
    checkPrefix(prefix, this.name);
    const base = this.options.prefix;
    let token: string | undefined;
    for (;;) {
      throwIfAborted(opts.signal);
      let page: S3.ListObjectsV2CommandOutput;
      try {
        page = await this.client.send(
          new this.sdk.ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: base + prefix, ContinuationToken: token }),
          { abortSignal: opts.signal },
        );
      } catch (e) {
        this.fail(e, `list ${prefix}`, opts.signal);
      }
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined || !o.Key.startsWith(base)) continue;
        const key = o.Key.slice(base.length);
        if (!isValidKey(key)) continue; // not written by us (e.g. "a//b"): we could not get it either
        yield { key, size: o.Size ?? 0 };
      }
      if (!page.IsTruncated) return;
      token = page.NextContinuationToken;
      if (!token) throw new BackendError('transient', `list ${prefix}: truncated listing without a continuation token`, this.name);
    }
  }

  private keyOf(key: string): string {
    checkKey(key, this.name);
    return this.options.prefix + key;
  }

  private notFound(key: string): BackendError {
    return new BackendError('not-found', `no object ${JSON.stringify(key)}`, this.name);
  }

  /** The caller's abort wins; everything else becomes a BackendError. */
  private fail(e: unknown, what: string, signal?: AbortSignal): never {
    if (signal?.aborted) throw signal.reason;
    throw mapS3Error(e, this.name, what);
  }
}

function isValidKey(key: string): boolean {
  try {
    checkKey(key, '');
    return true;
  } catch {
    return false;
  }
}

/** Reads a GetObject body, checking its length against Content-Length. */
async function readBody(
  body: Readable | undefined,
  expected: number | undefined,
  signal: AbortSignal | undefined,
  backend: string,
  key: string,
): Promise<Buffer> {
  if (body === undefined) return Buffer.alloc(0);
  // The SDK's abort may not reach a response already being streamed; make sure it does.
  const onAbort = () => body.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    if (expected !== undefined) {
      const out = Buffer.allocUnsafe(expected);
      let got = 0;
      for await (const chunk of body as AsyncIterable<Buffer>) {
        if (got + chunk.length > expected)
          throw new BackendError('transient', `get ${key}: body longer than Content-Length ${expected}`, backend);
        chunk.copy(out, got);
        got += chunk.length;
      }
      if (got !== expected) throw new BackendError('transient', `get ${key}: body ended after ${got} of ${expected} bytes`, backend);
      return out;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of body as AsyncIterable<Buffer>) chunks.push(chunk);
    return Buffer.concat(chunks);
  } catch (e) {
    body.destroy();
    throw e;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/** "bytes 100-199/1000" -> 100. */
function parseContentRangeStart(header: string): number | undefined {
  const m = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(header.trim());
  return m ? Number(m[1]) : undefined;
}

interface SdkErrorLike {
  name?: string;
  code?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $response?: { statusCode?: number; headers?: Record<string, string | undefined> };
}

function s3Status(e: unknown): number | undefined {
  const err = e as SdkErrorLike | undefined;
  return err?.$metadata?.httpStatusCode ?? err?.$response?.statusCode;
}

const THROTTLE_CODES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'TooManyRequests',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'RequestThrottled',
  'ProvisionedThroughputExceededException',
]);
const AUTH_CODES = new Set([
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'CredentialsProviderError',
  'AllAccessDisabled',
  'AccountProblem',
]);
const TRANSIENT_CODES = new Set([
  'RequestTimeout',
  'RequestTimeTooSkewed',
  'InternalError',
  'ServiceUnavailable',
  'TimeoutError',
  'RequestTimeoutException',
  'OperationAborted',
]);

/** Retry-After: delta-seconds or an HTTP date -> ms. */
export function parseRetryAfter(value: string | undefined): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const secs = Number(value);
  if (Number.isFinite(secs)) return Math.max(0, Math.round(secs * 1000));
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** Any error out of the SDK -> BackendError with the right kind. */
export function mapS3Error(e: unknown, backend: string, what: string): BackendError {
  if (e instanceof BackendError) return e;
  const err = (e ?? {}) as SdkErrorLike;
  const status = s3Status(e);
  const code = err.Code ?? err.name ?? err.code ?? '';
  const headers = err.$response?.headers ?? {};
  const retryHeader = Object.entries(headers).find(([k]) => k.toLowerCase() === 'retry-after')?.[1];
  const retryAfterMs = parseRetryAfter(retryHeader);
  let kind: BackendErrorKind;
  if (code === 'NoSuchBucket') kind = 'permanent';
  else if (code === 'NoSuchKey' || code === 'NotFound' || status === 404) kind = 'not-found';
  else if (THROTTLE_CODES.has(code) || status === 429 || (status === 503 && retryAfterMs !== undefined)) kind = 'rate-limited';
  else if (AUTH_CODES.has(code) || status === 401 || status === 403) kind = 'unauthorised';
  else if (TRANSIENT_CODES.has(code) || status === 408 || (status !== undefined && status >= 500)) kind = 'transient';
  else if (status === undefined)
    kind = 'transient'; // no HTTP answer: refused, reset, DNS, timeout, truncated
  else kind = 'permanent';
  const detail = err.message && err.message !== 'UnknownError' ? err.message : code || 'error';
  const msg = `${what}: ${status !== undefined ? `HTTP ${status} ` : ''}${code && !detail.includes(code) ? `${code}: ` : ''}${detail}`;
  return new BackendError(kind, msg, backend, { cause: e, retryAfterMs: kind === 'rate-limited' ? retryAfterMs : undefined });
}

async function loadSdk(): Promise<Sdk> {
  return import('@aws-sdk/client-s3');
}

function optionsOf(spec: BackendSpec): S3Options {
  const checksum = specString(spec, 'checksum') ?? 'when_supported';
  if (checksum !== 'when_supported' && checksum !== 'when_required')
    throw new Error(`backend '${spec.name}': checksum must be when_supported or when_required`);
  const endpoint = specString(spec, 'endpoint', true);
  if (!/^https?:\/\/[^/]+$/.test(endpoint))
    throw new Error(`backend '${spec.name}': endpoint must be http(s)://host[:port], not '${endpoint}'`);
  const prefix = specString(spec, 'prefix') ?? '';
  if (prefix !== '') {
    checkPrefix(prefix, spec.name);
    if (!prefix.endsWith('/')) throw new Error(`backend '${spec.name}': prefix must end with '/'`);
  }
  return {
    endpoint,
    bucket: specString(spec, 'bucket', true),
    prefix,
    region: specString(spec, 'region') ?? S3_DEFAULTS.region,
    accessKeyId: specString(spec, 'accessKeyId'),
    secretAccessKey: specString(spec, 'secretAccessKey'),
    sessionToken: specString(spec, 'sessionToken'),
    multipartThreshold: specNumber(spec, 'multipartThreshold', S3_DEFAULTS.multipartThreshold),
    partSize: specNumber(spec, 'partSize', S3_DEFAULTS.partSize),
    partConcurrency: specNumber(spec, 'partConcurrency', S3_DEFAULTS.partConcurrency),
    checksum,
  };
}

const PARAMS = [
  'region',
  'accessKeyId',
  'secretAccessKey',
  'sessionToken',
  'multipartThreshold',
  'partSize',
  'partConcurrency',
  'checksum',
] as const;

export const s3Factory: BackendFactory = {
  defaultTier: 'warm',
  secrets: ['secretAccessKey', 'sessionToken'],
  credentials: ['accessKeyId'],
  parse(body, params) {
    rejectUnknownParams(params, PARAMS);
    let url: URL;
    try {
      url = new URL(body);
    } catch {
      throw new Error(`s3: expected http(s)://host[:port]/bucket[/prefix], not '${body}'`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`s3: endpoint must be http or https, not '${url.protocol}'`);
    if (url.username || url.password) throw new Error('s3: give credentials as accessKeyId=...&secretAccessKey=..., not in the URL');
    const [bucket, ...rest] = url.pathname
      .split('/')
      .filter((s) => s !== '')
      .map(decodeURIComponent);
    if (!bucket) throw new Error(`s3: the URL must name a bucket: ${url.origin}/BUCKET`);
    const out: Record<string, string | number> = {
      endpoint: url.origin,
      bucket,
      region: params.get('region') ?? process.env.AWS_REGION ?? S3_DEFAULTS.region,
    };
    if (rest.length) out.prefix = rest.join('/') + '/';
    const checksum = params.get('checksum');
    if (checksum !== null && checksum !== 'when_supported' && checksum !== 'when_required')
      throw new Error(`s3: checksum must be when_supported or when_required, not '${checksum}'`);
    for (const k of ['accessKeyId', 'secretAccessKey', 'sessionToken', 'checksum'] as const) {
      const v = params.get(k);
      if (v !== null) out[k] = v;
    }
    for (const k of ['multipartThreshold', 'partSize'] as const) {
      const v = params.get(k);
      if (v !== null) out[k] = parseSize(v, k);
    }
    const pc = params.get('partConcurrency');
    if (pc !== null) {
      if (!/^[1-9]\d*$/.test(pc)) throw new Error(`s3: partConcurrency must be a positive integer, not '${pc}'`);
      out.partConcurrency = Number(pc);
    }
    if ((out.accessKeyId === undefined) !== (out.secretAccessKey === undefined))
      throw new Error('s3: give both accessKeyId and secretAccessKey, or neither (then AWS_* environment variables apply)');
    return out;
  },
  async create(spec: BackendSpec) {
    const options = optionsOf(spec);
    return new S3Backend(spec.name, spec.tier, options, await loadSdk());
  },
  async init(spec: BackendSpec) {
    const b = new S3Backend(spec.name, spec.tier, optionsOf(spec), await loadSdk());
    try {
      await b.init();
    } finally {
      await b.close();
    }
  },
};
