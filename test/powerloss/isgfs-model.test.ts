/**
 * The model that judges the isgfs power-loss test (isgfs-model.ts) accepts exactly what a power
 * cut may leave: fsynced or old-enough states bit for bit, later states or a per-byte mix of them,
 * and refuses garbage, zero-filled tails, lost fsynced names and names that never existed.
 */
import { DirModel, now, Observed } from './isgfs-model';

const b = (s: string) => Buffer.from(s);
const obs = (name: string, ino: number, data: string | Buffer, nlink = 1): Observed => ({
  name,
  ino,
  nlink,
  data: typeof data === 'string' ? b(data) : data,
});
const WB = 6500;

/** A model with one file `a` bound to name `n`, created and done. */
function one(): { m: DirModel; id: string } {
  const m = new DirModel();
  const id = m.newFile();
  m.bind('n', id)();
  m.created(id);
  return { m, id };
}

test('a fsynced file must read back exactly; a later unsynced write may land or not, byte by byte', () => {
  const { m, id } = one();
  m.write(id, 0, b('hello world'))();
  m.fsync(id)();
  const t = now() + 10;
  expect(m.judge([obs('n', 1, 'hello world')], t, WB).problems).toEqual([]);
  expect(m.judge([obs('n', 1, 'hello')], t, WB).problems[0]).toMatch(/had to read back exactly/);
  expect(m.judge([], t, WB).problems[0]).toMatch(/n: missing after the crash \(fsynced/);

  m.write(id, 6, b('WORLD'))();
  expect(m.judge([obs('n', 1, 'hello WORLD')], t, WB).problems).toEqual([]);
  expect(m.judge([obs('n', 1, 'hello WOrld')], t, WB).problems).toEqual([]); // pages of the write kept, others not
  expect(m.judge([obs('n', 1, 'hello Wxrld')], t, WB).problems[0]).toMatch(/bytes never written to it at \[7, 8\)/);
});

test('a zero-filled tail, a size no state had, or an older state than the floor is refused', () => {
  const { m, id } = one();
  m.write(id, 0, b('abc'))();
  m.fsync(id)();
  m.write(id, 3, b('defg'))(); // append, not synced
  const t = now() + 10;
  expect(m.judge([obs('n', 1, 'abcdefg')], t, WB).problems).toEqual([]);
  expect(m.judge([obs('n', 1, 'abc')], t, WB).problems).toEqual([]);
  expect(m.judge([obs('n', 1, Buffer.from([97, 98, 99, 0, 0, 0, 0]))], t, WB).problems[0]).toMatch(/\[3, 7\) zeros/);
  expect(m.judge([obs('n', 1, 'abcde')], t, WB).problems[0]).toMatch(/size 5 is none of its possible sizes/);
  expect(m.judge([obs('n', 1, '')], t, WB).problems[0]).toMatch(/size 0/);
});

test('what was written more than the writeback interval before the crash is required', () => {
  const { m, id } = one();
  m.write(id, 0, b('old'))();
  const t = now() + WB + 1; // as if the crash came WB ms later
  expect(m.judge([obs('n', 1, 'old')], t, WB).problems).toEqual([]);
  expect(m.judge([obs('n', 1, '')], t, WB).problems[0]).toMatch(/had to read back exactly/);
  expect(m.judge([obs('n', 1, '')], now() + 10, WB).problems).toEqual([]); // recent: may be lost
});

test('a write still running at the crash may have landed; names that never existed may not appear', () => {
  const { m, id } = one();
  m.write(id, 0, b('xyz')); // never marked done
  const t = now() + 10;
  expect(m.judge([obs('n', 1, 'xyz')], t, WB).problems).toEqual([]);
  expect(m.judge([obs('n', 1, 'xyz'), obs('.fuse_hidden0001', 2, '')], t, WB).problems[0]).toMatch(/never created/);
});

test('rename over: the name shows the old or the new file, never a mix of the two; after fsyncdir only the new', () => {
  const m = new DirModel();
  const old = m.newFile();
  m.bind('t', old)();
  m.created(old);
  m.write(old, 0, b('OLDOLD'))();
  m.fsync(old)();
  const tmp = m.newFile();
  m.bind('tmp', tmp)();
  m.created(tmp);
  m.write(tmp, 0, b('newnew'))();
  m.fsync(tmp)();
  m.bind('t', tmp)();
  m.bind('tmp', null)();
  const t = now() + 10;
  expect(m.judge([obs('t', 1, 'OLDOLD')], t, WB).problems).toEqual([]);
  expect(m.judge([obs('t', 2, 'newnew')], t, WB).problems).toEqual([]);
  expect(m.judge([obs('t', 2, 'newnew'), obs('tmp', 2, 'newnew', 1)], t, WB).problems).not.toEqual([]); // nlink 1 for 2 names
  expect(m.judge([obs('t', 2, 'newOLD')], t, WB).problems).not.toEqual([]);
  m.fsyncDir()();
  expect(m.judge([obs('t', 1, 'OLDOLD')], now() + 10, WB).problems[0]).toMatch(/t:/);
});

test('hard links: both names show one inode with the right link count', () => {
  const { m, id } = one();
  m.write(id, 0, b('data'))();
  m.bind('l', id)();
  m.fsync(id)();
  const t = now() + 10;
  expect(m.judge([obs('l', 5, 'data', 2), obs('n', 5, 'data', 2)], t, WB).problems).toEqual([]);
  expect(m.judge([obs('l', 5, 'data', 1), obs('n', 6, 'data', 1)], t, WB).problems).not.toEqual([]);
  m.collapse([obs('l', 5, 'data', 2), obs('n', 5, 'data', 2)]);
  expect(m.liveNames().sort()).toEqual(['l', 'n']);
  expect(m.boundTo('l')).toBe(m.boundTo('n'));
});

test('syncAll (isg flush, a clean unmount) covers only the calls that had returned when it started', () => {
  const { m, id } = one();
  m.write(id, 0, b('one'))();
  m.write(id, 0, b('two')); // running when the flush starts
  m.syncAll()();
  const t = now() + 10;
  expect(m.judge([obs('n', 1, 'one')], t, WB).problems).toEqual([]);
  expect(m.judge([obs('n', 1, 'two')], t, WB).problems).toEqual([]);
  expect(m.judge([obs('n', 1, '')], t, WB).problems).not.toEqual([]);
});

test('two inodes with the same content are two files: a name rebound to a copy of the file it was linked to', () => {
  const { m, id } = one();
  m.write(id, 0, b('same'))();
  m.bind('x', id)(); // a hard link...
  m.bind('x', null)(); // ...unlinked
  const copy = m.newFile();
  m.bind('x', copy)(); // and a copy made under its name
  m.created(copy);
  m.write(copy, 0, b('same'))();
  m.fsyncDir()();
  const t = now() + 10;
  expect(m.judge([obs('n', 1, 'same'), obs('x', 2, 'same')], t, WB).problems).toEqual([]);
  expect(m.judge([obs('n', 1, 'same', 2), obs('x', 1, 'same', 2)], t, WB).problems).not.toEqual([]); // fsyncdir: x is the copy
});
