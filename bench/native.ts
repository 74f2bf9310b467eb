/**
 * npm run bench:native [-- --json]: throughput of src/native, native beside the portable fallback.
 * Reed-Solomon encode / reconstruct (m data shards missing) on 1 MiB shards, BLAKE3 (keyed, as
 * block ids are), FastCDC scanning; each on one thread and on both cores (two worker threads;
 * for Reed-Solomon also one call split over the libuv pool; and with new output buffers per call).
 * ISA-L's own ec_encode_data, timed in C inside the addon, is the baseline of the addon's per-call cost. GB/s = 1e9 bytes/s of
 * input (data shards for Reed-Solomon). --json ends the output with one JSON line.
 */
import { availableParallelism } from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { DEFAULT_CHUNKER, deriveGearTable } from '../src/chunk';
import { addonChunk, addonErasure, loadBinding } from '../src/native/addon';
import { fallbackChunk, fallbackErasure, fallbackHash } from '../src/native/fallback';
import * as selected from '../src/native';
import { loadNapiBlake } from '../src/native/napi-blake';
import type { ChunkImpl, ErasureImpl, HashImpl } from '../src/native/types';

type Path = 'native' | 'fallback';
type Task =
  | { kind: 'encode' | 'reconstruct'; path: Path; k: number; m: number; threads: number; fresh?: boolean }
  | { kind: 'blake3'; path: Path; size: number }
  | { kind: 'cdc'; path: Path; small: boolean };

const MiB = 1 << 20;
const SHARD = MiB;
const binding = loadBinding().binding;
const blake = loadNapiBlake().impl;

function impls(path: Path): { rs: ErasureImpl; chunk: ChunkImpl; hash: HashImpl } {
  if (path === 'fallback') return { rs: fallbackErasure, chunk: fallbackChunk, hash: fallbackHash };
  if (!binding || !blake) throw new Error('native path not available');
  return { rs: addonErasure(binding), chunk: addonChunk(binding), hash: blake };
}

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed;
  for (let i = 0; i < n; i += 4) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b.writeUInt32LE(x, i);
  }
  return b;
}

/** Repeats one operation for about `seconds` after a warm-up; returns input bytes per second. */
async function timed(op: () => unknown, bytesPerOp: number, seconds: number): Promise<number> {
  await op();
  let n = 0;
  const t0 = process.hrtime.bigint();
  let el: number;
  do {
    await op();
    n++;
    el = Number(process.hrtime.bigint() - t0) / 1e9;
  } while (el < seconds);
  return (n * bytesPerOp) / el;
}

async function run(task: Task, seconds: number): Promise<number> {
  const { rs, chunk, hash } = impls(task.path);
  switch (task.kind) {
    case 'encode':
    case 'reconstruct': {
      const { k, m, threads } = task;
      const data = Array.from({ length: k }, (_, i) => bytes(SHARD, i + 1));
      // Outputs into the same buffers each time (opts.into), unless `fresh`: new buffers per call.
      const into = Array.from({ length: m }, () => Buffer.alloc(SHARD));
      const opts = () => ({ threads, into: task.fresh ? undefined : into });
      if (task.kind === 'encode') return timed(() => rs.rsEncode(k, m, data, opts()), k * SHARD, seconds);
      const parity = await rs.rsEncode(k, m, data);
      const input = [...data, ...parity].map((s, i) => (i < m ? null : s));
      return timed(() => rs.rsReconstruct(k, m, input, undefined, opts()), k * SHARD, seconds);
    }
    case 'blake3': {
      const key = bytes(32, 7);
      const data = bytes(task.size, 8);
      const reps = Math.max(1, Math.floor(MiB / task.size)); // batch small inputs so the clock is not the cost
      return timed(
        () => {
          for (let i = 0; i < reps; i++) hash.blake3Keyed(key, data);
        },
        reps * task.size,
        seconds,
      );
    }
    case 'cdc': {
      const p = task.small ? { minSize: 1024, avgSize: 4096, maxSize: 16384 } : DEFAULT_CHUNKER;
      const data = bytes(task.path === 'native' ? 64 * MiB : 16 * MiB, 9);
      const gear = deriveGearTable(Buffer.from('bench'));
      return timed(() => chunk.cdcCutPoints(data, p, gear), data.length, seconds);
    }
  }
}

