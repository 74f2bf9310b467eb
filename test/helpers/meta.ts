/** Metadata databases for unit tests, sealed with a fixed test key. */
import { Meta } from '../../src/meta/meta';
import { MetaSeal } from '../../src/meta/seal';

export const TEST_SEAL = new MetaSeal(Buffer.alloc(32, 7));

export function openMeta(dir: string, readOnly = false): Promise<Meta> {
  return Meta.open(dir, TEST_SEAL, readOnly);
}
