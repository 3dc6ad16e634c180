// The client runs in browsers: nothing it imports (transitively, within this package) may be a Node
// built-in or the ws package, and the package exports it as the './client' subpath.
import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const SRC = resolve(fileURLToPath(import.meta.url), '../../src');
const NODE_ONLY = new Set([...builtinModules, 'ws', 'prom-client', 'commander', 'cli-progress', '@zinfer/core', '@zinfer/kernels']);

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/gm)].filter((m) => !/^\s*(import|export)\s+type\s/.test(m[0])).map((m) => m[1]);
}

test('src/client.ts imports no Node-only module, transitively', () => {
  const seen = new Set<string>();
  const external = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const spec of importsOf(file)) {
      if (spec.startsWith('.')) visit(join(dirname(file), spec.replace(/\.js$/, '.ts')));
      else external.add(spec);
    }
  };
  visit(join(SRC, 'client.ts'));
  assert.ok(seen.size >= 3, `walked ${[...seen].join(', ')}`);
  const bad = [...external].filter((s) => s.startsWith('node:') || NODE_ONLY.has(s));
  assert.equal(bad, [], `node-only imports: ${bad.join(', ')}`);
  assert.equal([...external], ['msgpackr']);
});

test("package.json exports './client' (ESM and CJS) and the build has the entry", () => {
  const root = join(SRC, '..');
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { exports: Record<string, { import: { default: string }; require: { default: string } }> };
  assert.is(pkg.exports['./client'].import.default, './dist/client.js');
  assert.is(pkg.exports['./client'].require.default, './dist/client.cjs');
  assert.match(readFileSync(join(root, 'tsup.config.ts'), 'utf8'), "'client'");
});

test.run();
