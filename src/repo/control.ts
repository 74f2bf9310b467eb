/**
 * The control socket of a running daemon: `isg flush` and `isg cache drop` talk to the process
 * that has the repository open instead of opening it a second time, and `isg status` asks it for
 * the live state of its background work ('status'). Newline-delimited JSON over a
 * unix socket; a request is answered by zero or more progress lines and one final line.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { log } from '../log';

/** `snapshot` carries its operation in the request's `args` (src/repo/snapshot-ops.ts SnapshotOp), `clone` its tree and destination. */
export type ControlCommand = 'flush' | 'cache-drop' | 'health' | 'status' | 'snapshot' | 'clone';

export interface ControlReply {
  progress?: unknown;
  done?: unknown;
  error?: string;
}

/**
 * Where control sockets live: never in the data directory, whose filesystem may not hold a unix
 * socket (a FUSE or network filesystem, a VM share). In order: `$XDG_RUNTIME_DIR/isgfs` when that
 * is set and writable, `/run/isgfs` for root, else `isgfs-<uid>` in the temp directory. A daemon
 * listens in the first usable one; a client tries each (the two may see different environments).
 */
export function controlSocketDirs(): string[] {
  const uid = process.getuid?.() ?? 0;
  const dirs: string[] = [];
  const xdg = process.env.XDG_RUNTIME_DIR;
  if (xdg && path.isAbsolute(xdg) && writable(xdg)) dirs.push(path.join(xdg, 'isgfs'));
  if (uid === 0) dirs.push('/run/isgfs');
  dirs.push(path.join(os.tmpdir(), `isgfs-${uid}`));
  if (os.tmpdir() !== '/tmp') dirs.push(`/tmp/isgfs-${uid}`);
  return dirs.filter((d) => Buffer.byteLength(path.join(d, socketName('/'))) < SUN_PATH_MAX);
}

/** A unix socket address holds 108 bytes with its NUL; leave a margin. */
const SUN_PATH_MAX = 100;

function writable(dir: string): boolean {
  try {
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
    return fs.statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

/** Named after the repository: the hash of its resolved path. */
function socketName(dataDir: string): string {
  return `${createHash('sha256').update(path.resolve(dataDir)).digest('hex').slice(0, 16)}.sock`;
}

/** Every place a daemon of this repository may listen, most likely first. */
export function controlSocketCandidates(dataDir: string): string[] {
  return controlSocketDirs().map((d) => path.join(d, socketName(dataDir)));
}

/** Where a daemon of this repository listens: in the first directory it can use (see controlSocketDirs). */
export function controlSocketPath(dataDir: string): string {
  const candidates = controlSocketCandidates(dataDir);
  return candidates.find((c) => usableDir(path.dirname(c))) ?? candidates[candidates.length - 1];
}

function usableDir(dir: string): boolean {
  return fs.existsSync(dir) ? writable(dir) : writable(path.dirname(dir));
}

/** Creates the socket directory 0700, or checks that an existing one is ours and private. */
function prepareSocketDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) throw Object.assign(new Error(`${dir} is not a directory`), { code: 'ENOTDIR' });
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid)
    throw Object.assign(new Error(`${dir} belongs to uid ${st.uid}, not to this user`), { code: 'EPERM' });
  if ((st.mode & 0o777) !== 0o700) fs.chmodSync(dir, 0o700);
}

