/**
 * The control socket of a running daemon: `isg flush` and `isg cache drop` talk to the process
 * that has the repository open instead of opening it a second time. Newline-delimited JSON over a
 * unix socket; a request is answered by zero or more progress lines and one final line.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export type ControlCommand = 'flush' | 'cache-drop' | 'health';

export interface ControlReply {
  progress?: unknown;
  done?: unknown;
  error?: string;
}

/** In the data directory when the path fits a unix socket address (108 bytes), else in /tmp. */
export function controlSocketPath(dataDir: string): string {
  const root = path.resolve(dataDir);
  const inRepo = path.join(root, 'control.sock');
  if (Buffer.byteLength(inRepo) < 100) return inRepo;
  return path.join(os.tmpdir(), `isgfs-${createHash('sha256').update(root).digest('hex').slice(0, 16)}.sock`);
}

export type ControlHandler = (cmd: ControlCommand, progress: (p: unknown) => void) => Promise<unknown>;

export function serveControl(dataDir: string, handler: ControlHandler): () => Promise<void> {
  const file = controlSocketPath(dataDir);
  fs.rmSync(file, { force: true });
  const server = net.createServer((sock) => {
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      buf = '';
      let cmd: ControlCommand;
      try {
        cmd = (JSON.parse(line) as { cmd: ControlCommand }).cmd;
      } catch {
        sock.end(JSON.stringify({ error: 'bad request' }) + '\n');
        return;
      }
      const send = (r: ControlReply) => { if (!sock.destroyed) sock.write(JSON.stringify(r) + '\n'); };
      handler(cmd, (p) => send({ progress: p })).then(
        (done) => { send({ done: done ?? true }); sock.end(); },
        (e: Error) => { send({ error: e.message }); sock.end(); },
      );
    });
    sock.on('error', () => undefined);
  });
  server.listen(file);
  server.unref();
  return () => new Promise((resolve) => server.close(() => { fs.rmSync(file, { force: true }); resolve(); }));
}

/** Sends one command; resolves with the final answer. Rejects with code ENOENT/ECONNREFUSED when no daemon listens. */
export function callControl(dataDir: string, cmd: ControlCommand, onProgress?: (p: unknown) => void): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(controlSocketPath(dataDir));
    let buf = '';
    let settled = false;
    sock.on('connect', () => sock.write(JSON.stringify({ cmd }) + '\n'));
    sock.on('data', (d) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const r = JSON.parse(buf.slice(0, nl)) as ControlReply;
        buf = buf.slice(nl + 1);
        if (r.progress !== undefined) onProgress?.(r.progress);
        else if (r.error !== undefined) { settled = true; reject(new Error(r.error)); }
        else { settled = true; resolve(r.done); }
      }
    });
    sock.on('error', (e) => { if (!settled) { settled = true; reject(e); } });
    sock.on('close', () => { if (!settled) reject(new Error('the daemon closed the control connection')); });
  });
}
