/** `isg status`: what the repository holds, computed from the metadata (works while mounted). */
import { Meta } from '../meta/meta';
import * as fs from 'node:fs';
import { isInsideDataDir, openRepository, readLock, repoPaths, resolveBackendSpec } from './repository';
import { RepoConfig, validateConfig } from './format';
import { createBackend } from '../backend/registry';
import { parseShardKey } from '../pack/format';
import { callControl } from './control';
import type { BackgroundStatus, LastError } from './problems';

const { S_IFDIR, S_IFMT, S_IFREG } = fs.constants;

function keyWrapped(keyFile: string): boolean {
  try {
    return (JSON.parse(fs.readFileSync(keyFile, 'utf8')) as { kdf?: unknown }).kdf === 'argon2id';
  } catch {
    return false;
  }
}

export interface BackendStatus {
  name: string;
  type: string;
  tier: string;
  /** Answered a listing just now. */
  healthy: boolean;
  /** Shards present on it, and their bytes. */
  shards: number;
  bytes: number;
  /** Shards the pack index places on it that it does not hold. */
  missingShards: number;
  path?: string;
  error?: string;
}

export interface RepoStatus {
  files: number;
  directories: number;
  symlinks: number;
  /** Sum of file sizes (what `du --apparent-size` shows). */
  logicalBytes: number;
  /** Bytes of file data held in chunks (holes excluded), before deduplication. */
  referencedBytes: number;
  uniqueBlocks: number;
  /** Plaintext bytes of the unique blocks. */
  uniqueBytes: number;
  /** Encoded (compressed + encrypted) bytes in the local tier. */
  storedBytes: number;
  dedupRatio: number;
  compressionRatio: number;
  mounted: boolean;
  mountpoint?: string;
  /** Encoded bytes of blocks not yet in a pack on the backends. */
  pendingUploadBytes: number;
  pendingUploadBlocks: number;
  /** Encoded bytes of blocks in the local tier. */
  localBytes: number;
  dataShards: number;
  parityShards: number;
  packs: number;
  missingShards: number;
  backends: BackendStatus[];
  /**
   * The last failure of the mounted daemon's background work (upload, sync, repair, sweep); null
   * when there was none, or when no read-write daemon runs (see src/repo/problems.ts).
   */
  lastError: LastError | null;
  /** ISO time since when uploads fail and the upload queue does not shrink; null otherwise. */
  uploadStalledSince: string | null;
  /** Sequence number of the last head this data directory published to the backends; null before the first. */
  publishedHead: number | null;
  /** ISO time of that head; null before the first. */
  publishedAt: string | null;
  /**
   * Inodes (files and directories) changed since the last publish encoded them: 0 when the
   * backends' newest head holds everything the metadata does (docs/architecture.md "Publishing").
   */
  unpublishedChanges: number;
  /** Why `isg connect` could not rebuild this repository from its backends if this data directory were lost; null when it could. */
  unrecoverable: string | null;
}

/**
 * Why the repository could not be recovered from its backends alone (`isg connect`), or null:
 * the embedded default keeps every backend inside the data directory, and a repository without a
 * password has its master key only there (no key envelope on the backends).
 */
export function unrecoverableReason(config: RepoConfig, root: string, keyWrapped: boolean): string | null {
  const outside = config.storage.backends.filter((s) => !isInsideDataDir(s, root)).length;
  const { k } = config.storage.ec;
  if (outside < k)
    return (
      (outside
        ? `only ${outside} of its backends lie outside the data directory, ${k} needed`
        : 'all its backends lie inside the data directory') +
      ': losing it loses the repository; ' +
      'put the backends on other disks or S3 (isg init --backend d1=local:/mnt/disk1/isg --backend s3a=s3:https://host/bucket ...)'
    );
  if (!keyWrapped) return 'no password: the master key is only in this data directory (create the repository with --password-file)';
  return null;
}

const NO_BACKGROUND: BackgroundStatus = { lastError: null, uploadStalledSince: null };

/** The background state of the daemon that has the repository open for writing, if one answers. */
async function backgroundStatus(dataDir: string, mounted: boolean): Promise<BackgroundStatus> {
  if (!mounted) return NO_BACKGROUND;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), 10_000);
  });
  try {
    const live = (await Promise.race([callControl(dataDir, 'status').catch(() => undefined), timeout])) as
      Partial<BackgroundStatus> | undefined;
    return { lastError: live?.lastError ?? null, uploadStalledSince: live?.uploadStalledSince ?? null };
  } finally {
    clearTimeout(timer);
  }
}

/** Lists every backend: what it holds against what the pack index says it should. */
async function backendStatus(config: RepoConfig, root: string, meta: Meta): Promise<BackendStatus[]> {
  const expected = new Map<string, Set<string>>();
  for (const { id, row } of meta.allPacks()) {
    row.placement.forEach((name, i) => {
      if (!expected.has(name)) expected.set(name, new Set());
      expected.get(name)!.add(`${id}.${i}`);
    });
  }
  return Promise.all(
    config.storage.backends.map(async (spec): Promise<BackendStatus> => {
      const want = expected.get(spec.name) ?? new Set<string>();
      const out: BackendStatus = {
        name: spec.name,
        type: spec.type,
        tier: spec.tier,
        healthy: false,
        shards: 0,
        bytes: 0,
        missingShards: want.size,
      };
      try {
        const b = await createBackend(resolveBackendSpec(spec, root));
        const d = b.describe();
        if (typeof d.path === 'string') out.path = d.path;
        try {
          const signal = AbortSignal.timeout(15_000);
          const present = new Set<string>();
          for await (const o of b.list('shards/', { signal })) {
            const k = parseShardKey(o.key);
            if (!k) continue;
            out.shards++;
            out.bytes += o.size;
            present.add(`${k.packId}.${k.index}`);
          }
          out.missingShards = [...want].filter((x) => !present.has(x)).length;
          out.healthy = true;
        } finally {
          await b.close();
        }
      } catch (e) {
        out.error = (e as Error).message;
      }
      return out;
    }),
  );
}

