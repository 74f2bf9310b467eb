import * as path from 'node:path';

/** Where the local tier keeps a block: blocks/<first two hex digits>/<hex id>. */
export function blockFile(blocksDir: string, hex: string): string {
  return path.join(blocksDir, hex.slice(0, 2), hex);
}

/**
 * Where block files are written before they are renamed into place, so that a block file is never
 * seen half-written. A crash mid-write leaves its file here; a writable open empties the directory.
 */
export function blockTmpDir(blocksDir: string): string {
  return path.join(blocksDir, 'tmp');
}
