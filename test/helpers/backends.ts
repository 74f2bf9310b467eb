/** Local-directory backends for unit tests. */
import * as path from 'node:path';
import { LocalBackend } from '../../src/backend/local';

/** Backends named `names`, each in its own directory under `dir`, initialised. */
export async function localBackends(dir: string, names = ['b0', 'b1', 'b2']): Promise<LocalBackend[]> {
  const backends = names.map((n) => new LocalBackend(n, path.join(dir, n)));
  for (const b of backends) await b.init();
  return backends;
}