/** The same task in two worker threads at once: summed throughput. */
function onBothCores(task: Task, seconds: number): Promise<number> {
  const one = () =>
    new Promise<number>((resolve, reject) => {
      const w = new Worker(__filename, { workerData: { task, seconds } });
      w.once('message', resolve);
      w.once('error', reject);
    });
  return Promise.all([one(), one()]).then(([a, b]) => a + b);
}

const gb = (x: number | null) => (x === null ? null : Math.round(x / 1e7) / 100);
const fmt = (x: number | null) => (x === null ? '   -  ' : (x / 1e9).toFixed(2).padStart(6));

async function main(): Promise<void> {
  const json = process.argv.includes('--json');
  const S = 0.5;
  const cores = availableParallelism();
  const nativeOk = binding !== null && blake !== null;
  console.log(
    `src/native benchmark: addon ${binding ? 'loaded' : 'NOT built'}, @napi-rs/blake-hash ${blake ? 'loaded' : 'missing'}, ` +
      `isgfs runs ${selected.nativeLoaded ? 'native' : 'the fallback'}${selected.forcedFallback ? ' (ISGFS_NO_NATIVE)' : ''}; ${cores} cores`,
  );
  console.log('GB/s of input;  1T = one thread,  2W = two worker threads at once,  split = one call split over the libuv pool;');
  console.log('RS writes into reused buffers (opts.into); "new" = new output buffers per call (fresh memory, page faults)\n');
  const head = (s: string) => s.padEnd(34);
  console.log(`${head('')}    native 1T    2W  split    new | fallback 1T    2W | ISA-L C loop (native 1T / ISA-L)`);

  const results: Record<string, { native: number | null; fallback: number | null }> = {};
  const record = (key: string, native: number | null, fallback: number | null) => (results[key] = { native, fallback });

  for (const [k, m] of [
    [4, 2],
    [10, 4],
  ]) {
    for (const kind of ['encode', 'reconstruct'] as const) {
      const nat = nativeOk ? await run({ kind, path: 'native', k, m, threads: 1 }, S) : null;
      const nat2 = nativeOk ? await onBothCores({ kind, path: 'native', k, m, threads: 1 }, S) : null;
      const split = nativeOk ? await run({ kind, path: 'native', k, m, threads: cores }, S) : null;
      const fresh = nativeOk ? await run({ kind, path: 'native', k, m, threads: 1, fresh: true }, S) : null;
      const fb = await run({ kind, path: 'fallback', k, m, threads: 1 }, S);
      const fb2 = await onBothCores({ kind, path: 'fallback', k, m, threads: 1 }, S);
      let base = '';
      if (kind === 'encode' && binding) {
        // Timed right after the addon's own single-thread run, so both see the same machine.
        const iters = Math.ceil((2e9 / (k * SHARD)) * 0.4);
        const isal = (iters * k * SHARD) / binding.testing.isalEncodeBench(k, m, SHARD, iters);
        const again = await run({ kind, path: 'native', k, m, threads: 1 }, S);
        const addon = Math.max(nat as number, again);
        base = `${fmt(isal)}  (${Math.round((addon / isal) * 100)}%)`;
        results[`isal_encode_${k}_${m}`] = { native: isal, fallback: null };
        results[`rs_encode_${k}_${m}_1T`] = { native: addon, fallback: fb };
      }
      console.log(
        `${head(`RS ${kind} ${k}+${m}${kind === 'reconstruct' ? `, ${m} data missing` : ''}`)}    ${fmt(nat)} ${fmt(nat2)} ${fmt(split)} ${fmt(fresh)} |     ${fmt(fb)} ${fmt(fb2)} | ${base}`,
      );
      record(`rs_${kind}_${k}_${m}`, split ?? nat, fb);
      record(`rs_${kind}_${k}_${m}_new`, fresh, null);
    }
  }
  for (const size of [4096, 65536, MiB]) {
    const nat = blake ? await run({ kind: 'blake3', path: 'native', size }, S) : null;
    const nat2 = blake ? await onBothCores({ kind: 'blake3', path: 'native', size }, S) : null;
    const fb = await run({ kind: 'blake3', path: 'fallback', size }, S);
    const fb2 = await onBothCores({ kind: 'blake3', path: 'fallback', size }, S);
    const label = size === MiB ? '1MiB' : `${size / 1024}KiB`;
    console.log(`${head(`BLAKE3 keyed, ${label}`)}    ${fmt(nat)} ${fmt(nat2)}    -       -   |     ${fmt(fb)} ${fmt(fb2)} |`);
    record(`blake3_${label}`, nat, fb);
  }
  for (const small of [false, true]) {
    const nat = binding ? await run({ kind: 'cdc', path: 'native', small }, S) : null;
    const nat2 = binding ? await onBothCores({ kind: 'cdc', path: 'native', small }, S) : null;
    const fb = await run({ kind: 'cdc', path: 'fallback', small }, S);
    const fb2 = await onBothCores({ kind: 'cdc', path: 'fallback', small }, S);
    console.log(
      `${head(`FastCDC scan, ${small ? '1K/4K/16K' : 'default 256K/1M/4M'}`)}    ${fmt(nat)} ${fmt(nat2)}    -       -   |     ${fmt(fb)} ${fmt(fb2)} |`,
    );
    record(small ? 'cdc_small' : 'cdc', nat, fb);
  }

  if (json) {
    const keys: [string, string][] = [
      ['rs_encode_4_2_GBps', 'rs_encode_4_2'],
      ['rs_reconstruct_4_2_GBps', 'rs_reconstruct_4_2'],
      ['rs_encode_10_4_GBps', 'rs_encode_10_4'],
      ['rs_reconstruct_10_4_GBps', 'rs_reconstruct_10_4'],
      ['blake3_1MiB_GBps', 'blake3_1MiB'],
      ['blake3_4KiB_GBps', 'blake3_4KiB'],
      ['cdc_GBps', 'cdc'],
    ];
    // Top level: the path isgfs runs (the fallback when the addon is missing or ISGFS_NO_NATIVE is
    // set); Reed-Solomon as one call on all cores into reused buffers. Extra keys: one thread,
    // new buffers per call, and ISA-L's C loop.
    const useNative = selected.nativeLoaded;
    const out: Record<string, unknown> = { native: useNative };
    for (const [name, key] of keys) out[name] = gb(useNative ? results[key].native : results[key].fallback);
    out.fallback = Object.fromEntries(keys.map(([name, key]) => [name, gb(results[key].fallback)]));
    for (const [k, m] of [
      [4, 2],
      [10, 4],
    ]) {
      out[`rs_encode_${k}_${m}_1T_GBps`] = gb(
        useNative ? (results[`rs_encode_${k}_${m}_1T`]?.native ?? null) : results[`rs_encode_${k}_${m}`].fallback,
      );
      out[`rs_encode_${k}_${m}_new_buffers_GBps`] = gb(useNative ? results[`rs_encode_${k}_${m}_new`].native : null);
      out[`isal_encode_${k}_${m}_GBps`] = gb(results[`isal_encode_${k}_${m}`]?.native ?? null);
    }
    out.cdc_small_GBps = gb(useNative ? results.cdc_small.native : results.cdc_small.fallback);
    console.log(JSON.stringify(out));
  }
}

if (isMainThread) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  const { task, seconds } = workerData as { task: Task; seconds: number };
  run(task, seconds).then((r) => parentPort?.postMessage(r));
}
