/**
 * The writer lease (src/head/lease.ts) over real local backends: busy, take-over, expiry,
 * crash leftovers, quorum, renewal, and two claimants at once.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import { LocalBackend } from '../../src/backend/local';
import { LEASES_PREFIX } from '../../src/head/objects';
import {
  LeaseBusyError,
  leaseKey,
  LeaseLostError,
  LeaseOptions,
  LeaseQuorumError,
  LeaseRecord,
  parseLease,
  scanLeases,
  WriterLease,
} from '../../src/head/lease';
import { tmpDir } from '../helpers/tmp';
import { localBackends } from '../helpers/backends';

const repoId = randomUUID();
const FAST = { settleMs: 5 };

let t: ReturnType<typeof tmpDir>;
let backends: LocalBackend[];
beforeEach(async () => {
  t = tmpDir();
  backends = await localBackends(t.dir);
});
afterEach(() => t.cleanup());

const dataDir = () => randomBytes(16).toString('hex');
const acquire = (o: Partial<LeaseOptions> = {}) =>
  WriterLease.acquire({ backends, repoId, dataDirId: dataDir(), host: 'alpha', timings: FAST, ...o });

async function keysOn(b: LocalBackend): Promise<string[]> {
  const out: string[] = [];
  for await (const o of b.list(LEASES_PREFIX)) out.push(o.key);
  return out;
}

test('a lease is written to every backend in the documented form and released from all', async () => {
  const lease = await acquire({ pid: 4242 });
  for (const b of backends) {
    expect(await keysOn(b)).toEqual([leaseKey(lease.holder)]);
    const rec = parseLease(await b.get(leaseKey(lease.holder)), b.name);
    expect(rec).toEqual({ ...lease.current });
    expect(rec).toMatchObject({ version: 1, repository: repoId, host: 'alpha', pid: 4242, displaced: [] });
    expect(Date.parse(rec.expires) - Date.parse(rec.since)).toBe(5 * 60_000);
  }
  await lease.release();
  for (const b of backends) expect(await keysOn(b)).toEqual([]);
});

test('a second writer is told who holds it and since when; take-over displaces the holder', async () => {
  const first = await acquire();
  const err = await acquire({ host: 'beta' }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(LeaseBusyError);
  expect((err as Error).message).toContain(`in use by alpha since ${first.current.since}`);
  expect((err as Error).message).toContain('--take-over');
  // The refused claimant left nothing behind.
  for (const b of backends) expect(await keysOn(b)).toEqual([leaseKey(first.holder)]);

  const second = await acquire({ host: 'beta', takeOver: true });
  expect(second.current.displaced).toEqual([first.holder]);
  for (const b of backends) expect(await keysOn(b)).toEqual([leaseKey(second.holder)]);
  await expect(first.renew()).rejects.toThrow(LeaseLostError);
  await expect(first.renew()).rejects.toThrow(/taken over by beta/);
  await second.renew(); // the new holder is undisturbed
  await second.release();
});

test('renewal extends the expiry; an expired lease no longer blocks, and is displaced', async () => {
  let clock = Date.parse('2026-12-01T00:00:00Z');
  const now = () => clock;
  const first = await acquire({ now, timings: { ...FAST, durationMs: 60_000 } });
  clock += 30_000;
  await first.renew();
  expect(first.current.expires).toBe('2026-12-01T00:01:30.000Z');
  for (const b of backends) expect(parseLease(await b.get(leaseKey(first.holder)), b.name).expires).toBe('2026-12-01T00:01:30.000Z');
  // Within expiry + skew it still blocks.
  clock += 60_000 + 59_000;
  await expect(acquire({ now })).rejects.toThrow(LeaseBusyError);
  clock += 2_000;
  const second = await acquire({ now });
  expect(second.current.displaced).toEqual([first.holder]);
  // The old holder, back after its lease expired, finds out.
  await expect(first.renew()).rejects.toThrow(LeaseLostError);
});

test('a holder that could not renew before its expiry has lost the lease', async () => {
  let clock = Date.now();
  const lease = await acquire({ now: () => clock, timings: { ...FAST, durationMs: 10_000 } });
  clock += 10_001;
  await expect(lease.renew()).rejects.toThrow(/expired at .* before it could be renewed/);
});

test('a lease left by a crash of the same data directory on this host does not block; a live one does', async () => {
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!; // a pid that has exited
  const id = dataDir();
  const crashed: LeaseRecord = {
    version: 1,
    repository: repoId,
    holder: randomBytes(16).toString('hex'),
    host: 'alpha',
    pid: dead,
    dataDir: id,
    since: new Date().toISOString(),
    renewed: new Date().toISOString(),
    expires: new Date(Date.now() + 300_000).toISOString(),
    displaced: [],
  };
  for (const b of backends) await b.put(leaseKey(crashed.holder), Buffer.from(JSON.stringify(crashed)));
  // Another data directory (or another host) must wait for it.
  await expect(acquire()).rejects.toThrow(LeaseBusyError);
  await expect(acquire({ dataDirId: id, host: 'beta' })).rejects.toThrow(LeaseBusyError);
  const lease = await acquire({ dataDirId: id });
  expect(lease.current.displaced).toEqual([crashed.holder]);
  for (const b of backends) expect(await keysOn(b)).toEqual([leaseKey(lease.holder)]);
  // A copy of that data directory (same id) while its holder lives: busy.
  await expect(acquire({ dataDirId: id })).rejects.toThrow(LeaseBusyError);
});

test('a majority of the backends must take the lease; the failed ones are named', async () => {
  fs.rmSync(backends[2].root, { recursive: true }); // one disk gone: 2 of 3 is enough
  const lease = await acquire();
  await lease.release();
  fs.rmSync(backends[1].root, { recursive: true });
  const err = await acquire().catch((e: unknown) => e);
  expect(err).toBeInstanceOf(LeaseQuorumError);
  expect((err as Error).message).toMatch(/1 of 3 backends answered, 2 needed; failed: b1 \(.*\), b2 \(/);
});

test('of claimants starting together, at most one gets the lease', async () => {
  for (let round = 0; round < 15; round++) {
    const results = await Promise.allSettled([0, 1, 2].map((i) => acquire({ host: `h${i}`, timings: { settleMs: i } })));
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won.length).toBeLessThanOrEqual(1);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(LeaseBusyError);
    for (const r of won) await (r as PromiseFulfilledResult<WriterLease>).value.release();
    for (const b of backends) expect(await keysOn(b)).toEqual([]);
  }
});

test('damaged lease objects are reported, not trusted', async () => {
  await backends[0].put(`${LEASES_PREFIX}${'a'.repeat(32)}`, Buffer.from('{"version":1'));
  await backends[1].put(`${LEASES_PREFIX}${'b'.repeat(32)}`, Buffer.from(JSON.stringify({ version: 2 })));
  const scan = await scanLeases(backends);
  expect(scan.leases).toEqual([]);
  expect(scan.unreadable.map((u) => [u.backend, u.reason]).sort((a, b) => (a[0] < b[0] ? -1 : 1))).toEqual([
    ['b0', expect.stringMatching(/lease is not JSON/)],
    ['b1', expect.stringMatching(/lease version 2 is not supported/)],
  ]);
});
