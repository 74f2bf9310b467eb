/**
 * The model of what a directory of files may show after a power cut, for the power-loss test of
 * isgfs (test/powerloss/isgfs.test.ts). It records every state the workload gave each file and
 * each name, with the time the call that made it returned, and the fsyncs that returned; after the
 * crash it judges what the new mount shows:
 *
 * - A state is *required* when an fsync (of the file, or fsyncdir of the directory for a name)
 *   returned after it was made and before the crash, or when the call that made it returned more
 *   than the writeback interval (plus a grace for the sync itself) before the crash. The newest
 *   required state of each file and name is its floor: nothing older may come back.
 * - The file may show its floor or any later state, including the one of a call still running at
 *   the crash; where later states differ, each byte may come from any of them (a power cut may keep
 *   some pages of a write and not others, as ext4 does), but the size is the size of one of them,
 *   and no byte is one that none of them held: never garbage, never zeros where no state had zeros.
 *   When the floor is the newest state, the file must read back bit for bit.
 * - A name may be bound to its floor or any later binding (a file, or nothing).
 *
 * After a crash the model is collapsed to what was observed (that is now what the disk holds).
 */

export interface FileState {
  data: Buffer;
  /** When the call that made this state returned (ms, the test's clock); Infinity while running or when it never returned. */
  done: number;
  /** What made it (for reports): "write 100+20", "truncate 5", "created". */
  what: string;
}

interface Binding {
  file: string | null;
  done: number;
}

interface FileModel {
  states: FileState[];
  /** Index of the newest state an fsync that returned has made durable, and when it returned. */
  synced: { idx: number; done: number }[];
}

interface NameModel {
  bindings: Binding[];
  synced: { idx: number; done: number }[];
}

/** What one name showed on the mount after the crash. */
export interface Observed {
  name: string;
  ino: number;
  nlink: number;
  /** The content, or the error reading it gave. */
  data?: Buffer;
  error?: string;
}

export interface Judgement {
  problems: string[];
  /** How many names had to read back exactly, and how many did. */
  exact: number;
  /** Names judged (present or absent). */
  names: number;
}

export class DirModel {
  private files = new Map<string, FileModel>();
  private names = new Map<string, NameModel>();
  private nextFile = 1;

  /** A new file (empty, its creation running); returns its id. Bind it to a name with `bind`. */
  newFile(initial = Buffer.alloc(0)): string {
    const id = `f${this.nextFile++}`;
    this.files.set(id, { states: [{ data: initial, done: Infinity, what: 'created' }], synced: [] });
    return id;
  }

  private file(id: string): FileModel {
    const f = this.files.get(id);
    if (!f) throw new Error(`model: no file ${id}`);
    return f;
  }

  private name(n: string): NameModel {
    let m = this.names.get(n);
    if (!m) {
      m = { bindings: [{ file: null, done: -Infinity }], synced: [] };
      this.names.set(n, m);
    }
    return m;
  }

  /** The file a name is bound to now (its newest binding). */
  boundTo(n: string): string | null {
    const m = this.names.get(n);
    return m ? m.bindings[m.bindings.length - 1].file : null;
  }

  /** Every name bound to a file now. */
  liveNames(): string[] {
    return [...this.names.keys()].filter((n) => this.boundTo(n) !== null);
  }

  namesOf(file: string): string[] {
    return this.liveNames().filter((n) => this.boundTo(n) === file);
  }

  /** The newest content of a file. */
  content(id: string): Buffer {
    const s = this.file(id).states;
    return s[s.length - 1].data;
  }

  /**
   * A change about to be made: the new state is recorded first (a call running at the crash may
   * have landed), and the returned function marks it done when the call returns.
   */
  change(id: string, next: (cur: Buffer) => Buffer, what = 'change'): () => void {
    const f = this.file(id);
    const st: FileState = { data: next(f.states[f.states.length - 1].data), done: Infinity, what };
    f.states.push(st);
    return () => {
      st.done = now();
    };
  }

