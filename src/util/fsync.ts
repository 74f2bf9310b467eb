import * as fs from 'node:fs';

/** fdatasync of a file (its data and the size that reaches it), fsync of a directory (its names). */
export async function fsyncPath(file: string, kind: 'file' | 'dir'): Promise<void> {
  const fh = await fs.promises.open(file, 'r');
  try {
    await (kind === 'file' ? fh.datasync() : fh.sync());
  } finally {
    await fh.close();
  }
}
