/**
 * The `isg` command line. Every failure is one clear line on stderr and a non-zero exit.
 */
import './uv-threadpool'; // first: see there
import { Command, Option } from 'commander';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initRepository, isRepository, readPasswordFile, RepoError, repoPaths } from '../src/repo/repository';
import { embeddedBackends, parseEc, parseSize } from '../src/repo/format';
import { parseBackendSpec } from '../src/backend/registry';
import { parseDuration } from '../src/util/duration';
import type { BackendSpec } from '../src/backend/spec';
import { callControl, ControlUnreachableError } from '../src/repo/control';
import { readLock } from '../src/repo/repository';
import type { UploadProgress } from '../src/pack/packer';
import { formatStatus, repoStatus } from '../src/repo/status';
import { CloneResult, Session } from '../src/repo/session';
import { checkRepository } from '../src/repair/check';
import { inspectLmdbFile } from '../src/meta/header';
import { log, setLogLevel } from '../src/log';
import { mountpointsOf, mountRepository, unmountByPath } from '../mount/daemon';
import { connectRepository } from '../src/repo/connect';
import type { RecoveryProgress } from '../src/snapshot/connect';
import { runSnapshotOp, SnapshotInfo, SnapshotOp } from '../src/repo/snapshot-ops';
import type { TreeDiff } from '../src/snapshot/snapshots';
import { resolveTreeRef, splitTreeArg } from '../src/snapshot/refs';
import { restoreTreeTo, RestoreProgress } from '../src/snapshot/restore';
import type { RestoredFileSpec } from '../src/native/addon';

const program = new Command();
program.name('isg').description('isgfs: a FUSE filesystem on a deduplicated, encrypted block store').showHelpAfterError();

function fail(e: unknown): never {
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`isg: ${msg}\n`);
  if (process.env.ISG_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  process.exit(1);
}

function action<A extends unknown[]>(fn: (...args: A) => Promise<void>) {
  return (...args: A) => {
    fn(...args).catch(fail);
  };
}

