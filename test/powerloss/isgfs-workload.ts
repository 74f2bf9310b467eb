/**
 * The workload of the isgfs power-loss test: a few workers, each owning its own names in the root
 * of the mount, doing seeded random file operations (create, write, overwrite, append, truncate,
 * fsync, rename over, unlink, hard links, a copy for dedup, a bigger file flushed behind its close,
 * fsyncdir), recording each change in the model (test/powerloss/isgfs-model.ts) before the call
 * and marking it done when it returns; and a logger that keeps one file open, appending, then
 * idle. The calls of one worker run one after another; the workers run concurrently. `halt` stops
 * them at the next call (the crash makes the calls in flight fail; they are left as "maybe").
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { prng } from '../helpers/tmp';
import { DirModel } from './isgfs-model';

const fsp = fs.promises;

type Rng = ReturnType<typeof prng>;

export interface WorkloadOptions {
  workers: number;
  /** Keep a log file open, appending for this long (ms), then holding it open idle; 0: none. */
  logFor: number;
  /** The workers pause from `burst` ms after the start until `quietUntil` (ms): the long epochs. */
  burst?: number;
  quietUntil?: number;
  /** Called when an fsync (or fsyncdir) returned. */
  onFsync?: () => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Workload {
  private halted = false;
  private readonly runs: Promise<void>[] = [];
  private readonly started = Date.now();
  /** Operations that returned, by name. */
  readonly counts: Record<string, number> = {};
  /** Errors of calls that failed before the crash (a bug, reported by the test). */
  readonly errors: string[] = [];

  constructor(
    private readonly mnt: string,
    private readonly model: DirModel,
    private readonly seed: number,
    private readonly o: WorkloadOptions,
  ) {}

  start(): void {
    for (let k = 0; k < this.o.workers; k++) this.runs.push(this.worker(k, prng(this.seed * 7 + k + 1)));
    if (this.o.logFor > 0) this.runs.push(this.logger(prng(this.seed * 7 + 99)));
  }

  /** No new call starts; resolves when every worker has returned (calls in flight finish or fail). */
  async halt(): Promise<void> {
    this.halted = true;
    await Promise.all(this.runs);
  }

  /**
   * The path of a name on the mount; throws once halted, so that a worker between two calls of an
   * operation never sends the second to the directory under a mount that is gone (or to the next).
   */
  private P(name: string): string {
    if (this.halted) throw new Error('halted');
    return path.join(this.mnt, name);
  }

  private quiet(): boolean {
    const t = Date.now() - this.started;
    return this.o.burst !== undefined && t > this.o.burst && t < (this.o.quietUntil ?? 0);
  }

  private count(op: string): void {
    this.counts[op] = (this.counts[op] ?? 0) + 1;
  }

  private async worker(k: number, r: Rng): Promise<void> {
    const names = Array.from({ length: 6 }, (_, i) => `w${k}-${i}`);
    const ops: [number, string][] = [
      [3, 'create'],
      [3, 'overwrite'],
      [2, 'append'],
      [1, 'truncate'],
      [2, 'rename-over'],
      [1.5, 'unlink'],
      [1, 'link'],
      [0.4, 'big'],
      [1, 'fsync'],
      [0.5, 'fsyncdir'],
      [1, 'copy'],
    ];
    const total = ops.reduce((a, [w]) => a + w, 0);
    while (!this.halted) {
      if (this.quiet()) {
        await sleep(50);
        continue;
      }
      let x = (r.int(1_000_000) / 1_000_000) * total;
      const op = ops.find(([w]) => (x -= w) < 0)?.[1] ?? 'create';
      try {
        const did = await this.run(op, k, names, r);
        if (did) this.count(op);
      } catch (e) {
        if (!this.halted) this.errors.push(`worker ${k} ${op}: ${(e as Error).message}`);
        return;
      }
      await sleep(r.int(40));
    }
  }

  /** One operation; false when it did not apply (no suitable name). */
  private async run(op: string, k: number, names: string[], r: Rng): Promise<boolean> {
    const m = this.model;
    const bound = names.filter((n) => m.boundTo(n));
    const free = names.filter((n) => !m.boundTo(n));
    const pick = (a: string[]) => a[r.int(a.length)];
    const size = () => [0, 1, 100, 4096, 5000, 20_000, 70_000, 150_000][r.int(8)] + r.int(3000);
    const wantSync = r.int(10) < 3;
    switch (op) {
      case 'create':
        if (!free.length) return false;
        await this.create(pick(free), r.bytes(size()), wantSync);
        return true;
      case 'copy': {
        if (!free.length || !bound.length) return false;
        await this.create(pick(free), Buffer.from(m.content(m.boundTo(pick(bound))!)), wantSync);
        return true;
      }
      case 'overwrite':
      case 'append':
      case 'truncate': {
        if (!bound.length) return false;
        const id = m.boundTo(pick(bound))!;
        const name = m.namesOf(id)[0];
        const cur = m.content(id).length;
        const fh = await fsp.open(this.P(name), 'r+');
        try {
          if (op === 'truncate') {
            const to = r.int(cur + 20_000);
            const done = m.truncate(id, to);
            await fh.truncate(to);
            done();
          } else {
            const at = op === 'append' ? cur : r.int(cur + 1);
            await this.writeAt(fh, id, at, r.bytes(1 + r.int(op === 'append' ? 20_000 : 40_000)));
          }
          if (wantSync) await this.fsync(fh, id);
        } finally {
          await fh.close();
        }
        return true;
      }
      case 'rename-over': {
        if (!bound.length) return false;
        const tmp = `w${k}-tmp`;
        if (m.boundTo(tmp)) await this.unlink(tmp);
        const target = pick(bound);
        const id = await this.create(tmp, r.bytes(size()), r.int(2) === 0);
        const a = m.bind(target, id);
        const b = m.bind(tmp, null);
        await fsp.rename(this.P(tmp), this.P(target));
        a();
        b();
        if (r.int(10) < 3) await this.fsyncDir();
        return true;
      }
      case 'unlink':
        if (!bound.length) return false;
        await this.unlink(pick(bound));
        if (r.int(10) < 3) await this.fsyncDir();
        return true;
      case 'link': {
        if (!bound.length || !free.length) return false;
        const from = pick(bound);
        const to = pick(free);
        const done = m.bind(to, m.boundTo(from));
        await fsp.link(this.P(from), this.P(to));
        done();
        return true;
      }
      case 'big': {
        // 1 to 3 MiB, written in 256 KiB calls; most often closed without fsync: its blocks are
        // made behind the close, in the background.
        const name = `w${k}-big`;
        const data = r.bytes(1024 * 1024 + r.int(2 * 1024 * 1024));
        let id = m.boundTo(name);
        let fh: fs.promises.FileHandle;
        if (id) {
          const done = m.truncate(id, 0);
          fh = await fsp.open(this.P(name), 'w'); // O_TRUNC
          done();
        } else ({ id, fh } = await this.createNamed(name));
        try {
          for (let at = 0; at < data.length; at += 256 * 1024) await this.writeAt(fh, id, at, data.subarray(at, at + 256 * 1024));
          if (r.int(10) < 2) await this.fsync(fh, id);
        } finally {
          await fh.close();
        }
        return true;
      }
      case 'fsync': {
        if (!bound.length) return false;
        const id = m.boundTo(pick(bound))!;
        const fh = await fsp.open(this.P(m.namesOf(id)[0]), 'r');
        try {
          await this.fsync(fh, id);
        } finally {
          await fh.close();
        }
        return true;
      }
      case 'fsyncdir':
        await this.fsyncDir();
        return true;
    }
    return false;
  }

  /** open(O_CREAT | O_EXCL) of a new file under name, recorded in the model. */
  private async createNamed(name: string): Promise<{ id: string; fh: fs.promises.FileHandle }> {
    const id = this.model.newFile();
    const done = this.model.bind(name, id);
    const fh = await fsp.open(this.P(name), 'wx');
    this.model.created(id);
    done();
    return { id, fh };
  }

  private async create(name: string, data: Buffer, sync: boolean): Promise<string> {
    const { id, fh } = await this.createNamed(name);
    try {
      if (data.length) await this.writeAt(fh, id, 0, data);
      if (sync) await this.fsync(fh, id);
    } finally {
      await fh.close();
    }
    return id;
  }

  private async unlink(name: string): Promise<void> {
    const done = this.model.bind(name, null);
    await fsp.unlink(this.P(name));
    done();
  }

  private async writeAt(fh: fs.promises.FileHandle, id: string, at: number, data: Buffer): Promise<void> {
    const done = this.model.write(id, at, data);
    const { bytesWritten } = await fh.write(data, 0, data.length, at);
    if (bytesWritten !== data.length) throw new Error(`short write: ${bytesWritten} of ${data.length}`);
    done();
  }

  private async fsync(fh: fs.promises.FileHandle, id: string): Promise<void> {
    const done = this.model.fsync(id);
    await fh.sync();
    done();
    this.o.onFsync?.();
  }

  private async fsyncDir(): Promise<void> {
    const done = this.model.fsyncDir();
    const fh = await fsp.open(this.P('.'), 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    done();
    this.o.onFsync?.();
  }

  /** One file kept open: appends of 100 B to 4 KiB every 150 ms for logFor ms, then open and idle. */
  private async logger(r: Rng): Promise<void> {
    const m = this.model;
    const name = 'log';
    try {
      let id = m.boundTo(name);
      let fh: fs.promises.FileHandle;
      if (id) fh = await fsp.open(this.P(name), 'r+');
      else ({ id, fh } = await this.createNamed(name));
      try {
        const until = Date.now() + this.o.logFor;
        while (!this.halted && Date.now() < until) {
          await this.writeAt(fh, id, m.content(id).length, r.bytes(100 + r.int(4000)));
          this.count('log-append');
          await sleep(150);
        }
        while (!this.halted) await sleep(50);
      } finally {
        await fh.close().catch(() => undefined);
      }
    } catch (e) {
      if (!this.halted) this.errors.push(`logger: ${(e as Error).message}`);
    }
  }
}