  /** pwrite of data at offset. */
  write(id: string, offset: number, data: Buffer): () => void {
    return this.change(
      id,
      (cur) => {
        const out = Buffer.alloc(Math.max(cur.length, offset + data.length));
        cur.copy(out);
        data.copy(out, offset);
        return out;
      },
      `write ${offset}+${data.length}`,
    );
  }

  truncate(id: string, size: number): () => void {
    return this.change(
      id,
      (cur) => {
        const out = Buffer.alloc(size);
        cur.copy(out, 0, 0, Math.min(size, cur.length));
        return out;
      },
      `truncate ${size}`,
    );
  }

  /** Marks the creation of a file done (its first state). */
  created(id: string): void {
    this.file(id).states[0].done = now();
  }

  /** A name (re)bound: to a file, or to nothing (unlink); the returned function marks it done. */
  bind(n: string, file: string | null): () => void {
    const b: Binding = { file, done: Infinity };
    this.name(n).bindings.push(b);
    return () => {
      b.done = now();
    };
  }

  /** fsync(fd) of a file is about to be called: the returned function records that it returned. */
  fsync(id: string): () => void {
    const f = this.file(id);
    const idx = f.states.length - 1;
    // Its names are durable too (the metadata needed to reach it).
    const names = this.namesOf(id).map((n) => ({ m: this.name(n), idx: this.name(n).bindings.length - 1 }));
    return () => {
      const t = now();
      f.synced.push({ idx, done: t });
      for (const x of names) x.m.synced.push({ idx: x.idx, done: t });
    };
  }

  /** fsyncdir of the directory: every binding as it is now is durable when it returns. */
  fsyncDir(): () => void {
    const at = [...this.names.values()].map((m) => ({ m, idx: m.bindings.length - 1 }));
    return () => {
      const t = now();
      for (const x of at) x.m.synced.push({ idx: x.idx, done: t });
    };
  }

  /**
   * A call that makes everything written before it durable (`isg flush`, a clean unmount) is about
   * to start: the returned function records that it returned.
   */
  syncAll(): () => void {
    // Only what has returned: a call still running may reach the daemon after it started.
    const last = (a: { done: number }[]) => {
      let i = a.length - 1;
      while (i > 0 && a[i].done === Infinity) i--;
      return i;
    };
    const files = [...this.files.values()].map((f) => ({ f, idx: last(f.states) }));
    const names = [...this.names.values()].map((m) => ({ m, idx: last(m.bindings) }));
    return () => {
      const t = now();
      for (const x of files) x.f.synced.push({ idx: x.idx, done: t });
      for (const x of names) x.m.synced.push({ idx: x.idx, done: t });
    };
  }

  /** The index of the floor: the newest state required at a crash at `crashAt`. */
  private static floor(items: { done: number }[], synced: { idx: number; done: number }[], crashAt: number, horizon: number): number {
    let floor = 0;
    for (let i = 0; i < items.length; i++) if (items[i].done <= horizon) floor = i;
    for (const s of synced) if (s.done <= crashAt && s.idx > floor) floor = s.idx;
    return floor;
  }

