/**
 * A real s3rver in a child process on 127.0.0.1, for the S3 tests.
 *
 * Workaround (test setup only): s3rver 3.7.1 makes ListObjectsV2 continuation tokens with
 * DES-CBC, which OpenSSL 3 (Node >= 17) only has in its legacy provider; without it every
 * listing of more than 1000 keys fails with "digital envelope routines::unsupported". So the
 * server runs as its CLI under `node --openssl-legacy-provider`. A child process is also what
 * the stop/restart tests need: killing it drops the connections as a crashed server would.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tmpDir } from '../helpers/tmp';

export const S3RVER_KEY = 'S3RVER'; // s3rver's built-in account: access key id = secret = "S3RVER"

export class S3rverProcess {
  private child?: ChildProcess;
  port = 0;

  private constructor(
    readonly bucket: string,
    readonly dir: string,
    private readonly cleanupDir: () => void,
  ) {}

  static async start(bucket: string): Promise<S3rverProcess> {
    const { dir, cleanup } = tmpDir('isgfs-s3rver-');
    const p = new S3rverProcess(bucket, dir, cleanup);
    await p.run();
    return p;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** Starts the server (on the same port and directory as before, if it ran before). */
  async run(): Promise<void> {
    const cli = require.resolve('s3rver/bin/s3rver.js');
    const child = spawn(
      process.execPath,
      [
        '--openssl-legacy-provider',
        cli,
        '-d',
        this.dir,
        '-a',
        '127.0.0.1',
        '-p',
        String(this.port),
        '--silent',
        '--configure-bucket',
        this.bucket,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    this.port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`s3rver did not start: ${err}`)), 15_000);
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /listening on [\d.]+:(\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited with ${code}: ${err}`));
      });
    });
    this.child = child;
    // Never leave a server behind if the test process dies without afterAll.
    const kill = () => child.kill('SIGKILL');
    process.once('exit', kill);
    child.once('exit', () => process.removeListener('exit', kill));
  }

  /**
   * Test-setup shortcut: writes objects straight into s3rver's store (3.7.1 FilesystemStore
   * layout: DIR/BUCKET/KEY._S3rver_object; metadata and md5 are derived on first read), because
   * a thousand PUTs through the SDK take many seconds. Use only to build listing fixtures.
   */
  seedObjects(objects: Iterable<[key: string, data: Buffer]>): void {
    for (const [key, data] of objects) {
      const file = path.join(this.dir, this.bucket, `${key}._S3rver_object`);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, data);
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }

  async close(): Promise<void> {
    await this.stop();
    this.cleanupDir();
  }
}
