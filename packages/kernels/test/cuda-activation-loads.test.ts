// The kernels' sources read activations coherently (cuda/common.cuh, ld_act16 and load_act). Under PDL a kernel
// starts while the one before it still writes its input, and a non-coherent load (ld.global.nc: __ldg, or a
// plain read through a const __restrict__ pointer) may be issued before griddepcontrol.wait: session 21's mma
// GEMV read stale x that way on every 2–8-row 7B step while every small check passed. The SASS audit
// (src/cuda/sass-audit.ts) sees the compiled loads but not which pointer they read; these rules see the pointers.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const dir = fileURLToPath(new URL('../cuda/', import.meta.url));
const withoutComments = (src: string) => src.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
const sources = readdirSync(dir)
  .filter((f) => /\.cuh?$/.test(f))
  .map((file) => ({ file, text: withoutComments(readFileSync(dir + file, 'utf8')) }));

/** Each match of `re` in every source (bench.cu measures the read rate, with no kernel before it, and is left out), with its file. */
function uses(re: RegExp, skip: readonly string[] = []): { file: string; name: string }[] {
  return sources.filter((s) => !skip.includes(s.file)).flatMap((s) => [...s.text.matchAll(re)].map((m) => ({ file: s.file, name: m[1] })));
}

// The names of the pointers that hold weights (no kernel writes them): a GEMV's norm gain and bias, a linear's bias,
// a router's and a norm's weights and the rows of a weight stream (wp[i], wa, wb, we: a row of w).
const WEIGHTS = new Set(['w', 'b', 'bias', 'normW', 'normB', 'norm_w', 'wp', 'wa', 'wb', 'we']);

test('__ldg only in the weight loader and the attention cache reads (K/V of earlier steps, complete before the step)', () => {
  const files = uses(/__ldg\s*\(()/g).map((u) => u.file);
  assert.ok(files.length > 0, 'the loaders use __ldg');
  assert.equal([...new Set(files)].sort(), ['attention.cu', 'common.cuh']);
  const common = sources.find((s) => s.file === 'common.cuh')!.text;
  const loader = common.slice(common.indexOf('void load_n('), common.indexOf('void load_weight('));
  assert.is((common.match(/__ldg\s*\(/g) ?? []).length, (loader.match(/__ldg\s*\(/g) ?? []).length, 'common.cuh: __ldg outside load_n');
});

test('const __restrict__ pointers are weights only (the compiler may read them with ld.global.nc)', () => {
  const found = uses(/const\s+[\w:<>]+\s*\*\s*__restrict__\s+(\w+)/g);
  assert.ok(found.length > 0);
  const bad = found.filter((u) => !WEIGHTS.has(u.name));
  assert.equal(bad, [], `activations behind const __restrict__: ${bad.map((u) => `${u.file}: ${u.name}`).join(', ')}`);
});

test('load_weight, ld_stream16 and ld_small16 read weights only; activations go through load_act', () => {
  const weightReads = uses(/\b(?:load_weight\s*<[^>]*>|ld_stream16|ld_small16)\s*\(\s*(?!const\b)(\w+)/g, ['bench.cu']);
  assert.ok(weightReads.length >= 10, `${weightReads.length} weight reads found`);
  const bad = weightReads.filter((u) => !WEIGHTS.has(u.name));
  assert.equal(bad, [], `non-coherent reads of what may be activations: ${bad.map((u) => `${u.file}: ${u.name}`).join(', ')}`);
  const actReads = uses(/\bload_act\s*<[^>]*>\s*\(\s*(?!const\b)(\w+)/g);
  assert.ok(actReads.length >= 5, `${actReads.length} activation reads found`);
});

test.run();