  /**
   * Judges what the mount shows after a crash at `crashAt` (ms, the test's clock), with data
   * required durable when written more than `writebackMs` before it. Every observed name must be
   * known to the model.
   */
  judge(observed: Observed[], crashAt: number, writebackMs: number): Judgement {
    const horizon = crashAt - writebackMs;
    const problems: string[] = [];
    let exact = 0;
    const seen = new Map(observed.map((o) => [o.name, o]));
    const allNames = new Set([...this.names.keys(), ...seen.keys()]);
    // Which file each observed inode can be: the candidates common to all its names.
    const byIno = new Map<number, Observed[]>();
    for (const o of observed) byIno.set(o.ino, [...(byIno.get(o.ino) ?? []), o]);
    // Each inode's possible files (those whose model its content fits), then one file per inode:
    // the same content may fit two files (a copy, a name rebound to a copy of its old file).
    const fits: { ino: number; names: string; files: string[]; exact: Set<string> }[] = [];
    for (const [ino, group] of byIno) {
      const candidates = group.map((o) => {
        const m = this.names.get(o.name);
        if (!m) return new Set<string>();
        const fl = DirModel.floor(m.bindings, m.synced, crashAt, horizon);
        return new Set(m.bindings.slice(fl).flatMap((b) => (b.file ? [b.file] : [])));
      });
      const common = [...candidates[0]].filter((f) => candidates.every((c) => c.has(f)));
      const names = group.map((o) => o.name).join(', ');
      if (!common.length) {
        const unknown = group.filter((o) => !this.names.has(o.name)).map((o) => o.name);
        problems.push(
          unknown.length
            ? `name(s) ${unknown.join(', ')} never created, present after the crash`
            : `${names}: bound to a file it may not be bound to now (or names that may not share an inode do)`,
        );
        continue;
      }
      if (group.length !== group[0].nlink) problems.push(`${names} (inode ${ino}): nlink ${group[0].nlink}, but ${group.length} names`);
      const err = group.find((o) => o.error);
      if (err) {
        problems.push(`${err.name}: unreadable after the crash: ${err.error}`);
        continue;
      }
      const verdicts = common.map((f) => ({ f, v: this.judgeContent(f, group[0].data!, crashAt, horizon) }));
      const ok = verdicts.filter((x) => x.v.ok);
      if (!ok.length) {
        problems.push(`${names}: ${verdicts.map((x) => `as ${x.f}: ${x.v.why}`).join('; ')}`);
        continue;
      }
      fits.push({ ino, names, files: ok.map((x) => x.f), exact: new Set(ok.filter((x) => x.v.exact).map((x) => x.f)) });
    }
    const fileOfIno = assign(fits);
    if (!fileOfIno) {
      problems.push(
        `two inodes can only be the same file: ${fits.map((x) => `${x.names} (inode ${x.ino}) as ${x.files.join('|')}`).join('; ')}`,
      );
    } else {
      for (const x of fits) if (x.exact.has(fileOfIno.get(x.ino)!)) exact++;
    }

    for (const n of allNames) {
      if (seen.has(n)) continue;
      const m = this.names.get(n)!;
      const fl = DirModel.floor(m.bindings, m.synced, crashAt, horizon);
      if (!m.bindings.slice(fl).some((b) => b.file === null)) {
        const f = m.bindings[fl].file;
        const why = m.synced.some((s) => s.idx >= fl && s.done <= crashAt) ? 'fsynced' : `bound more than ${writebackMs} ms before`;
        problems.push(`${n}: missing after the crash (${why}, as ${f})`);
      }
    }
    return { problems, exact, names: allNames.size };
  }

  /** Whether `data` is a possible content of file `id` at a crash; exact: it had to be just that. */
  private judgeContent(id: string, data: Buffer, crashAt: number, horizon: number): { ok: boolean; exact: boolean; why?: string } {
    const f = this.file(id);
    const fl = DirModel.floor(f.states, f.synced, crashAt, horizon);
    const allowed = f.states.slice(fl).map((s) => s.data);
    const must = fl === f.states.length - 1;
    if (allowed.some((s) => s.equals(data))) return { ok: true, exact: must };
    const why = (w: string) => ({
      ok: false,
      exact: must,
      why: `${w} (${must ? 'had to read back exactly: ' : ''}${allowed.length} possible state(s), sizes ${[...new Set(allowed.map((s) => s.length))].join('/')}; ${describeFloor(f, fl, crashAt, horizon)})`,
    });
    if (must) return why(`differs from its required content ${diffText(allowed[0], data)}`);
    if (!allowed.some((s) => s.length === data.length)) return why(`size ${data.length} is none of its possible sizes`);
    // Byte by byte: each byte held by one of the allowed states at that offset.
    let badFrom = -1;
    let zeros = true;
    const runs: string[] = [];
    for (let i = 0; i <= data.length; i++) {
      const good = i === data.length || allowed.some((s) => s.length > i && s[i] === data[i]);
      if (!good) {
        if (badFrom < 0) {
          badFrom = i;
          zeros = true;
        }
        if (data[i] !== 0) zeros = false;
      } else if (badFrom >= 0) {
        runs.push(`[${badFrom}, ${i})${zeros ? ' zeros' : ''}`);
        badFrom = -1;
        if (runs.length >= 4) break;
      }
    }
    if (!runs.length) return { ok: true, exact: false }; // a mix of its possible states, byte by byte
    return why(`shows bytes never written to it at ${runs.join(', ')}`);
  }

