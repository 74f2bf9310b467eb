/**
 * NAME=SPEC parsing, BackendSpec validation and the registry. Specs round-trip through JSON
 * because that is how the repository config keeps them.
 */
import * as path from 'node:path';
import { Backend } from '../../src/backend/backend';
import { LocalBackend } from '../../src/backend/local';
import {
  backendTypes,
  createBackend,
  parseBackendSpec,
  redactSpec,
  registerBackend,
  validateBackendSpec,
} from '../../src/backend/registry';
import { BackendSpec } from '../../src/backend/spec';
import { tmpDir } from '../helpers/tmp';

describe('parseBackendSpec', () => {
  test('local: absolute path, default tier hot, tier from the query', () => {
    expect(parseBackendSpec('disk1=local:/mnt/a/isg')).toEqual({ name: 'disk1', type: 'local', tier: 'hot', path: '/mnt/a/isg' });
    expect(parseBackendSpec('disk2=local:/mnt/b?tier=cold')).toEqual({ name: 'disk2', type: 'local', tier: 'cold', path: '/mnt/b' });
    expect(parseBackendSpec('rel=local:some/dir').path).toBe(path.resolve('some/dir'));
  });

  test('s3: endpoint, bucket, prefix, region, credentials, sizes; default tier warm', () => {
    expect(parseBackendSpec('s3a=s3:http://127.0.0.1:9000/bucket?region=us-east-1&tier=warm')).toEqual({
      name: 's3a',
      type: 's3',
      tier: 'warm',
      endpoint: 'http://127.0.0.1:9000',
      bucket: 'bucket',
      region: 'us-east-1',
    });
    expect(
      parseBackendSpec(
        's3b=s3:https://s3.example.com/bkt/repos/one?accessKeyId=AK&secretAccessKey=S%2Bx&region=eu-west-1&multipartThreshold=32M&partSize=16MiB&partConcurrency=2&checksum=when_required&tier=cold',
      ),
    ).toEqual({
      name: 's3b',
      type: 's3',
      tier: 'cold',
      endpoint: 'https://s3.example.com',
      bucket: 'bkt',
      prefix: 'repos/one/',
      region: 'eu-west-1',
      accessKeyId: 'AK',
      secretAccessKey: 'S+x',
      checksum: 'when_required',
      multipartThreshold: 32 * 1024 * 1024,
      partSize: 16 * 1024 * 1024,
      partConcurrency: 2,
    });
  });

  test('mistakes are reported, naming the backend', () => {
    expect(() => parseBackendSpec('local:/x')).toThrow(/NAME=TYPE:SPEC|backend name/);
    expect(() => parseBackendSpec('disk1')).toThrow(/NAME=TYPE:SPEC/);
    expect(() => parseBackendSpec('bad name=local:/x')).toThrow(/backend name/);
    expect(() => parseBackendSpec('d=/mnt/x')).toThrow(/TYPE:SPEC/);
    expect(() => parseBackendSpec('d=ftp:/x')).toThrow(/unknown backend type 'ftp'.*local, s3/);
    expect(() => parseBackendSpec('d=local:/x?tier=lukewarm')).toThrow(/tier must be one of hot, warm, cold/);
    expect(() => parseBackendSpec('d=local:/x?tierr=cold')).toThrow(/backend 'd'.*unknown parameter 'tierr'/);
    expect(() => parseBackendSpec('d=local:')).toThrow(/path is required/);
    expect(() => parseBackendSpec('s=s3:http://host:9000')).toThrow(/bucket/);
    expect(() => parseBackendSpec('s=s3:ftp://host/b')).toThrow(/http or https/);
    expect(() => parseBackendSpec('s=s3:http://k:s@host/b')).toThrow(/credentials/);
    expect(() => parseBackendSpec('s=s3:http://host/b?accessKeyId=only')).toThrow(/both/);
    expect(() => parseBackendSpec('s=s3:http://host/b?partSize=lots')).toThrow(/not a size/);
    expect(() => parseBackendSpec('s=s3:http://host/b?secretKey=x')).toThrow(/unknown parameter 'secretKey'/);
  });
});

describe('registry', () => {
  test('built-in types', () => {
    expect(backendTypes()).toEqual(expect.arrayContaining(['local', 's3']));
  });

  test('a spec survives the config file (JSON) and opens the backend it describes', async () => {
    const { dir, cleanup } = tmpDir('isgfs-reg-');
    try {
      const spec = JSON.parse(JSON.stringify(parseBackendSpec(`disk1=local:${dir}`))) as BackendSpec;
      const b = await createBackend(spec);
      expect(b).toBeInstanceOf(LocalBackend);
      expect([b.name, b.type, b.tier]).toEqual(['disk1', 'local', 'hot']);
      expect(b.describe()).toEqual({ path: dir });
      await b.put('x', Buffer.from('y'));
      expect((await b.get('x')).toString()).toBe('y');
      await b.close();
    } finally {
      cleanup();
    }
  });

  test('s3 backends open without contacting the server, and describe never shows secrets', async () => {
    const spec = parseBackendSpec('s=s3:http://127.0.0.1:1/b/p?accessKeyId=AKIDEXAMPLE&secretAccessKey=wJalrXUtnFEMI');
    const b = await createBackend(spec);
    expect(b.describe()).toEqual({ endpoint: 'http://127.0.0.1:1', bucket: 'b', region: 'us-east-1', prefix: 'p/' });
    expect(JSON.stringify(b.describe())).not.toMatch(/wJalrXUtnFEMI|AKIDEXAMPLE/);
    expect(redactSpec(spec)).toMatchObject({ accessKeyId: 'AKIDEXAMPLE', secretAccessKey: '***' });
    expect(spec.secretAccessKey).toBe('wJalrXUtnFEMI'); // redactSpec copies
    await b.close();
  });

  test('hand-edited specs are validated', async () => {
    await expect(createBackend({ name: 'x', type: 'nope', tier: 'hot' })).rejects.toThrow(/unknown backend type/);
    await expect(createBackend({ name: 'x', type: 'local', tier: 'tepid' as 'hot', path: '/x' })).rejects.toThrow(/tier/);
    await expect(createBackend({ name: 'x', type: 'local', tier: 'hot' })).rejects.toThrow(/'path' is required/);
    await expect(createBackend({ name: 'x', type: 'local', tier: 'hot', path: 'relative' })).rejects.toThrow(/absolute/);
    await expect(createBackend({ name: 'x', type: 's3', tier: 'warm', endpoint: 'http://h', bucket: 'b', partSize: -1 })).rejects.toThrow(
      /partSize/,
    );
    expect(() => validateBackendSpec({ name: '', type: 'local', tier: 'hot' })).toThrow(/name/);
  });

  test('a new type is one factory and one registerBackend call', async () => {
    const made: BackendSpec[] = [];
    registerBackend('memtest', {
      defaultTier: 'cold',
      parse: (body) => ({ label: body }),
      create: (spec) => {
        made.push(spec);
        return { name: spec.name, type: spec.type, tier: spec.tier } as unknown as Backend;
      },
    });
    expect(() => registerBackend('memtest', { defaultTier: 'hot', parse: () => ({}), create: () => ({}) as Backend })).toThrow(/already/);
    const spec = parseBackendSpec('m=memtest:hello');
    expect(spec).toEqual({ name: 'm', type: 'memtest', tier: 'cold', label: 'hello' });
    await createBackend(spec);
    expect(made).toEqual([spec]);
  });
});
