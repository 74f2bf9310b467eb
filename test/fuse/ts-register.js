// Lets a child `node` run the TypeScript sources directly (node -r test/fuse/ts-register.js x.ts):
// the FUSE test servers then run the current mount/ and bench/ code, not a possibly stale dist/.
const fs = require('fs');
const ts = require('typescript');

require.extensions['.ts'] = function (module, filename) {
  const out = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
    fileName: filename,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, inlineSourceMap: true },
  });
  module._compile(out.outputText, filename);
};