  /** After the judgement: what was observed is what the disk holds; the history starts again from it. */
  collapse(observed: Observed[]): void {
    const files = new Map<string, FileModel>();
    const names = new Map<string, NameModel>();
    const byIno = new Map<number, string>();
    for (const o of observed) {
      let id = byIno.get(o.ino);
      if (!id) {
        id = `f${this.nextFile++}`;
        byIno.set(o.ino, id);
        files.set(id, { states: [{ data: o.data ?? Buffer.alloc(0), done: -Infinity, what: 'as found after the crash' }], synced: [] });
      }
      names.set(o.name, { bindings: [{ file: id, done: -Infinity }], synced: [] });
    }
    this.files = files;
    this.names = names;
  }

  /** Forgets everything (a fresh repository). */
  reset(): void {
    this.files.clear();
    this.names.clear();
  }
}

/** One file per inode, each from its list (a small matching, by backtracking); null when there is none. */
function assign(fits: { ino: number; files: string[] }[]): Map<number, string> | null {
  const order = [...fits].sort((a, b) => a.files.length - b.files.length);
  const used = new Set<string>();
  const out = new Map<number, string>();
  const go = (i: number): boolean => {
    if (i === order.length) return true;
    for (const f of order[i].files) {
      if (used.has(f)) continue;
      used.add(f);
      out.set(order[i].ino, f);
      if (go(i + 1)) return true;
      used.delete(f);
    }
    return false;
  };
  return go(0) ? out : null;
}

function describeFloor(f: FileModel, fl: number, crashAt: number, horizon: number): string {
  const s = f.states[fl];
  const sync = f.synced.filter((x) => x.idx === fl && x.done <= crashAt);
  const hist = f.states
    .map(
      (x, i) => `${i}: ${x.what} -> ${x.data.length} B${x.done === Infinity ? ' (running)' : ` ${Math.round(crashAt - x.done)} ms before`}`,
    )
    .join(', ');
  const parts = [`floor: state ${fl} [${hist}]`];
  if (sync.length) parts.push(`fsynced ${Math.round(crashAt - sync[0].done)} ms before the crash`);
  if (s.done <= horizon) parts.push(`written ${Math.round(crashAt - s.done)} ms before the crash`);
  return parts.join(', ');
}

function diffText(want: Buffer, got: Buffer): string {
  if (want.length !== got.length) {
    const z = got.length > want.length && got.subarray(want.length).every((b) => b === 0);
    return `(size ${got.length}, want ${want.length}${z ? ', the tail is zeros' : ''})`;
  }
  let i = 0;
  while (i < want.length && want[i] === got[i]) i++;
  let j = i;
  let zeros = true;
  while (j < want.length && want[j] !== got[j]) {
    if (got[j] !== 0) zeros = false;
    j++;
  }
  return `(first difference at byte ${i}, ${j - i} bytes${zeros ? ' of zeros' : ''})`;
}

const t0 = Date.now();
/** The test's clock: ms since the module was loaded. */
export function now(): number {
  return Date.now() - t0;
}