function checkDataDirReadable(dir: string): void {
  try {
    fs.accessSync(dir, fs.constants.R_OK | fs.constants.W_OK | fs.constants.X_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return; // created on init
    throw new RepoError(`data directory ${dir} is not usable: ${code}`);
  }
}

const NO_PASSWORD_NOTE =
  'no password: the master key is stored in plain in the data directory (key); anyone who can read it can read ' +
  'the repository. To protect it, create the repository with --password-file <file> (Argon2id-wrapped key).\n';

program
  .command('init')
  .description('create a repository in <data-dir>')
  .argument('<data-dir>')
  .option('--password-file <file>', 'wrap the master key with a password read from this file (Argon2id)')
  .option(
    '--backend <NAME=SPEC>',
    'a storage backend, e.g. disk1=local:/mnt/a/isg or s3a=s3:http://host:9000/bucket (repeatable; default: six local backends in the data directory)',
    (v: string, prev: string[]) => [...prev, v],
    [] as string[],
  )
  .option('--ec <K+M>', 'erasure coding: K data + M parity shards per pack (default 4+2)')
  .action(
    action(async (dataDir: string, o: { passwordFile?: string; backend: string[]; ec?: string }) => {
      checkDataDirReadable(dataDir);
      const password = await readPasswordFile(o.passwordFile);
      const backends: BackendSpec[] = o.backend.map(parseBackendSpec);
      const ec = o.ec ? parseEc(o.ec) : undefined;
      const config = await initRepository(dataDir, {
        password,
        configure: (c) => {
          if (ec) Object.assign(c.storage.ec, ec);
          c.storage.backends = backends.length ? backends : embeddedBackends(c.storage.ec.k + c.storage.ec.m);
        },
      });
      process.stdout.write(`initialised repository ${config.id} in ${path.resolve(dataDir)}${password ? ' (password-protected)' : ''}\n`);
      if (!password) process.stdout.write(NO_PASSWORD_NOTE);
    }),
  );

program
  .command('connect')
  .description('make <data-dir> a new data directory of the repository on these backends, from the backends alone')
  .argument('<data-dir>', 'a new or empty directory')
  .option(
    '--backend <NAME=SPEC>',
    'a backend of the repository (repeatable; at least k+m: give an empty directory or bucket for a lost one)',
    (v: string, prev: string[]) => [...prev, v],
    [] as string[],
  )
  .option('--password-file <file>', 'the repository password')
  .option('--accept-rollback', 'take the newest head that chains even when a backend holds a newer signed one')
  .option('--take-over', 'displace the writer that holds the lease (use only when that writer is gone)')
  .option('--json', 'the result as one JSON object on one line')
  .action(
    action(
      async (
        dataDir: string,
        o: { backend: string[]; passwordFile?: string; acceptRollback?: boolean; takeOver?: boolean; json?: boolean },
      ) => {
        const password = await readPasswordFile(o.passwordFile);
        const bar = connectProgress(!o.json);
        let r;
        try {
          r = await connectRepository({
            dataDir,
            specs: o.backend.map(parseBackendSpec),
            password,
            acceptRollback: !!o.acceptRollback,
            takeOver: !!o.takeOver,
            onProgress: bar.update,
          });
        } finally {
          bar.end();
        }
        if (o.json) {
          process.stdout.write(JSON.stringify(r) + '\n');
          return;
        }
        for (const h of r.ignoredHeads) process.stderr.write(`isg: ignored head ${h.key} on ${h.backend}: ${h.reason}\n`);
        for (const u of r.unreachable) process.stderr.write(`isg: backend ${u.backend} did not answer: ${u.error}\n`);
        for (const p of r.problems) process.stderr.write(`isg: ${p}\n`);
        if (r.indexProblem) process.stderr.write(`isg: index rebuilt from the pack trailers: ${r.indexProblem}\n`);
        if (r.rollback) process.stderr.write(`isg: accepted: ${r.rollback}\n`);
        process.stdout.write(
          `connected ${path.resolve(dataDir)} to repository ${r.repository}: ` +
            (r.head ? `head ${r.head.seq} (${r.head.time} by ${r.head.host})` : 'no head published yet (empty filesystem)') +
            `, ${r.packs} packs, ${r.blocks} blocks (index from ${r.index === 'objects' ? 'index objects' : 'pack trailers'})` +
            `${r.snapshots ? `, ${r.snapshots} snapshots` : ''}\n`,
        );
      },
    ),
  );

program
  .command('mount')
  .description('mount the repository in <data-dir> on <mountpoint>; stays in the foreground until umount, SIGINT or SIGTERM')
  .argument('<data-dir>')
  .argument('<mountpoint>')
  .option('--cache-size <size>', 'memory LRU of plaintext blocks (K/M/G suffixes)')
  .option('--cache-dir-size <size>', 'size limit of the local block tier on disk (blocks not yet uploaded may exceed it)')
  .option('--password-file <file>', 'password for a password-protected repository (or for a new one)')
  .option('--writeback <duration>', 'data written and not fsynced is durable within this time, open files too (e.g. 5s, 500ms)', '5s')
  .option('--write-buffer <size>', 'memory for written data not yet committed, over all files; writers wait when it is full', '256M')
  .option('--read-only', 'mount read-only')
  .option(
    '--snapshot <ref>',
    'mount the published tree <ref> (latest, or a snapshot id) read-only; also while the live filesystem is mounted',
  )
  .option('--take-over', 'take the writer lease from another machine that holds it (use only when that writer is gone)')
  .option('--accept-rollback', "open even when the backends' newest head is older than one this data directory saw (and take their state)")
  .option('--publish-interval <duration>', 'a change is published to the backends (a new signed head) at most this long after it', '60s')
  .option('--allow-other', 'let other users access the mount')
  .addOption(new Option('--log-level <level>', 'error, warn, info, verbose, debug').default('info'))
  .option(
    '-o, --options <opts>',
    'extra FUSE mount options, comma-separated (repeatable)',
    (v: string, prev: string[]) => [...prev, ...v.split(',').filter(Boolean)],
    [] as string[],
  )
  .action(
    action(
      async (
        dataDir: string,
        mountpoint: string,
        o: {
          cacheSize?: string;
          cacheDirSize?: string;
          passwordFile?: string;
          writeback: string;
          writeBuffer: string;
          readOnly?: boolean;
          snapshot?: string;
          takeOver?: boolean;
          acceptRollback?: boolean;
          publishInterval: string;
          allowOther?: boolean;
          logLevel: string;
          options: string[];
        },
      ) => {
        setLogLevel(o.logLevel);
        checkDataDirReadable(dataDir);
        const password = await readPasswordFile(o.passwordFile);
        const cacheBytes = o.cacheSize !== undefined ? parseSize(o.cacheSize) : undefined;
        const cacheDirBytes = o.cacheDirSize !== undefined ? parseSize(o.cacheDirSize) : undefined;
        const writebackMs = parseDuration(o.writeback, '--writeback');
        const writeBufferBytes = parseSize(o.writeBuffer, '--write-buffer');
        if (writebackMs < 10) throw new RepoError('--writeback: at least 10ms');
        const publishIntervalMs = parseDuration(o.publishInterval, '--publish-interval');
        if (publishIntervalMs < 100) throw new RepoError('--publish-interval: at least 100ms');
        if (writeBufferBytes < 1024 * 1024) throw new RepoError('--write-buffer: at least 1M');
        if (!isRepository(dataDir)) {
          if (o.snapshot !== undefined) throw new RepoError(`${dataDir} holds no repository`);
          if (o.readOnly) throw new RepoError(`${dataDir} holds no repository (a read-only mount cannot create one)`);
          await initRepository(dataDir, { password });
          log.info(`initialised a new repository in ${path.resolve(dataDir)}`);
          if (!password) log.info(NO_PASSWORD_NOTE.trim());
        }
        const code = await mountRepository({
          dataDir,
          mountpoint,
          password,
          cacheBytes,
          cacheDirBytes,
          writebackMs,
          writeBufferBytes,
          readOnly: !!o.readOnly || o.snapshot !== undefined,
          snapshot: o.snapshot,
          takeOver: !!o.takeOver,
          acceptRollback: !!o.acceptRollback,
          publishIntervalMs,
          allowOther: !!o.allowOther,
          fuseOptions: o.options,
        });
        process.exit(code);
      },
    ),
  );

program
  .command('umount')
  .alias('unmount')
  .description('unmount; returns when the daemon has flushed, committed and exited')
  .argument('<mountpoint>')
  .action(
    action(async (mountpoint: string) => {
      await unmountByPath(mountpoint);
    }),
  );

program
  .command('status')
  .description('what the repository holds (also while mounted)')
  .argument('<data-dir>')
  .option('--json', 'one JSON object on one line')
  .option('--password-file <file>', 'password for a password-protected repository (its metadata is sealed)')
  .action(
    action(async (dataDir: string, o: { json?: boolean; passwordFile?: string }) => {
      if (!isRepository(dataDir)) throw new RepoError(`${dataDir} holds no repository`);
      const s = await repoStatus(dataDir, undefined, await readPasswordFile(o.passwordFile));
      if (!s.mounted) {
        // Only a read-write daemon holds the lock; a read-only mount is found by its source.
        const [mountpoint] = mountpointsOf(dataDir);
        if (mountpoint) Object.assign(s, { mounted: true, mountpoint });
      }
      if (o.json) {
        process.stdout.write(JSON.stringify(s) + '\n');
        return;
      }
      process.stdout.write(formatStatus(s, repoPaths(dataDir).root));
    }),
  );

/** For a command that asks the daemon when mounted: checks dataDir holds a repository; its password when not mounted. */
async function passwordUnlessMounted(dataDir: string, passwordFile: string | undefined): Promise<string | undefined> {
  if (!isRepository(dataDir)) throw new RepoError(`${dataDir} holds no repository`);
  return readLock(dataDir) ? undefined : readPasswordFile(passwordFile);
}

/** Runs a command in the mounted daemon, or opens the repository itself when it is not mounted. */
async function inDaemonOrHere<T>(
  dataDir: string,
  password: string | undefined,
  cmd: 'flush' | 'cache-drop' | 'snapshot' | 'clone',
  here: (s: Session) => Promise<T>,
  onProgress?: (p: unknown) => void,
  args?: unknown,
): Promise<unknown> {
  const holder = readLock(dataDir);
  if (holder) {
    return callControl(dataDir, cmd, onProgress, args).catch((e: unknown) => {
      if (!(e instanceof ControlUnreachableError)) throw e;
      throw new RepoError(
        `${repoPaths(dataDir).root} is in use by pid ${holder.pid}${holder.mountpoint ? ` (mounted on ${holder.mountpoint})` : ''}, ` +
          `but that daemon cannot be reached: ${e.message}; its log says why`,
      );
    });
  }
  const session = await Session.open(dataDir, { password });
  try {
    return await here(session);
  } finally {
    await session.close();
  }
}

function progressBar(): { update: (p: unknown) => void; end: () => void } {
  if (!process.stderr.isTTY) return { update: () => undefined, end: () => undefined };
  let total = 0;
  return {
    update: (p: unknown) => {
      const { pendingBytes } = p as UploadProgress;
      total = Math.max(total, pendingBytes);
      const done = total ? (total - pendingBytes) / total : 1;
      const width = 30;
      const bar = '#'.repeat(Math.round(done * width)).padEnd(width, '.');
      process.stderr.write(`\r[${bar}] ${(done * 100).toFixed(0)}%  ${(pendingBytes / 1048576).toFixed(1)} MiB to upload `);
    },
    end: () => process.stderr.write('\n'),
  };
}

/** The stages of `isg connect` on one line of a terminal's stderr. */
function connectProgress(enabled: boolean): { update: (p: RecoveryProgress) => void; end: () => void } {
  if (!enabled || !process.stderr.isTTY) return { update: () => undefined, end: () => undefined };
  let shown = false;
  const label = { packs: 'finding packs', index: 'reading the index', trailers: 'reading pack trailers', tree: 'restoring the tree' };
  return {
    update: (p) => {
      shown = true;
      const width = 30;
      const frac = p.total ? p.done / p.total : undefined;
      const bar = frac === undefined ? '' : `[${'#'.repeat(Math.round(frac * width)).padEnd(width, '.')}] `;
      process.stderr.write(`\r${bar}${label[p.stage]}: ${p.done}${p.total !== undefined ? ` of ${p.total}` : ''}   `);
    },
    end: () => {
      if (shown) process.stderr.write('\n');
    },
  };
}

program
  .command('flush')
  .description('returns when everything written is stored on the backends (asks the running daemon when mounted)')
  .argument('<data-dir>')
  .option('--password-file <file>', 'password for a password-protected repository (when not mounted)')
  .action(
    action(async (dataDir: string, o: { passwordFile?: string }) => {
      const password = await passwordUnlessMounted(dataDir, o.passwordFile);
      const bar = progressBar();
      try {
        await inDaemonOrHere(dataDir, password, 'flush', (s) => s.flush(bar.update), bar.update);
      } finally {
        bar.end();
      }
      process.stdout.write('flushed: everything written is on the backends\n');
    }),
  );

program
  .command('clone')
  .description(
    'graft the subtree <ref>[:<path>] of a published tree (latest, or a snapshot id) at <dest> in the live filesystem, ' +
      'sharing its blocks (no data is copied); <dest> is a path under the mountpoint while mounted, else a path from the filesystem root',
  )
  .argument('<data-dir>')
  .argument('<tree>', '<ref>[:<path>]')
  .argument('<dest>')
  .option('--password-file <file>', 'password for a password-protected repository (when not mounted)')
  .option('--json', 'one JSON object on one line: entries, objects read, ms')
  .action(
    action(async (dataDir: string, tree: string, dest: string, o: { passwordFile?: string; json?: boolean }) => {
      const password = await passwordUnlessMounted(dataDir, o.passwordFile);
      const fsPath = pathInFilesystem(dataDir, dest);
      const r = (await inDaemonOrHere(dataDir, password, 'clone', (s) => s.clone(tree, fsPath), undefined, {
        tree,
        dest: fsPath,
      })) as CloneResult;
      process.stdout.write(
        o.json ? JSON.stringify(r) + '\n' : `cloned ${tree} to ${dest}: ${r.entries} entries in ${r.ms} ms, no data copied\n`,
      );
    }),
  );

/**
 * A destination of `isg clone` as a path from the filesystem's root: while mounted, a path under
 * the mountpoint (absolute or relative to the working directory); else one from the root.
 */
function pathInFilesystem(dataDir: string, dest: string): string {
  const mountpoint = readLock(dataDir)?.mountpoint;
  if (!mountpoint) {
    if (!dest.startsWith('/'))
      throw new RepoError(`${dest}: not mounted, the destination is a path from the filesystem's root (starting with /)`);
    return path.posix.normalize(dest);
  }
  const rel = path.relative(mountpoint, path.resolve(dest));
  if (!rel || rel.startsWith('..') || path.isAbsolute(rel))
    throw new RepoError(`${dest} is not inside the filesystem mounted on ${mountpoint}`);
  return '/' + rel;
}

const cache = program.command('cache').description('the local tier');
cache
  .command('drop')
  .description('evict every block that is safe on the backends (mounted or not)')
  .argument('<data-dir>')
  .option('--password-file <file>', 'password for a password-protected repository (when not mounted)')
  .action(
    action(async (dataDir: string, o: { passwordFile?: string }) => {
      const password = await passwordUnlessMounted(dataDir, o.passwordFile);
      const freed = await inDaemonOrHere(dataDir, password, 'cache-drop', (s) => s.cacheDrop());
      process.stdout.write(`dropped ${((freed as number) / 1048576).toFixed(1)} MiB from the local tier\n`);
    }),
  );

/** A snapshot operation in the mounted daemon, or on a Session of this process. */
async function snapshotOp(dataDir: string, passwordFile: string | undefined, op: SnapshotOp): Promise<unknown> {
  const password = await passwordUnlessMounted(dataDir, passwordFile);
  return inDaemonOrHere(dataDir, password, 'snapshot', (s) => runSnapshotOp(s, op), undefined, op);
}

const snapshot = program.command('snapshot').description('point-in-time views of the whole filesystem, kept on the backends');
snapshot
  .command('create')
  .description('take a snapshot (writes acknowledged before the call are in it); prints its id')
  .argument('<data-dir>')
  .option('--tag <tag>', 'a label kept with the snapshot')
  .option('--json', 'the snapshot as one JSON object on one line')
  .option('--password-file <file>', 'password for a password-protected repository (when not mounted)')
  .action(
    action(async (dataDir: string, o: { tag?: string; json?: boolean; passwordFile?: string }) => {
      const r = (await snapshotOp(dataDir, o.passwordFile, {
        op: 'create',
        ...(o.tag !== undefined ? { tag: o.tag } : {}),
      })) as SnapshotInfo;
      process.stdout.write(o.json ? JSON.stringify(r) + '\n' : `${r.id}\n`);
    }),
  );
snapshot
  .command('ls')
  .description('list the snapshots: id, time, tag, files, logical bytes, head sequence')
  .argument('<data-dir>')
  .option('--json', 'one JSON array on one line')
  .option('--password-file <file>', 'password for a password-protected repository (when not mounted)')
  .action(
    action(async (dataDir: string, o: { json?: boolean; passwordFile?: string }) => {
      const list = (await snapshotOp(dataDir, o.passwordFile, { op: 'ls' })) as SnapshotInfo[];
      if (o.json) {
        process.stdout.write(JSON.stringify(list) + '\n');
        return;
      }
      const rows = [['ID', 'TIME', 'FILES', 'BYTES', 'HEAD', 'TAG']];
      for (const r of list) rows.push([r.id, r.time, String(r.files), String(r.bytes), String(r.headSeq), r.tag ?? '']);
      const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
      process.stdout.write(
        rows
          .map((row) =>
            row
              .map((c, i) => c.padEnd(widths[i]))
              .join('  ')
              .trimEnd(),
          )
          .join('\n') + '\n',
      );
    }),
  );
snapshot
  .command('rm')
  .description('remove a snapshot: the blocks only it kept are freed')
  .argument('<data-dir>')
  .argument('<id>', 'a snapshot id, or a unique prefix of at least 4 hex digits')
  .option('--password-file <file>', 'password for a password-protected repository (when not mounted)')
  .action(
    action(async (dataDir: string, id: string, o: { passwordFile?: string }) => {
      const r = (await snapshotOp(dataDir, o.passwordFile, { op: 'rm', id })) as { id: string; freed: number };
      process.stdout.write(`removed snapshot ${r.id} (${r.freed} blocks no longer kept)\n`);
    }),
  );
snapshot
  .command('diff')
  .description('paths added, removed and modified from snapshot <a> to <b> (`live`: the filesystem now)')
  .argument('<data-dir>')
  .argument('<a>', 'a snapshot id or `latest`')
  .argument('<b>', 'a snapshot id, `latest` or `live`')
  .option('--json', 'one JSON object on one line (with objectsRead)')
  .option('--password-file <file>', 'password for a password-protected repository (when not mounted)')
  .action(
    action(async (dataDir: string, a: string, b: string, o: { json?: boolean; passwordFile?: string }) => {
      const d = (await snapshotOp(dataDir, o.passwordFile, { op: 'diff', a, b })) as TreeDiff;
      if (o.json) {
        process.stdout.write(JSON.stringify(d) + '\n');
        return;
      }
      const lines = [
        ...d.added.map((p) => ({ p, l: `+ ${p}` })),
        ...d.removed.map((p) => ({ p, l: `- ${p}` })),
        ...d.modified.map((m) => ({ p: m.path, l: `M ${m.path} (${m.what.join(', ')})` })),
      ].sort((x, y) => (x.p < y.p ? -1 : x.p > y.p ? 1 : 0));
      process.stdout.write(lines.map((x) => x.l + '\n').join(''));
    }),
  );

/** `isg restore`'s line on a terminal's stdout: files, bytes, rate, ETA. Nothing when stdout is not a terminal. */
function restoreProgress(enabled: boolean): { update: (p: RestoreProgress) => void; end: () => void } {
  if (!enabled || !process.stdout.isTTY) return { update: () => undefined, end: () => undefined };
  const started = Date.now();
  let shown = false;
  const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
  return {
    update: (p) => {
      shown = true;
      const s = Math.max(0.001, (Date.now() - started) / 1000);
      const rate = p.bytes / s;
      const frac = p.totalBytes ? p.bytes / p.totalBytes : p.totalFiles ? p.files / p.totalFiles : 1;
      const eta = frac > 0 && frac < 1 ? `ETA ${Math.ceil((s / frac) * (1 - frac))}s` : '';
      const width = 30;
      const bar = '#'.repeat(Math.round(Math.min(1, frac) * width)).padEnd(width, '.');
      process.stdout.write(`\r[${bar}] ${p.files}/${p.totalFiles} files  ${mib(p.bytes)}/${mib(p.totalBytes)}  ${mib(rate)}/s  ${eta}   `);
    },
    end: () => {
      if (shown) process.stdout.write('\n');
    },
  };
}

program
  .command('restore')
  .description(
    'write a published tree (or a path in it) to <dest>: files, directories, symlinks, hard links, modes, owners, times, xattrs, holes',
  )
  .argument('<data-dir>')
  .argument('<tree>', '<ref>[:<path>], e.g. latest or latest:/src/lib (ref: latest or a snapshot id)')
  .argument('<dest>', 'a new or empty directory (a file path when <path> names a file); an interrupted restore there resumes')
  .option('--overwrite', 'restore into a destination that exists and is not empty (files complete there are kept)')
  .option('--json', 'a summary as one JSON object on one line (no progress line)')
  .option('--parallel <n>', 'block reads at once', '16')
  .option('--password-file <file>', 'password for a password-protected repository')
  .action(
    action(
      async (
        dataDir: string,
        tree: string,
        dest: string,
        o: { overwrite?: boolean; json?: boolean; parallel: string; passwordFile?: string },
      ) => {
        if (!isRepository(dataDir)) throw new RepoError(`${dataDir} holds no repository`);
        const reads = Number(o.parallel);
        if (!Number.isInteger(reads) || reads < 1 || reads > 1024)
          throw new RepoError(`--parallel: a whole number from 1 to 1024, not ${o.parallel}`);
        const password = await readPasswordFile(o.passwordFile);
        const { ref, path: inTree } = splitTreeArg(tree);
        // Read-only: no lock, nothing written to the data directory; runs beside a mount of it.
        const session = await Session.open(dataDir, { password, readOnly: true, cacheBytes: 32 * 1024 * 1024 });
        const bar = restoreProgress(!o.json);
        let r;
        try {
          const { root } = resolveTreeRef(session.meta, ref);
          r = await restoreTreeTo(
            {
              readBlock: (id) => session.store.readPlain(id),
              fetch: (id) => session.store.readPlain(id),
              idOf: (data) => session.pool.idOf(data),
              ...(session.pool.canWriteFiles
                ? {
                    localParts: (id: Buffer) => session.store.localParts(id),
                    writeFiles: (f: RestoredFileSpec[]) => session.pool.writeFiles(f),
                    prefetch: (ids: Buffer[]) => session.store.prefetchBatch(ids),
                  }
                : {}),
            },
            { root, path: inTree, dest, overwrite: !!o.overwrite, reads, onProgress: bar.update },
          );
        } finally {
          bar.end();
          await session.close();
        }
        if (o.json) process.stdout.write(JSON.stringify({ ref, ...r }) + '\n');
        else {
          for (const s of r.skipped) process.stderr.write(`isg: not restored (device, fifo or socket): ${s}\n`);
          process.stdout.write(
            `restored ${ref}:${r.path} to ${r.dest}${r.resumed ? ' (resumed)' : ''}: ${r.files} files, ${r.directories} directories, ` +
              `${r.symlinks} symlinks, ${r.hardLinks} hard links, ${(r.bytes / 1048576).toFixed(1)} MiB ` +
              `(${(r.bytesWritten / 1048576).toFixed(1)} MiB written, ${r.filesKept} files already complete) in ${r.seconds.toFixed(1)}s\n`,
          );
        }
        for (const f of r.failed) process.stderr.write(`isg: NOT restored: ${f.path}: ${f.error}\n`);
        if (r.failed.length) {
          process.stderr.write(`isg: ${r.failed.length} path(s) could not be restored; the rest is restored\n`);
          process.exitCode = 1;
        }
      },
    ),
  );

program
  .command('check')
  .description('verify every block, refcount and link count; exits non-zero and names what is wrong')
  .argument('<data-dir>')
  .option('--password-file <file>', 'password for a password-protected repository')
  .action(
    action(async (dataDir: string, o: { passwordFile?: string }) => {
      if (!isRepository(dataDir)) throw new RepoError(`${dataDir} holds no repository`);
      if (!process.env[CHECK_CHILD]) return checkContained();
      const password = await readPasswordFile(o.passwordFile);
      // A damaged metadata database is a finding, not a crash: LMDB would die on a truncated file or
      // bad meta pages (SIGBUS), so those are looked at first; its errors on damage inside are caught.
      const damaged = (problems: string[]) => {
        for (const p of problems) process.stdout.write(`problem: ${p}\n`);
        process.stdout.write('the metadata database is damaged: nothing else was checked\n');
        process.exitCode = 1;
      };
      const header = inspectLmdbFile(path.join(repoPaths(dataDir).meta, 'data.mdb'));
      if (header.length) return damaged(header);
      let session: Session;
      try {
        session = await Session.open(dataDir, { password, readOnly: true, refresh: false });
      } catch (e) {
        if (!isLmdbError(e)) throw e;
        return damaged([`cannot open the metadata database: ${(e as Error).message}`]);
      }
      try {
        const r = await checkRepository(session.meta, session.store);
        for (const p of r.problems) process.stdout.write(`problem: ${p}\n`);
        process.stdout.write(
          `checked ${r.inodesChecked} inodes, ${r.blocksChecked} blocks: ${r.problems.length ? `${r.problems.length} problems` : 'no problems'}\n`,
        );
        process.exitCode = r.problems.length ? 1 : 0;
      } catch (e) {
        if (!isLmdbError(e)) throw e;
        damaged([`reading the metadata database failed: ${(e as Error).message}`]);
      } finally {
        await session.close().catch(() => undefined);
      }
    }),
  );

/**
 * LMDB trusts its file: some damage inside it ends the process (an assertion's SIGABRT, SIGSEGV)
 * where no JavaScript can catch it. So `isg check` runs in a child process (this command again,
 * marked by CHECK_CHILD), and a child killed by a signal is reported as damage in one line.
 */
const CHECK_CHILD = 'ISG_CHECK_CHILD';

async function checkContained(): Promise<void> {
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, [CHECK_CHILD]: '1' },
  });
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (c, sig) => resolve([c, sig]));
  });
  if (signal) {
    const crash = ['SIGABRT', 'SIGSEGV', 'SIGBUS', 'SIGILL', 'SIGFPE'].includes(signal);
    process.stdout.write(
      crash
        ? `problem: the metadata database is damaged: reading it stopped the checker (${signal})\n`
        : `isg: the checker was killed (${signal})\n`,
    );
    process.exitCode = 1;
    return;
  }
  process.exitCode = code ?? 1;
}

/** LMDB's errors carry a numeric code (an MDB_* code or an errno); Node's carry a string. */
function isLmdbError(e: unknown): boolean {
  return e instanceof Error && typeof (e as { code?: unknown }).code === 'number';
}

program.parseAsync(process.argv).catch(fail);
