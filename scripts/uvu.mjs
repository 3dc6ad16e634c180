#!/usr/bin/env node
// Runs one package's uvu suites (test/*.test.ts) with tsx, so tests import TypeScript sources directly.
// Usage (from a package folder): node ../../scripts/uvu.mjs [pattern]
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
// uvu's exports map hides package.json and bin.js; its main entry sits in dist/, next to the package root.
const uvuBin = join(dirname(require.resolve('uvu')), '..', 'bin.js');
const pattern = process.argv[2] ?? '\\.test\\.ts$';
const files = existsSync('test') ? readdirSync('test').filter((f) => new RegExp(pattern).test(f)) : [];
if (files.length === 0) {
  console.log('no test files in this package yet');
  process.exit(0);
}
const r = spawnSync(process.execPath, ['--import', 'tsx', uvuBin, 'test', pattern], { stdio: 'inherit' });
process.exit(r.status ?? 1);
