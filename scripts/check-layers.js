#!/usr/bin/env node
// Checks that imports point down only (../shared/DESIGN.md, docs/architecture.md "Layers"): a
// file may import from its own folder or from a folder of lower rank, never from one above it
// or beside it. Type-only imports count: they are dependencies a reader follows all the same.
// Prints each offending import and exits 1 when there is one.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');

/** Higher ranks may import lower ones. Keep in step with docs/architecture.md. */
const RANKS = {
  bin: 100,
  mount: 90,
  'src/repo': 80,
  'src/fs': 70,
  'src/snapshot': 65,
  'src/repair': 60,
  'src/pack': 55,
  'src/store': 50,
  'src/meta': 40,
  'src/block': 30,
  'src/chunk': 25,
  'src/head': 22,
  'src/backend': 20,
  'src/crypto': 20,
  'src/video': 15,
  'src/native': 10,
  'src/util': 0,
  'src/log.ts': 0,
  'src/errors.ts': 0,
};

/** The layer of a path relative to ROOT (an import target may lack its .ts), or null (bench, test). */
function layerOf(rel) {
  const parts = rel.split(path.sep);
  if (parts[0] !== 'src') return RANKS[parts[0]] !== undefined ? parts[0] : null;
  if (parts.length > 2) return `src/${parts[1]}`;
  const file = parts[1].endsWith('.ts') ? parts[1] : `${parts[1]}.ts`;
  return `src/${file}`;
}

function* sources(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* sources(p);
    else if (e.name.endsWith('.ts')) yield p;
  }
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+'([^']+)'|require\('([^']+)'\)|import\('([^']+)'\)/g;
const problems = [];
let files = 0;
for (const top of ['bin', 'mount', 'src']) {
  for (const file of sources(path.join(ROOT, top))) {
    files++;
    const rel = path.relative(ROOT, file);
    const from = layerOf(rel);
    if (from === null) {
      problems.push(`${rel}: in no layer (add its folder to scripts/check-layers.js and docs/architecture.md)`);
      continue;
    }
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2] ?? m[3];
      if (!spec.startsWith('.')) continue; // packages and node: builtins
      const target = path.relative(ROOT, path.resolve(path.dirname(file), spec));
      if (target.startsWith('bench') || target.startsWith('test')) {
        problems.push(`${rel}: imports ${spec} (production code never imports bench/ or test/)`);
        continue;
      }
      const to = layerOf(target);
      if (to === null || to === from) continue;
      if (RANKS[to] >= RANKS[from]) problems.push(`${rel}: imports ${spec} (${to}, rank ${RANKS[to]}) from ${from} (rank ${RANKS[from]})`);
    }
  }
}
for (const p of problems) console.log(p);
console.log(`layers: ${files} files, ${problems.length} import(s) against the layers`);
process.exit(problems.length ? 1 : 0);