/**
 * `openMeta`: the caller's open metadata (in-process callers); otherwise opened read-only here,
 * which takes the key (the rows are sealed): from the key file, unwrapped with `password` if it
 * has one.
 */
export async function repoStatus(dataDir: string, openMeta?: Meta, password?: string): Promise<RepoStatus> {
  const paths = repoPaths(dataDir);
  const config = validateConfig(JSON.parse(fs.readFileSync(paths.config, 'utf8')) as RepoConfig);
  const meta = openMeta ?? (await Meta.open(paths.meta, (await openRepository(dataDir, password)).keys.meta, true));
  try {
    let files = 0,
      directories = 0,
      symlinks = 0,
      logicalBytes = 0,
      referencedBytes = 0;
    for (const i of meta.allInodes()) {
      const type = i.mode & S_IFMT;
      if (type === S_IFDIR) directories++;
      else if (type === S_IFREG) {
        files++;
        logicalBytes += i.size;
      } else symlinks++;
    }
    for (const { extent } of meta.allExtents()) referencedBytes += extent.length;
    let uniqueBlocks = 0,
      uniqueBytes = 0,
      storedBytes = 0,
      localBytes = 0;
    for (const { row } of meta.allBlocks()) {
      if (row.local !== false) localBytes += row.stored;
      if (row.refs === 0) continue;
      uniqueBlocks++;
      uniqueBytes += row.plain;
      storedBytes += row.stored;
    }
    let pendingUploadBytes = 0;
    const queue = meta.queued();
    for (const { id } of queue) pendingUploadBytes += meta.getBlock(id)?.stored ?? 0;
    const backends = await backendStatus(config, paths.root, meta);
    const published = meta.getPublishValue<{ seq: number; time: number }>('head');
    const lock = readLock(dataDir);
    const background = await backgroundStatus(dataDir, !!lock);
    return {
      files,
      directories,
      symlinks,
      logicalBytes,
      referencedBytes,
      uniqueBlocks,
      uniqueBytes,
      storedBytes,
      dedupRatio: uniqueBytes ? referencedBytes / uniqueBytes : 1,
      compressionRatio: storedBytes ? uniqueBytes / storedBytes : 1,
      mounted: !!lock?.mountpoint,
      mountpoint: lock?.mountpoint,
      pendingUploadBytes,
      pendingUploadBlocks: queue.length,
      localBytes,
      dataShards: config.storage.ec.k,
      parityShards: config.storage.ec.m,
      packs: [...meta.allPacks()].length,
      missingShards: backends.reduce((n, b) => n + b.missingShards, 0),
      backends,
      publishedHead: published?.seq ?? null,
      publishedAt: published ? new Date(published.time).toISOString() : null,
      unpublishedChanges: meta.dirtyCount(),
      ...background,
      unrecoverable: unrecoverableReason(config, paths.root, keyWrapped(paths.key)),
    };
  } finally {
    if (!openMeta) await meta.close();
  }
}

/** The published state in words: the head's sequence number and time, and what is not in it yet. */
function published(s: RepoStatus): string {
  const pending = `${s.unpublishedChanges} unpublished change${s.unpublishedChanges === 1 ? '' : 's'}`;
  if (s.publishedHead === null) return `no head on the backends yet (${pending})`;
  return `head ${s.publishedHead} at ${s.publishedAt}, ${pending}`;
}

/** `isg status` without --json: one line per figure (`root`: the data directory). */
export function formatStatus(s: RepoStatus, root: string): string {
  const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
  return (
    [
      `repository   ${root}${s.mounted ? ` (mounted on ${s.mountpoint})` : ''}`,
      `files        ${s.files}`,
      `directories  ${s.directories}`,
      `symlinks     ${s.symlinks}`,
      `logical      ${mib(s.logicalBytes)} (data in chunks ${mib(s.referencedBytes)})`,
      `unique       ${s.uniqueBlocks} blocks, ${mib(s.uniqueBytes)}`,
      `stored       ${mib(s.storedBytes)}`,
      `dedup        ${s.dedupRatio.toFixed(2)}x`,
      `compression  ${s.compressionRatio.toFixed(2)}x`,
      `local tier   ${mib(s.localBytes)}`,
      `pending      ${mib(s.pendingUploadBytes)} (${s.pendingUploadBlocks} blocks) not yet on the backends`,
      `erasure      ${s.dataShards}+${s.parityShards}, ${s.packs} packs, ${s.missingShards} shards missing`,
      ...(s.uploadStalledSince ? [`uploads      STALLED since ${s.uploadStalledSince}`] : []),
      ...(s.lastError ? [`last error   ${s.lastError.time} ${s.lastError.stage}: ${s.lastError.message}`] : []),
      `published    ${published(s)}`,
      ...(s.unrecoverable ? [`recovery     NOT POSSIBLE from the backends alone: ${s.unrecoverable}`] : []),
      ...s.backends.map(
        (b) =>
          `  ${b.name.padEnd(10)} ${b.type.padEnd(6)} ${b.tier.padEnd(5)} ${b.healthy ? 'healthy  ' : 'UNHEALTHY'} ` +
          `${String(b.shards).padStart(6)} shards ${mib(b.bytes).padStart(12)}${b.missingShards ? `  ${b.missingShards} missing` : ''}` +
          `${b.path ? `  ${b.path}` : ''}${b.error ? `  (${b.error})` : ''}`,
      ),
    ].join('\n') + '\n'
  );
}
