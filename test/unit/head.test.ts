/**
 * Heads (src/head/head.ts): canonical encoding, Ed25519 signature, chain, and the choice of the
 * highest valid head over real local backends.
 */
import { randomBytes, randomUUID, sign } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LocalBackend } from '../../src/backend/local';
import { ed25519FromSeed, ed25519PublicKey, headSigningKey, newMasterKey } from '../../src/crypto/keys';
import {
  checkLink,
  findHeads,
  Head,
  headKey,
  HeadInvalidError,
  HeadRollbackError,
  nextHead,
  NO_PREVIOUS,
  openHead,
  parseHeadKey,
  signHead,
  SignedHead,
  storeHead,
} from '../../src/head/head';
import { tmpDir } from '../helpers/tmp';
import { localBackends } from '../helpers/backends';

const repoId = randomUUID();
const key = headSigningKey(newMasterKey());
const id = (n: number) => Buffer.alloc(32, n);

function fields(n: number): Omit<Head, 'seq' | 'prev'> {
  return { repoId, root: id(n), index: [id(100 + n), id(200 + n)], time: 1_765_000_000_000 + n, host: 'host-é' };
}

function chain(length: number, k = key, repo = repoId): SignedHead[] {
  const out: SignedHead[] = [];
  for (let i = 0; i < length; i++) out.push(signHead(nextHead(out[i - 1], { ...fields(i + 1), repoId: repo }), k.privateKey));
  return out;
}

const open = (bytes: Buffer) => openHead(bytes, { repoId, publicKey: key.publicKey });

