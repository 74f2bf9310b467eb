/** preadFile, the local backend's ranged read: the addon's one-call version and the fs fallback agree, errors included. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fallbackPread } from '../../src/native/fallback';
import { binding, prngBytes } from './impls';

const impls: [string, (file: string, offset: number, out: Uint8Array) => Promise<number>][] = [['fallback', fallbackPread]];
if (binding) impls.push(['native', (f, o, out) => binding!.preadFile(f, o, out)]);

let dir: string;
let file: string;
const data = prngBytes(7, 3 * 1024 * 1024 + 17);
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pread-'));
  file = path.join(dir, 'f');
  fs.writeFileSync(file, data);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test('the addon is there to be compared', () => {
  expect(impls.map(([n]) => n)).toContain('native');
});

describe.each(impls)('%s', (_name, pread) => {
  test('ranges inside, across the end and past it', async () => {
    for (const [offset, length] of [
      [0, 10],
      [12345, 2 * 1024 * 1024],
      [data.length - 5, 100],
      [data.length, 8],
      [data.length + 100, 8],
      [7, 0],
    ]) {
      const out = Buffer.alloc(length);
      const got = await pread(file, offset, out);
      const want = data.subarray(Math.min(offset, data.length), Math.min(data.length, offset + length));
      expect(got).toBe(want.length);
      expect(out.subarray(0, got).equals(want)).toBe(true);
    }
  });

  test('errors carry the errno name: a missing file, a directory', async () => {
    await expect(pread(path.join(dir, 'absent'), 0, Buffer.alloc(4))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(pread(dir, 0, Buffer.alloc(4))).rejects.toMatchObject({ code: 'EISDIR' });
  });
});
