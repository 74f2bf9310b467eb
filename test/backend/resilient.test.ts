/**
 * resilient() around the real s3 backend, against peers that misbehave on purpose: a small
 * node:http server speaking just enough S3 (PUT/GET/HEAD of objects, S3 XML errors) that can
 * answer SlowDown, fail with 500, hang or go slow; and a real s3rver process that is killed
 * and restarted on the same port.
 *
 * Decisions (why): going through the s3 backend rather than a stub Backend checks the whole
 * chain the pack layer will use: SDK error -> kind + Retry-After -> backoff -> health.
 * Delays are scaled down (ms instead of s), except the server's Retry-After: 1, which is the
 * smallest whole second a server can send.
 */
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import { Backend } from '../../src/backend/backend';
import { createBackend, parseBackendSpec } from '../../src/backend/registry';
import { resilient } from '../../src/backend/resilient';
import { expectKind } from './conformance';
import { S3RVER_KEY, S3rverProcess } from './s3rver';

type Mode = 'ok' | 'error500' | 'hang' | 'slow';

class FakeS3 {
  readonly objects = new Map<string, Buffer>();
  readonly requests: string[] = [];
  mode: Mode = 'ok';
  slowDownLeft = 0;
  inFlight = 0;
  maxInFlight = 0;
  private server!: http.Server;
  port = 0;

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => this.handle(req, res, Buffer.concat(chunks)));
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  count(method: string): number {
    return this.requests.filter((r) => r.startsWith(method + ' ')).length;
  }

  private error(res: http.ServerResponse, status: number, code: string, headers: Record<string, string> = {}): void {
    const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${code}</Message><RequestId>fake</RequestId></Error>`;
    res.writeHead(status, { 'Content-Type': 'application/xml', ...headers });
    res.end(res.req.method === 'HEAD' ? undefined : body);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): void {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    this.requests.push(`${req.method} ${path}`);
    if (this.slowDownLeft > 0) {
      this.slowDownLeft--;
      return this.error(res, 503, 'SlowDown', { 'Retry-After': '1' });
    }
    if (this.mode === 'hang') return; // never answer
    if (this.mode === 'error500') return this.error(res, 500, 'InternalError');
    const answer = () => {
      this.inFlight--;
      if (req.method === 'PUT') {
        this.objects.set(path, body);
        res.writeHead(200, { ETag: '"fake"' });
        return res.end();
      }
      const obj = this.objects.get(path);
      if (!obj) return this.error(res, 404, 'NoSuchKey');
      res.writeHead(200, { 'Content-Length': obj.length, 'Content-Type': 'application/octet-stream' });
      res.end(req.method === 'HEAD' ? undefined : obj);
    };
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    if (this.mode === 'slow') setTimeout(answer, 50);
    else answer();
  }
}

const creds = `accessKeyId=${S3RVER_KEY}&secretAccessKey=${S3RVER_KEY}`;
let fake: FakeS3;
let s3: Backend;

beforeEach(async () => {
  fake = new FakeS3();
  await fake.start();
  s3 = await createBackend(parseBackendSpec(`fake=s3:http://127.0.0.1:${fake.port}/bkt?${creds}`));
});
afterEach(async () => {
  await s3.close();
  await fake.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('resilient: retries', () => {
  test('503 SlowDown with Retry-After: 1 twice, then success; waits at least the Retry-After', async () => {
    const r = resilient(s3, { baseDelayMs: 10 });
    fake.slowDownLeft = 2;
    let t0 = Date.now();
    await r.put('obj', Buffer.from('payload'));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000);
    expect(fake.count('PUT')).toBe(3);
    fake.slowDownLeft = 1;
    t0 = Date.now();
    expect((await r.get('obj')).toString()).toBe('payload');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
    expect(fake.count('GET')).toBe(2);
    expect(r.health()).toEqual({ healthy: true, consecutiveFailures: 0, lastError: expect.stringMatching(/SlowDown/) });
  });

  test('the s3 backend alone reports SlowDown as rate-limited with the Retry-After', async () => {
    fake.slowDownLeft = 1;
    const e = await expectKind(s3.get('obj'), 'rate-limited');
    expect(e.retryAfterMs).toBe(1000);
    expect(fake.count('GET')).toBe(1); // the SDK's own retries are off
  });

  test('a server that never answers: each attempt times out, is retried, and the call fails transient', async () => {
    const r = resilient(s3, { timeoutMs: 200, attempts: 3, baseDelayMs: 10 });
    fake.mode = 'hang';
    const t0 = Date.now();
    const e = await expectKind(r.get('obj'), 'transient');
    expect(e.message).toMatch(/timed out after 200 ms/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(600);
    expect(fake.count('GET')).toBe(3);
    expect(r.health().consecutiveFailures).toBe(3);
  });

  test('answers are not retried: not-found after one request, and it keeps the backend healthy', async () => {
    const r = resilient(s3, { baseDelayMs: 10 });
    await expectKind(r.get('absent'), 'not-found');
    expect(fake.count('GET')).toBe(1);
    expect(await r.stat('absent')).toBeNull();
    expect(r.health()).toMatchObject({ healthy: true, consecutiveFailures: 0 });
  });

  test("the caller's abort ends the call at once with its reason, without retries or a health mark", async () => {
    const r = resilient(s3, { timeoutMs: 10_000, baseDelayMs: 10 });
    fake.mode = 'hang';
    const ctl = new AbortController();
    const reason = new Error('user pressed ^C');
    setTimeout(() => ctl.abort(reason), 100);
    const t0 = Date.now();
    await expect(r.get('obj', undefined, { signal: ctl.signal })).rejects.toBe(reason);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(fake.count('GET')).toBe(1);
    expect(r.health()).toEqual({ healthy: true, consecutiveFailures: 0 });
  });

  test('at most `concurrency` calls reach the backend at once', async () => {
    const r = resilient(s3, { concurrency: 2 });
    await r.put('obj', Buffer.from('x'));
    fake.mode = 'slow';
    fake.maxInFlight = 0;
    await Promise.all(Array.from({ length: 8 }, () => r.get('obj')));
    expect(fake.maxInFlight).toBe(2);
  });
});

describe('resilient: health', () => {
  test('unhealthy after repeated failures, fails fast during the cool-down, recovers through a probe', async () => {
    const r = resilient(s3, { attempts: 2, baseDelayMs: 5, unhealthyAfter: 3, coolDownMs: 1000 });
    fake.mode = 'error500';
    await expectKind(r.get('obj'), 'transient'); // 2 failed attempts
    expect(r.health()).toMatchObject({ healthy: true, consecutiveFailures: 2 });
    await expectKind(r.get('obj'), 'transient'); // the 3rd failure trips it; no more attempts
    expect(fake.count('GET')).toBe(3);
    const h = r.health();
    expect(h.healthy).toBe(false);
    expect(h.lastError).toMatch(/500/);

    // cool-down: fail fast, the server sees nothing, even once it is fine again
    fake.mode = 'ok';
    const fast = await expectKind(r.put('obj', Buffer.from('x')), 'transient');
    expect(fast.message).toMatch(/unhealthy/);
    expect(fast.retryAfterMs).toBeGreaterThan(0);
    expect(fast.retryAfterMs).toBeLessThanOrEqual(1000);
    expect(fake.requests.length).toBe(3);

    await sleep(1050);
    await r.put('obj', Buffer.from('back')); // the probe
    expect(r.health()).toEqual({ healthy: true, consecutiveFailures: 0, lastError: expect.any(String) });
    expect((await r.get('obj')).toString()).toBe('back');
  });

  test('a failed probe starts another cool-down; only one probe goes at a time', async () => {
    const r = resilient(s3, { attempts: 1, unhealthyAfter: 2, coolDownMs: 1000, timeoutMs: 300 });
    fake.mode = 'error500';
    await expectKind(r.get('obj'), 'transient');
    await expectKind(r.get('obj'), 'transient');
    expect(r.health().healthy).toBe(false);
    await sleep(1050);
    fake.mode = 'hang'; // the probe will hang until its timeout
    const probes = await Promise.allSettled([r.get('obj'), r.get('obj'), r.get('obj')]);
    expect(fake.count('GET')).toBe(3); // 2 failures + exactly 1 probe
    expect(probes.every((p) => p.status === 'rejected')).toBe(true);
    expect(r.health().healthy).toBe(false);
    fake.mode = 'ok';
    await expectKind(r.get('obj'), 'transient'); // cooling down again after the failed probe
    expect(fake.count('GET')).toBe(3);
  });
});

describe('resilient: per-call options', () => {
  test('attempts caps the retries of one call; the backend default holds for the others', async () => {
    const r = resilient(s3, { attempts: 4, baseDelayMs: 5, unhealthyAfter: 100 });
    fake.mode = 'error500';
    await expectKind(r.get('obj', undefined, { attempts: 1 }), 'transient');
    expect(fake.count('GET')).toBe(1);
    await expectKind(r.get('obj'), 'transient');
    expect(fake.count('GET')).toBe(5);
  });

  test('bypassGate: one attempt during the cool-down, which neither ends it nor counts for health', async () => {
    const r = resilient(s3, { attempts: 3, baseDelayMs: 5, unhealthyAfter: 2, coolDownMs: 1000 });
    await r.put('obj', Buffer.from('here'));
    fake.mode = 'error500';
    await expectKind(r.get('obj'), 'transient'); // 2 failed attempts: unhealthy
    const sick = r.health();
    expect(sick).toMatchObject({ healthy: false, consecutiveFailures: 2 });
    expect(fake.count('GET')).toBe(2);

    // failing past the gate: one request, no retries, health as it was
    await expectKind(r.get('obj', undefined, { bypassGate: true, attempts: 5 }), 'transient');
    expect(fake.count('GET')).toBe(3);
    expect(r.health()).toEqual(sick);

    // back, but cooling down: a plain call fails fast, one past the gate is served
    fake.mode = 'ok';
    expect((await expectKind(r.get('obj'), 'transient')).message).toMatch(/unhealthy/);
    expect(fake.count('GET')).toBe(3);
    expect((await r.get('obj', undefined, { bypassGate: true })).toString()).toBe('here');
    expect(fake.count('GET')).toBe(4);
    // it was not the probe: still cooling down, until a real probe after the cool-down
    expect(r.health()).toEqual(sick);
    await expectKind(r.get('obj'), 'transient');
    expect(fake.count('GET')).toBe(4);
    await sleep(1050);
    expect((await r.get('obj')).toString()).toBe('here');
    expect(r.health()).toMatchObject({ healthy: true, consecutiveFailures: 0 });
  });
});

describe('resilient: a real s3rver stopped and restarted', () => {
  let server: S3rverProcess;
  let b: Backend;
  beforeAll(async () => {
    server = await S3rverProcess.start('restart');
    b = await createBackend(parseBackendSpec(`s3r=s3:${server.endpoint}/restart?${creds}`));
  });
  afterAll(async () => {
    await b?.close();
    await server?.close();
  });

  test('stopped: transient errors; restarted on the same port: calls succeed, data intact', async () => {
    await b.put('k', Buffer.from('survives'));
    const port = server.port;
    await server.stop();
    await expectKind(b.get('k'), 'transient');
    await expectKind(b.put('k2', Buffer.from('x')), 'transient');
    await expect(b.stat('k')).rejects.toMatchObject({ kind: 'transient' });
    await server.run();
    expect(server.port).toBe(port);
    expect((await b.get('k')).toString()).toBe('survives');
  });

  test('resilient rides out an outage shorter than its retries', async () => {
    // A generous retry budget: restarting s3rver (a fresh node process) can take seconds on a busy machine.
    const r = resilient(b, { attempts: 60, baseDelayMs: 100, maxDelayMs: 250, timeoutMs: 5000, unhealthyAfter: 100 });
    await r.put('k3', Buffer.from('during outage'));
    await server.stop();
    const restarted = sleep(500).then(() => server.run());
    try {
      const t0 = Date.now();
      expect((await r.get('k3')).toString()).toBe('during outage');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
      expect(r.health().healthy).toBe(true);
    } finally {
      await restarted; // never leave a server starting after afterAll
    }
  });
});
