/** Where the local tier keeps a block: blocks/<first two hex digits>/<hex id>. */
import * as path from 'node:path';

export function blockFile(blocksDir: string, hex: string): string {
  return path.join(blocksDir, hex.slice(0, 2), hex);
}