/** Whether a process answers on the socket (a live daemon), as opposed to a file left by a dead one. */
function answers(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect(file);
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

export type ControlHandler = (cmd: ControlCommand, progress: (p: unknown) => void, args?: unknown) => Promise<unknown>;

/**
 * Listens for `isg flush` and `isg cache drop`. Never throws and never leaves an 'error' event
 * unhandled: a daemon without a control socket still serves FUSE, so when the socket cannot be
 * made (no usable directory, EACCES, another live daemon on it) it logs a warning and runs without
 * one; the clients then say they cannot reach it. Returns the function that closes it.
 */
export function serveControl(dataDir: string, handler: ControlHandler, file = controlSocketPath(dataDir)): () => Promise<void> {
  const server = net.createServer((sock) => {
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      buf = '';
      let cmd: ControlCommand;
      let args: unknown;
      try {
        ({ cmd, args } = JSON.parse(line) as { cmd: ControlCommand; args?: unknown });
      } catch {
        sock.end(JSON.stringify({ error: 'bad request' }) + '\n');
        return;
      }
      const send = (r: ControlReply) => {
        if (!sock.destroyed) sock.write(JSON.stringify(r) + '\n');
      };
      handler(cmd, (p) => send({ progress: p }), args).then(
        (done) => {
          send({ done: done ?? true });
          sock.end();
        },
        (e: Error) => {
          send({ error: e.message });
          sock.end();
        },
      );
    });
    sock.on('error', () => undefined);
  });
  const warn = (why: string) =>
    log.warn(`no control socket (${why}): the mount works, but isg flush and isg cache drop cannot reach this daemon`);
  /** Resolves with undefined once listening, or the error code that prevented it. */
  const listen = (): Promise<string | undefined> =>
    new Promise((resolve) => {
      const onError = (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message);
      server.once('error', onError);
      server.listen(file, () => {
        server.off('error', onError);
        resolve(undefined);
      });
    });
  const started = (async (): Promise<boolean> => {
    try {
      prepareSocketDir(path.dirname(file));
    } catch (e) {
      warn(`cannot use ${path.dirname(file)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      return false;
    }
    let err = await listen();
    if (err === 'EADDRINUSE') {
      // Taken: by a live daemon of this repository (a second, read-only mount), or a file left by
      // one that died. Only the second may be replaced.
      if (await answers(file)) {
        warn(`another daemon of this repository already answers on ${file}`);
        return false;
      }
      fs.rmSync(file, { force: true });
      err = await listen();
    }
    if (err !== undefined) {
      warn(`cannot listen on ${file}: ${err}`);
      return false;
    }
    server.on('error', (e: NodeJS.ErrnoException) => warn(`${file}: ${e.code ?? e.message}`)); // logged, never thrown
    server.unref();
    try {
      fs.chmodSync(file, 0o600);
    } catch {
      /* the directory is private anyway */
    }
    return true;
  })();
  return async () => {
    if (!(await started)) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    fs.rmSync(file, { force: true });
  };
}

/** No daemon answers on any of the places its control socket may be (code ENOENT or ECONNREFUSED). */
export class ControlUnreachableError extends Error {
  constructor(
    readonly code: string,
    readonly tried: string[],
  ) {
    super(`no daemon answers on its control socket (${code}; tried ${tried.join(', ')})`);
  }
}

/**
 * Sends one command to the daemon of the repository, trying each place its socket may be;
 * resolves with the final answer. Rejects with ControlUnreachableError when no daemon listens.
 */
export async function callControl(
  dataDir: string,
  cmd: ControlCommand,
  onProgress?: (p: unknown) => void,
  args?: unknown,
): Promise<unknown> {
  const tried = controlSocketCandidates(dataDir);
  let code = 'ENOENT';
  for (const file of tried) {
    const r = await callOne(file, cmd, onProgress, args);
    if (!r.unreachable) return r.value;
    if (r.unreachable !== 'ENOENT') code = r.unreachable;
  }
  throw new ControlUnreachableError(code, tried);
}

function callOne(
  file: string,
  cmd: ControlCommand,
  onProgress?: (p: unknown) => void,
  args?: unknown,
): Promise<{ value?: unknown; unreachable?: string }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(file);
    let buf = '';
    let connected = false;
    let settled = false;
    sock.on('connect', () => {
      connected = true;
      sock.write(JSON.stringify(args === undefined ? { cmd } : { cmd, args }) + '\n');
    });
    sock.on('data', (d) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const r = JSON.parse(buf.slice(0, nl)) as ControlReply;
        buf = buf.slice(nl + 1);
        if (r.progress !== undefined) onProgress?.(r.progress);
        else if (r.error !== undefined) {
          settled = true;
          reject(new Error(r.error));
        } else {
          settled = true;
          resolve({ value: r.done });
        }
      }
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      if (!connected)
        resolve({ unreachable: e.code ?? 'ENOENT' }); // nothing there (or not ours to reach): try the next place
      else reject(e);
    });
    sock.on('close', () => {
      if (!settled) {
        settled = true;
        reject(new Error('the daemon closed the control connection'));
      }
    });
  });
}