test('Ed25519 from a seed matches RFC 8032 test 1 (public key and signature of the empty message)', () => {
  const k = ed25519FromSeed(Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex'));
  expect(k.publicRaw.toString('hex')).toBe('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
  expect(sign(null, Buffer.alloc(0), k.privateKey).toString('hex')).toBe(
    'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155' + '5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  );
  expect(ed25519PublicKey(k.publicRaw).export({ format: 'der', type: 'spki' })).toEqual(
    k.publicKey.export({ format: 'der', type: 'spki' }),
  );
});

test('the worked example of docs/formats.md: head key from a master key, bytes, hash, key', () => {
  const master = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
  const k = headSigningKey(master);
  expect(k.publicRaw.toString('hex')).toBe('ad0849b2b4712e1dcff7c6fd3d60420a34a9d748a897ed27b5a004c41b730fb6');
  const h = signHead(
    {
      repoId: '00112233-4455-6677-8899-aabbccddeeff',
      seq: 1,
      prev: NO_PREVIOUS,
      root: Buffer.alloc(32, 0x11),
      index: [Buffer.alloc(32, 0x22)],
      time: 1765000000000,
      host: 'example',
    },
    k.privateKey,
  );
  const doc = fs.readFileSync(path.join(__dirname, '../../docs/formats.md'), 'utf8');
  const hex = /is these 244 bytes:\n\n```\n([0-9a-f\n]+)```/.exec(doc)![1].replace(/\n/g, '');
  expect(h.bytes.toString('hex')).toBe(hex);
  expect(h.hash.toString('hex')).toBe('94d31605f7b45fff23ecc905be375bb026d8795a9337eb86465010f696b20fd4');
  expect(headKey(h.seq, h.hash)).toBe('isgfs/heads/0000000000000001-94d31605f7b45fff');
  expect(openHead(h.bytes, { repoId: h.repoId, publicKey: k.publicKey }).host).toBe('example');
});

test('a head encodes to the documented layout and opens to the same fields', () => {
  const [h1, h2] = chain(2);
  const b = h2.bytes;
  expect(b.subarray(0, 4).toString()).toBe('ISGH');
  expect(b[4]).toBe(1);
  expect(b.subarray(8, 24).toString('hex')).toBe(repoId.replace(/-/g, ''));
  expect(b.readUInt32LE(24)).toBe(2); // seq
  expect(b.subarray(40, 72)).toEqual(h1.hash);
  expect(b.subarray(72, 104)).toEqual(id(2));
  expect(b.readUInt32LE(136)).toBe(2); // index ids
  expect(b[140]).toBe(Buffer.byteLength('host-é'));
  expect(b.length).toBe(141 + b[140] + 2 * 32 + 64);
  const o = open(b);
  expect({ ...o, bytes: undefined }).toEqual({ ...h2, bytes: undefined });
  expect(o.snapshots).toBeUndefined();
  expect(h1.prev).toEqual(NO_PREVIOUS);
  checkLink(h1, h2);
  // Deterministic: the same fields sign to the same bytes, so the hash names the head.
  expect(signHead(nextHead(h1, { ...fields(2), repoId }), key.privateKey).bytes).toEqual(b);
  const withSnapshots = signHead({ ...nextHead(h1, { ...fields(2), repoId }), snapshots: id(9) }, key.privateKey);
  expect(open(withSnapshots.bytes).snapshots).toEqual(id(9));
});

test('a flipped byte anywhere in a head is refused', () => {
  const [, h2] = chain(2);
  for (let i = 0; i < h2.bytes.length; i++) {
    for (const mask of [0x01, 0x80]) {
      const bad = Buffer.from(h2.bytes);
      bad[i] ^= mask;
      expect(() => open(bad)).toThrow(HeadInvalidError);
    }
  }
  expect(() => open(h2.bytes.subarray(0, h2.bytes.length - 1))).toThrow(HeadInvalidError);
  expect(() => open(Buffer.concat([h2.bytes, Buffer.alloc(1)]))).toThrow(HeadInvalidError);
});

test('a head of another repository, or signed with another key, is refused', () => {
  const [other] = chain(1, key, randomUUID());
  expect(() => open(other.bytes)).toThrow(/belongs to repository/);
  const [forged] = chain(1, headSigningKey(newMasterKey()));
  expect(() => open(forged.bytes)).toThrow(/signature does not verify/);
});

test('checkLink refuses a head that skips a number or names another predecessor', () => {
  const [h1, h2, h3] = chain(3);
  expect(() => checkLink(h1, h3)).toThrow(/sequence/);
  const fork = signHead({ ...nextHead(h2, { ...fields(3), repoId }), prev: h1.hash }, key.privateKey);
  expect(() => checkLink(h2, fork)).toThrow(/does not follow/);
});

test('head keys sort by sequence number and parse back', () => {
  const hs = chain(3);
  const keys = hs.map((h) => headKey(h.seq, h.hash));
  expect([...keys].sort()).toEqual(keys);
  expect(keys[0]).toMatch(/^isgfs\/heads\/0000000000000001-[0-9a-f]{16}$/);
  expect(parseHeadKey(keys[2])).toEqual({ seq: 3, hashPrefix: hs[2].hash.subarray(0, 8).toString('hex') });
  expect(parseHeadKey('isgfs/heads/0000000000000000-0000000000000000')).toBeNull();
  expect(parseHeadKey('isgfs/heads/x')).toBeNull();
});

describe('findHeads over local backends', () => {
  let t: ReturnType<typeof tmpDir>;
  let backends: LocalBackend[];
  beforeEach(async () => {
    t = tmpDir();
    backends = await localBackends(t.dir);
  });
  afterEach(() => t.cleanup());

  const find = (o: { lastSeen?: { seq: number; hash: Buffer }; acceptRollback?: boolean } = {}) =>
    findHeads(backends, { repoId, publicKey: key.publicKey, ...o });

  test('the highest valid head wins; heads on only some backends still count; damaged ones are reported', async () => {
    const hs = chain(4);
    for (const h of hs.slice(0, 3)) expect((await storeHead(backends, h)).failed).toEqual([]);
    await storeHead([backends[1]], hs[3]); // only b1 has the newest
    let found = await find();
    expect(found.head?.seq).toBe(4);
    expect(found.holders).toEqual(['b1']);
    expect(found.highest).toEqual(
      new Map([
        ['b0', 3],
        ['b1', 4],
        ['b2', 3],
      ]),
    );
    expect(found.refused).toEqual([]);

    // Damage head 4 on b1: head 3 is taken and the damage is reported.
    const file = path.join(t.dir, 'b1', headKey(4, hs[3].hash));
    const bytes = fs.readFileSync(file);
    bytes[100] ^= 1;
    fs.writeFileSync(file, bytes);
    found = await find();
    expect(found.head?.seq).toBe(3);
    expect(found.holders).toEqual(['b0', 'b1', 'b2']);
    expect(found.refused).toEqual([
      { backend: 'b1', key: headKey(4, hs[3].hash), reason: expect.stringMatching(/signature does not verify/) },
    ]);
  });

  test('a valid head under a key that does not name it, and a head of a broken chain, are refused', async () => {
    const hs = chain(3);
    for (const h of hs.slice(0, 2)) await storeHead(backends, h);
    // Head 2 copied under the name of a head 3.
    await backends[0].put(headKey(3, hs[2].hash), hs[1].bytes);
    // A validly signed head 3 whose predecessor is not on the backends' head 2.
    const fork = signHead({ ...nextHead(hs[1], { ...fields(3), repoId }), prev: randomBytes(32) }, key.privateKey);
    await backends[1].put(headKey(3, fork.hash), fork.bytes);
    const found = await find();
    expect(found.head?.seq).toBe(2);
    expect(found.refused.map((r) => [r.backend, r.reason]).sort((a, b) => (a[0] < b[0] ? -1 : 1))).toEqual([
      ['b0', expect.stringMatching(/the key does not name this head/)],
      ['b1', expect.stringMatching(/does not follow any valid head 2/)],
    ]);
  });

  test('an older head replacing a newer one is a rollback, given the last head seen', async () => {
    const hs = chain(3);
    for (const h of hs) await storeHead(backends, h);
    const seen = { seq: 3, hash: hs[2].hash };
    expect((await find({ lastSeen: seen })).head?.seq).toBe(3);
    // The backends restored from an old copy: head 3 is gone everywhere.
    for (const b of backends) await b.delete(headKey(3, hs[2].hash));
    await expect(find({ lastSeen: seen })).rejects.toThrow(HeadRollbackError);
    await expect(find({ lastSeen: seen })).rejects.toThrow(/rollback: the newest valid head on the backends is 2, older than head 3/);
    const accepted = await find({ lastSeen: seen, acceptRollback: true });
    expect(accepted.head?.seq).toBe(2);
    expect(accepted.rollback).toBeInstanceOf(HeadRollbackError);
    // A different head with the number last seen (another writer's) is refused as well.
    const other = signHead(nextHead(hs[1], { ...fields(33), repoId }), key.privateKey);
    await storeHead(backends, other);
    await expect(find({ lastSeen: seen })).rejects.toThrow(/is not the head 3 this data directory saw/);
  });

  test('heads of another repository and forged heads are ignored and reported', async () => {
    const [mine] = chain(1);
    await storeHead(backends, mine);
    const [foreign] = chain(2, key, randomUUID()).slice(1);
    await backends[0].put(headKey(foreign.seq, foreign.hash), foreign.bytes);
    const [, forged] = chain(2, headSigningKey(newMasterKey()));
    await backends[2].put(headKey(forged.seq, forged.hash), forged.bytes);
    await backends[1].put('isgfs/heads/junk', Buffer.from('x'));
    const found = await find();
    expect(found.head?.hash).toEqual(mine.hash);
    const byBackend = found.refused.map((r) => [r.backend, r.reason]).sort((a, b) => (a[0] < b[0] ? -1 : 1));
    expect(byBackend).toEqual([
      ['b0', expect.stringMatching(/belongs to repository/)],
      ['b1', 'not a head key'],
      ['b2', expect.stringMatching(/signature does not verify/)],
    ]);
  });

  test('an unreachable backend is named, the others answer', async () => {
    const [h1] = chain(1);
    await storeHead(backends, h1);
    fs.rmSync(path.join(t.dir, 'b2'), { recursive: true }); // its disk "unmounted"
    const found = await find();
    expect(found.head?.seq).toBe(1);
    expect(found.unreachable.map((u) => u.backend)).toEqual(['b2']);
  });
});
