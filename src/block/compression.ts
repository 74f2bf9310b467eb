/** Compression stage, chosen by name from the format record. */
import * as zstd from 'zstd-napi';

export interface Compression {
  readonly name: string;
  compress(plain: Uint8Array): Buffer;
  decompress(packed: Uint8Array): Buffer;
}

export interface CompressionSpec {
  name: 'zstd' | 'none';
  level?: number;
}

const registry: Record<CompressionSpec['name'], (spec: CompressionSpec) => Compression> = {
  zstd: (spec) => {
    const level = spec.level ?? 3;
    return {
      name: 'zstd',
      compress: (plain) => zstd.compress(plain, { compressionLevel: level }),
      decompress: (packed) => zstd.decompress(packed),
    };
  },
  none: () => ({ name: 'none', compress: (p) => Buffer.from(p), decompress: (p) => Buffer.from(p) }),
};

export function compressionFor(spec: CompressionSpec): Compression {
  const make = registry[spec.name];
  if (!make) throw new Error(`unknown compression '${spec.name}'`);
  return make(spec);
}
