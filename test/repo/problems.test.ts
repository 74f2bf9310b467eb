/** Background failures: logged once per kind and window with a count of repeats, kept for `isg status`. */
import { BackgroundProblems, sameKind } from '../../src/repo/problems';

function setup() {
  let now = Date.parse('2024-05-01T10:00:00Z');
  const lines: string[] = [];
  const p = new BackgroundProblems({ warn: (l) => lines.push(l), now: () => now, windowMs: 60_000 });
  return { p, lines, tick: (ms: number) => (now += ms), at: () => new Date(now).toISOString() };
}

const packError = (id: string, dir: string) =>
  new Error(`pack ${id}: only 0 of 3 shards stored (need 2): ENOTDIR: not a directory, open '/tmp/x/${dir}/shards/ab/.isg-tmp-1f2e'`);

test('nothing failed: no last error, not stalled', () => {
  expect(setup().p.status()).toEqual({ lastError: null, uploadStalledSince: null });
});

test('a failure repeating every second is logged once a minute, with the count of repeats', () => {
  const { p, lines, tick, at } = setup();
  const start = at();
  for (let i = 0; i < 90; i++) {
    p.failed('upload', packError(i.toString(16).padStart(32, '0'), `disk${i % 3}`));
    tick(1000);
  }
  expect(lines).toHaveLength(2);
  expect(lines[0]).toMatch(/^background upload failed: pack 0+: only 0 of 3 shards stored/);
  expect(lines[1]).toMatch(/\(59 more like it in the last 60 s\)$/);
  const s = p.status();
  expect(s.uploadStalledSince).toBe(start);
  expect(s.lastError).toMatchObject({ stage: 'upload', time: new Date(Date.parse(at()) - 1000).toISOString() });
  expect(s.lastError!.message).toMatch(/^pack 0+59: only 0 of 3/);
});

test('another stage or another message is logged at once; only uploads stall', () => {
  const { p, lines, tick } = setup();
  p.failed('sweep', new Error('EIO: i/o error'));
  p.failed('sweep', new Error('EIO: i/o error'));
  p.failed('sync', new Error('EIO: i/o error'));
  p.failed('sync', new Error('ENOSPC: no space left on device'));
  expect(lines).toEqual([
    'background sweep failed: EIO: i/o error',
    'background sync failed: EIO: i/o error',
    'background sync failed: ENOSPC: no space left on device',
  ]);
  expect(p.status().uploadStalledSince).toBeNull();
  expect(p.status().lastError).toMatchObject({ stage: 'sync', message: 'ENOSPC: no space left on device' });
  p.failed('upload', 'backend down');
  const since = p.status().uploadStalledSince;
  expect(since).not.toBeNull();
  tick(5000);
  p.failed('upload', 'backend down');
  expect(p.status().uploadStalledSince).toBe(since); // since the first failure, not the latest
  p.uploadProgressed();
  expect(p.status().uploadStalledSince).toBeNull();
  expect(p.status().lastError).toMatchObject({ stage: 'upload', message: 'backend down' }); // the last error stays
});

test('the same kind: paths, ids and counts aside', () => {
  expect(sameKind('upload', packError('a'.repeat(32), 'disk0').message)).toBe(
    sameKind('upload', packError('b'.repeat(32), 'disk2').message),
  );
  expect(sameKind('upload', 'x')).not.toBe(sameKind('sync', 'x'));
  expect(sameKind('sync', 'EIO')).not.toBe(sameKind('sync', 'ENOSPC'));
});
