/* eslint-disable @typescript-eslint/no-require-imports */
import { deriveGearTable } from '../../src/chunk';
import { cutPoints as referenceCuts } from '../../src/native/fastcdc';
import { addonExpected, prngBytes } from './impls';

type NativeModule = typeof import('../../src/native');
type LogModule = typeof import('../../src/log');

/** Loads src/native afresh with ISGFS_NO_NATIVE as given; returns it and the warnings it logged. */
function loadWith(env: string | undefined): { n: NativeModule; warnings: string[] } {
  const saved = process.env.ISGFS_NO_NATIVE;
  if (env === undefined) delete process.env.ISGFS_NO_NATIVE;
  else process.env.ISGFS_NO_NATIVE = env;
  const warnings: string[] = [];
  let n: NativeModule | undefined;
  try {
    jest.isolateModules(() => {
      const { log } = require('../../src/log') as LogModule;
      jest.spyOn(log, 'warn').mockImplementation(((msg: string) => {
        warnings.push(msg);
        return log;
      }) as never);
      n = require('../../src/native') as NativeModule;
      require('../../src/chunk'); // a second importer must not log again
      require('../../src/native');
    });
  } finally {
    if (saved === undefined) delete process.env.ISGFS_NO_NATIVE;
    else process.env.ISGFS_NO_NATIVE = saved;
  }
  return { n: n as NativeModule, warnings };
}

test('ISGFS_NO_NATIVE=1 forces the portable fallback and says so in one line', async () => {
  const { n, warnings } = loadWith('1');
  expect(n.nativeLoaded).toBe(false);
  expect(n.nativeBlake3).toBe(false);
  expect(n.nativeAead).toBe(false);
  expect(n.binding).toBeNull();
  expect(warnings).toHaveLength(1);
  expect(warnings[0]).toMatch(/fallback/);
  expect(warnings[0]).toMatch(/ISGFS_NO_NATIVE/);
  expect(warnings[0]).not.toMatch(/\n/);
  // and everything works on it
  const gear = deriveGearTable(Buffer.from('k'));
  const data = prngBytes(3, 300_000);
  const p = { minSize: 1024, avgSize: 4096, maxSize: 16384 };
  expect(n.cdcCutPoints(data, p, gear)).toEqual(referenceCuts(data, p, gear));
  const shards = [0, 1, 2, 3].map((i) => data.subarray(i * 1000, i * 1000 + 1000));
  const parity = await n.rsEncode(4, 2, shards);
  const out = await n.rsReconstruct(4, 2, [null, null, shards[2], shards[3], ...parity]);
  expect(out[0].equals(shards[0]) && out[1].equals(shards[1])).toBe(true);
  expect(n.blake3(Buffer.alloc(0)).toString('hex')).toBe('af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262');
  const sealed = Buffer.alloc(data.length + 16);
  n.aesGcmSeal(Buffer.alloc(32, 7), Buffer.alloc(12, 8), Buffer.from('ad'), data, sealed);
  const opened = Buffer.alloc(data.length);
  expect(
    n.aesGcmOpen(
      Buffer.alloc(32, 7),
      Buffer.alloc(12, 8),
      Buffer.from('ad'),
      sealed.subarray(0, data.length),
      sealed.subarray(data.length),
      opened,
    ),
  ).toBe(true);
  expect(opened.equals(data)).toBe(true);
  expect((await n.segmentChecksums(data, 65536)).subarray(0, 8).equals(n.shardChecksum(data.subarray(0, 65536)))).toBe(true);
});

test('without ISGFS_NO_NATIVE the addon and @napi-rs/blake-hash run, and nothing is logged', () => {
  const { n, warnings } = loadWith(undefined);
  expect(n.nativeBlake3).toBe(true);
  expect(n.nativeLoaded).toBe(addonExpected);
  expect(n.nativeAead).toBe(addonExpected);
  if (addonExpected) expect(warnings).toEqual([]);
  else expect(warnings).toHaveLength(1);
});
