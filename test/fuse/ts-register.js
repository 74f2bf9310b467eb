// Lets a child `node` run the TypeScript sources directly (node -r test/fuse/ts-register.js x.ts):
// the FUSE test servers then run the current mount/ and bench/ code, not a possibly stale dist/.
// Transpiled output is cached by content in the temp directory: loading TypeScript and transpiling
// costs a second or two per start, and the power-loss tests restart lazyfs at every crash.
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');

const cacheDir = path.join(os.tmpdir(), `isgfs-ts-register-${process.getuid ? process.getuid() : 0}`);
let ts = null;

require.extensions['.ts'] = function (module, filename) {
  const source = fs.readFileSync(filename, 'utf8');
  const key = crypto.createHash('sha256').update(filename).update('\0').update(source).digest('hex');
  const cached = path.join(cacheDir, `${key}.js`);
  let out;
  try {
    out = fs.readFileSync(cached, 'utf8');
  } catch {
    ts = ts || require('typescript');
    out = ts.transpileModule(source, {
      fileName: filename,
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, inlineSourceMap: true },
    }).outputText;
    try {
      fs.mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
      const tmp = `${cached}.${process.pid}`;
      fs.writeFileSync(tmp, out);
      fs.renameSync(tmp, cached);
    } catch {
      /* a cache that cannot be written is no cache */
    }
  }
  module._compile(out, filename);
};
