/**
 * A look at LMDB's data file without LMDB: LMDB maps the file and trusts its two meta pages, so a
 * truncated file or garbage meta pages kill the process (SIGBUS, SIGSEGV) instead of returning an
 * error. `isg check` reads the meta pages here first and reports such damage in words.
 *
 * Layout (LMDB as built by lmdb-js, 64-bit): pages 0 and 1 are meta pages, the newer (higher txnid)
 * is current. Page header 24 bytes (pgno, txnid, pad, flags = P_META, lower, upper), then the meta:
 * magic, version, address, mapsize, the free and main database records (48 bytes each, the free
 * one's first 4 bytes hold the page size), last page number, txnid.
 */
import * as fs from 'node:fs';

/** Pages at the end of the file LMDB may count without having written them (loose pages). */
const LOOSE_TAIL_PAGES = 16n;

const MAGIC = 0xbeefc0de;
const P_META = 0x08;
const OFF = { flags: 18, magic: 24, version: 28, psize: 48, freeRoot: 88, mainRoot: 136, lastPg: 144, txnid: 152 };
const HEADER_BYTES = 160;
const NO_PAGE = 0xffffffffffffffffn; // an empty database's root

interface MetaPage {
  version: number;
  psize: number;
  roots: bigint[];
  lastPg: bigint;
  txnid: bigint;
}

function readMeta(b: Buffer): MetaPage | string {
  if (b.length < HEADER_BYTES) return 'is cut short';
  if (!(b.readUInt16LE(OFF.flags) & P_META)) return 'is not marked as a meta page';
  if (b.readUInt32LE(OFF.magic) !== MAGIC) return 'has no LMDB magic number';
  return {
    version: b.readUInt32LE(OFF.version),
    psize: b.readUInt32LE(OFF.psize),
    roots: [b.readBigUInt64LE(OFF.freeRoot), b.readBigUInt64LE(OFF.mainRoot)],
    lastPg: b.readBigUInt64LE(OFF.lastPg),
    txnid: b.readBigUInt64LE(OFF.txnid),
  };
}

/**
 * What is wrong with an LMDB data file that LMDB itself could not survive opening: an empty list
 * when the meta pages are sound and the file holds every page they name.
 */
export function inspectLmdbFile(file: string): string[] {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    return [`${file}: cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`];
  }
  try {
    const size = fs.fstatSync(fd).size;
    const read = (pos: number) => {
      const b = Buffer.alloc(HEADER_BYTES);
      return b.subarray(0, fs.readSync(fd, b, 0, HEADER_BYTES, pos));
    };
    if (size === 0) return [`${file} is empty`];
    const m0 = readMeta(read(0));
    if (typeof m0 === 'string') return [`${file}: meta page 0 ${m0}`];
    const psize = m0.psize;
    if (psize < 512 || psize > 65536 || (psize & (psize - 1)) !== 0) return [`${file}: meta page 0 gives an impossible page size ${psize}`];
    if (size < 2 * psize) return [`${file} is truncated: ${size} bytes, less than its two meta pages (${2 * psize})`];
    const m1 = readMeta(read(psize));
    if (typeof m1 === 'string') return [`${file}: meta page 1 ${m1}`];
    const problems: string[] = [];
    if (m1.psize !== psize) problems.push(`${file}: the meta pages disagree on the page size (${psize}, ${m1.psize})`);
    if (m1.version !== m0.version) problems.push(`${file}: the meta pages disagree on the format version (${m0.version}, ${m1.version})`);
    const cur = m1.txnid > m0.txnid ? m1 : m0;
    const pages = BigInt(size) / BigInt(psize);
    // LMDB counts in the last page number pages a transaction allocated and freed again ("loose"
    // pages), which it never writes: an undamaged file may end a few pages short of it (seen: one
    // page, after the commits of a publish). A tail longer than that is damage.
    if (cur.lastPg + 1n > pages + LOOSE_TAIL_PAGES) {
      problems.push(
        `${file} is truncated: ${size} bytes, but its last page ${cur.lastPg} ends at byte ${(cur.lastPg + 1n) * BigInt(psize)}`,
      );
    }
    for (const [i, root] of cur.roots.entries()) {
      if (root !== NO_PAGE && (root < 2n || root > cur.lastPg))
        problems.push(`${file}: the ${i ? 'main' : 'free'} tree's root page ${root} is outside the file's pages 2..${cur.lastPg}`);
    }
    return problems;
  } finally {
    fs.closeSync(fd);
  }
}
