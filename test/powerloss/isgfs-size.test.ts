/**
 * A flush commits a file's size with its chunk map: never a size that covers data still only in
 * memory. Found by the power-loss test (isgfs.test.ts: files whose tail came back as zeros): a
 * write that extends the file while the flush behind a close is encoding its blocks made that
 * flush commit the new size with the old chunk map. The daemon killed before the next flush then
 * leaves a file at the new size whose tail was never written: zeros. No power cut is needed, a
 * kill -9 is enough, so this test runs on an ordinary directory.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { kill9, mount, mountDirs, Mounted } from '../helpers/mount';
import { prng } from '../helpers/tmp';

const { data, mnt } = mountDirs();

test('kill -9 while the flush behind a close commits, with an append racing it: the file is empty, old or new, never zero-filled', async () => {
  const r = prng(1515);
  let m: Mounted = await mount(data, mnt);
  const outcomes: string[] = [];
  try {
    for (let round = 0; round < 6; round++) {
      const file = path.join(mnt, `f${round}`);
      const first = r.bytes(4 * 1024 * 1024);
      const more = r.bytes(1024 * 1024);
      fs.writeFileSync(file, first); // the close starts the flush behind
      const fd = fs.openSync(file, 'r+');
      fs.writeSync(fd, more, 0, more.length, first.length); // lands while that flush runs
      await new Promise((res) => setTimeout(res, 300 + round * 100)); // the first flush commits; the append stays buffered (open)
      await kill9(m); // (the descriptor dies with the mount)
      try {
        fs.closeSync(fd);
      } catch {
        /* the mount is gone */
      }
      m = await mount(data, mnt);
      const got = fs.readFileSync(file);
      const whole = Buffer.concat([first, more]);
      let outcome: string;
      // Empty is a state the file had (created, nothing committed yet: nobody fsynced, and the kill
      // can come before the flush behind the close commits); it shows no byte never written.
      if (got.length === 0) outcome = 'empty';
      else if (got.equals(first)) outcome = 'old';
      else if (got.equals(whole)) outcome = 'new';
      else {
        let i = 0;
        while (i < Math.min(got.length, whole.length) && got[i] === whole[i]) i++;
        const zeros = got.subarray(i).every((b) => b === 0);
        outcome = `size ${got.length}, differs from byte ${i}${zeros ? ', zeros from there' : ''}`;
      }
      outcomes.push(outcome);
    }
  } finally {
    await kill9(m).catch(() => undefined);
  }
  expect(outcomes.filter((o) => o !== 'empty' && o !== 'old' && o !== 'new')).toEqual([]);
});
