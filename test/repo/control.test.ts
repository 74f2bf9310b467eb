import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import {
  callControl,
  ControlUnreachableError,
  controlSocketCandidates,
  controlSocketDirs,
  controlSocketPath,
  serveControl,
} from '../../src/repo/control';
import { log } from '../../src/log';
import { tmpDir } from '../helpers/tmp';

let t: ReturnType<typeof tmpDir>;
let warn: jest.SpyInstance;
const savedXdg = process.env.XDG_RUNTIME_DIR;
beforeEach(() => {
  t = tmpDir('isgfs-ctl-');
  warn = jest.spyOn(log, 'warn').mockImplementation((() => log) as never);
});
afterEach(() => {
  warn.mockRestore();
  if (savedXdg === undefined) delete process.env.XDG_RUNTIME_DIR;
  else process.env.XDG_RUNTIME_DIR = savedXdg;
  t.cleanup();
});

const echo = async (cmd: string) => ({ got: cmd });
const warnings = () => warn.mock.calls.map((c) => String(c[0])).join('\n');

test('the socket is not in the data directory, but under $XDG_RUNTIME_DIR in a 0700 directory, named after the repository', async () => {
  const runtime = path.join(t.dir, 'run');
  fs.mkdirSync(runtime, { mode: 0o755 });
  process.env.XDG_RUNTIME_DIR = runtime;
  const data = path.join(t.dir, 'data');
  fs.mkdirSync(data);
  const file = controlSocketPath(data);
  expect(path.dirname(file)).toBe(path.join(runtime, 'isgfs'));
  expect(file.startsWith(data)).toBe(false);
  expect(controlSocketPath(path.join(t.dir, 'other'))).not.toBe(file);
  expect(controlSocketPath(path.join(data, '.'))).toBe(file); // the resolved path names it

  const stop = serveControl(data, echo);
  try {
    expect(await callControl(data, 'health')).toEqual({ got: 'health' });
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(fs.statSync(file).isSocket()).toBe(true);
    expect(fs.readdirSync(data)).toEqual([]);
  } finally {
    await stop();
  }
  expect(fs.existsSync(file)).toBe(false);
  expect(warnings()).toBe('');
});

test('an unusable $XDG_RUNTIME_DIR is passed over', () => {
  process.env.XDG_RUNTIME_DIR = path.join(t.dir, 'absent');
  expect(controlSocketDirs().some((d) => d.startsWith(t.dir))).toBe(false);
  fs.writeFileSync(path.join(t.dir, 'file'), '');
  process.env.XDG_RUNTIME_DIR = path.join(t.dir, 'file');
  expect(controlSocketDirs().some((d) => d.startsWith(t.dir))).toBe(false);
  process.env.XDG_RUNTIME_DIR = 'relative/dir';
  expect(controlSocketDirs().some((d) => d.startsWith('relative'))).toBe(false);
});

describe('a socket that cannot be made is a warning, never a crash', () => {
  test.each([
    [
      'its directory cannot be created (a file is in the way)',
      () => {
        fs.writeFileSync(path.join(t.dir, 'f'), '');
        return path.join(t.dir, 'f', 'sub', 'x.sock');
      },
    ],
    ['its directory does not hold sockets (/proc)', () => '/proc/isgfs-test.sock'],
    [
      'its directory belongs to another user',
      () => {
        const d = path.join(t.dir, 'theirs');
        fs.mkdirSync(d, { mode: 0o700 });
        fs.chownSync(d, 12345, 12345);
        return path.join(d, 'x.sock');
      },
    ],
  ])('%s', async (_what, where) => {
    const file = where();
    const stop = serveControl(t.dir, echo, file);
    await stop(); // waits for the attempt
    expect(warnings()).toMatch(/no control socket .*isg flush and isg cache drop cannot reach this daemon/);
  });
});

const reaches = (file: string) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(file);
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });

test('a stale socket (its daemon died) is replaced; a live one is left to its daemon', async () => {
  const file = path.join(t.dir, 'sock', 'x.sock');
  fs.mkdirSync(path.dirname(file), { mode: 0o700 });
  // stale: the socket of a daemon killed with -9 (a clean close would remove the file)
  try {
    execFileSync(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(file)}, () => process.kill(process.pid, 'SIGKILL'))`,
    ]);
  } catch {
    /* killed, as meant */
  }
  expect(fs.statSync(file).isSocket()).toBe(true);
  const stop = serveControl(t.dir, echo, file);
  try {
    for (let i = 0; !(await reaches(file)); i++) {
      if (i > 100) throw new Error('the first daemon never listened');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(warnings()).toBe('');
    const second = serveControl(t.dir, async () => 'second', file);
    await second();
    expect(warnings()).toMatch(/another daemon of this repository already answers/);
    // The first one still answers.
    const sock = net.connect(file);
    const reply = await new Promise<string>((resolve, reject) => {
      let buf = '';
      sock.on('connect', () => sock.write('{"cmd":"health"}\n'));
      sock.on('data', (d) => {
        buf += d.toString();
      });
      sock.on('end', () => resolve(buf));
      sock.on('error', reject);
    });
    expect(JSON.parse(reply.split('\n')[0])).toEqual({ done: { got: 'health' } });
  } finally {
    await stop();
  }
});

test('a client with no daemon to reach gets ControlUnreachableError naming where it looked', async () => {
  const data = path.join(t.dir, 'data');
  const err = await callControl(data, 'flush').catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ControlUnreachableError);
  expect((err as ControlUnreachableError).tried).toEqual(controlSocketCandidates(data));
  expect((err as Error).message).toMatch(/no daemon answers on its control socket/);
});
