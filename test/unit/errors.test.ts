/**
 * src/errors.ts: errors keep their kind, class and data through toWire/fromWire (what a codec
 * worker's answer goes through), and a system error keeps its code.
 */
import { BlockCorruptError } from '../../src/block/codec';
import { ERROR_KINDS, fromWire, IsgError, isKind, kindOf, toWire } from '../../src/errors';
import { PackUnavailableError } from '../../src/pack/fetch';
import { ShardCorruptError } from '../../src/pack/format';
import { BlockMissingError } from '../../src/store/blockstore';

/** Through postMessage's structured clone, as a worker's answer goes. */
function acrossWorker(e: unknown): Error {
  return fromWire(structuredClone(toWire(e)));
}

test('each error class keeps its class, kind, message and data', () => {
  const hex = 'ab'.repeat(32);
  const cases: [IsgError, new (...args: never[]) => IsgError, string][] = [
    [new BlockCorruptError(hex, 'authentication failed'), BlockCorruptError, 'corrupt'],
    [new ShardCorruptError('shard 3 of pack x fails its checksum'), ShardCorruptError, 'corrupt'],
    [new BlockMissingError(hex), BlockMissingError, 'missing'],
    [new PackUnavailableError('pack x: only 2 of the 4 shards needed could be read'), PackUnavailableError, 'unavailable'],
  ];
  for (const [orig, cls, kind] of cases) {
    expect(orig.kind).toBe(kind);
    const back = acrossWorker(orig);
    expect(back).not.toBe(orig);
    expect(back).toBeInstanceOf(cls);
    expect(back).toBeInstanceOf(IsgError);
    expect(back).toBeInstanceOf(Error);
    expect(back.name).toBe(cls.name);
    expect(back.message).toBe(orig.message);
    expect(kindOf(back)).toBe(kind);
  }
  expect((acrossWorker(cases[0][0]) as BlockCorruptError).blockId).toBe(hex);
  expect((acrossWorker(cases[2][0]) as BlockMissingError).idHex).toBe(hex);
});

test('an IsgError of a class nobody registered comes back as an IsgError of the same kind', () => {
  class Unregistered extends IsgError {}
  const back = acrossWorker(new Unregistered('unavailable', 'later'));
  expect(back).toBeInstanceOf(IsgError);
  expect(back).not.toBeInstanceOf(Unregistered);
  expect(back).toMatchObject({ kind: 'unavailable', message: 'later' });
});

test('a system error keeps its code and name, and has no kind unless it is a full disk', () => {
  const enoent = Object.assign(new Error("ENOENT: no such file or directory, open '/x'"), { code: 'ENOENT' });
  const back = acrossWorker(enoent);
  expect(back).not.toBeInstanceOf(IsgError);
  expect(back).toMatchObject({ code: 'ENOENT', name: 'Error', message: enoent.message });
  expect(kindOf(back)).toBeUndefined();
  const full = Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
  expect(kindOf(full)).toBe('no-space');
  const fullBack = acrossWorker(full);
  expect(fullBack).toBeInstanceOf(IsgError);
  expect(fullBack).toMatchObject({ kind: 'no-space', code: 'ENOSPC' });
  const plain = acrossWorker(new TypeError('bad argument'));
  expect(plain).toMatchObject({ name: 'TypeError', message: 'bad argument' });
  expect(kindOf(plain)).toBeUndefined();
  expect(acrossWorker('a string').message).toBe('a string');
});

test('isKind and the set of kinds', () => {
  expect([...ERROR_KINDS].sort()).toEqual(['corrupt', 'missing', 'no-space', 'unavailable']);
  expect(isKind(new ShardCorruptError('x'), 'corrupt')).toBe(true);
  expect(isKind(new ShardCorruptError('x'), 'missing')).toBe(false);
  expect(isKind(Object.assign(new Error('EIO'), { code: 'EIO' }), 'corrupt')).toBe(false);
  expect(isKind(undefined, 'corrupt')).toBe(false);
});
