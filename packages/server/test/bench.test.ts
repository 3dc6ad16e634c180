// The benchmark command and its parts, without timing anything (benchmarks are commands, never timed
// tests): the random-model generator and its cache, the streaming safetensors writer, the cost model
// behind GFLOP/s and the roofline, the wasm read probe's hand-assembled module, and `zinfer bench` run
// end to end on the reference backend with a tiny model (--no-probes keeps it quick).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { bf16ToF32, createEngine, loadModel, SafetensorsFile } from '@zinfer/core';
import { referenceBackend } from '@zinfer/kernels/reference';
import { AVAILABLE_BACKENDS } from '../src/backends.js';
import { modelCost, prefillFlops } from '../src/bench/model-cost.js';
import { BENCH_SHAPES, llamaTensors, paramCount } from '../src/bench/model-shapes.js';
import { ensureRandomModel } from '../src/bench/random-model.js';
import { writeSafetensorsStreaming } from '../src/bench/safetensors-stream.js';
import { peakModuleBytes, simdPeakProbe } from '../src/bench/simd-peak-probe.js';
import { wasmReadProbe } from '../src/bench/wasm-read-probe.js';

// The parts of the WebAssembly global used here (lib ES2022 and @types/node 20 do not declare it).
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
  validate(bytes: Uint8Array): boolean;
};

const ROOT = resolve(fileURLToPath(import.meta.url), '../../../..');
const CLI = join(ROOT, 'packages/server/src/cli.ts');
const REQUIRED = [
  'decode_bs1_tokens_per_s', 'decode_bs8_tokens_per_s', 'prefill_512_tokens_per_s', 'prefill_gflops', 'dram_read_gb_per_s', 'reference_gemm_gflops',
  'decode_bs1_roofline_ratio', 'prefill_vs_reference_gemm', 'weight_bytes', 'threads', 'backend', 'model_shape',
];
/** Keys that need the probes: null under --no-probes. */
const PROBED = [
  'dram_read_gb_per_s', 'reference_gemm_gflops', 'decode_bs1_roofline_ratio', 'prefill_vs_reference_gemm',
  'unrestricted_gemm_gflops', 'prefill_vs_unrestricted_gemm', 'wasm_simd_ceiling_gflops', 'prefill_vs_wasm_simd_ceiling',
];

function withTmp<T>(fn: (dir: string) => T | Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'zinfer-bench-'));
  return Promise.resolve(fn(dir)).finally(() => rmSync(dir, { recursive: true, force: true }));
}

function zinfer(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('the llama-1b shape is TinyLlama-1.1B: 1.1 B parameters, 2.2 GB in bf16', () => {
  const params = paramCount(llamaTensors(BENCH_SHAPES['llama-1b']));
  assert.is(params, 1_100_048_384);
  assert.ok(paramCount(llamaTensors(BENCH_SHAPES.tiny)) * 2 < 4e6, 'tiny is a few MB');
});

test('random model: a sharded HF directory that createEngine runs with finite logits, then reused from cache', () =>
  withTmp(async (cache) => {
    const first = ensureRandomModel({ shape: 'tiny', dtype: 'bf16', cacheDir: cache, maxShardBytes: 600_000 });
    assert.is(first.reused, false);
    assert.is(first.dir, join(cache, 'tiny-bf16'));
    assert.ok(first.shards > 1, 'small shards give an index');
    const files = readdirSync(first.dir).sort();
    assert.ok(files.includes('config.json') && files.includes('model.safetensors.index.json'), files.join(', '));
    assert.not.ok(files.some((f) => f.startsWith('tokenizer')), 'no tokenizer');
    assert.is(JSON.parse(readFileSync(join(first.dir, 'config.json'), 'utf8')).model_type, 'llama');

    const m = await loadModel(first.dir);
    assert.is(m.weights.byteSize(), first.weightBytes);
    m.weights.close();
    const engine = await createEngine({ model: first.dir, backend: referenceBackend() });
    try {
      const r = await engine.generate({ inputIds: [5, 6, 7, 8], maxTokens: 3, promptLogits: true, ignoreEos: true }).result;
      assert.is(r.tokens.length, 3);
      assert.ok(r.promptLogits!.every((row) => row.every(Number.isFinite)), 'finite logits');
    } finally {
      await engine.close();
    }

    const mtime = statSync(join(first.dir, 'config.json')).mtimeMs;
    const again = ensureRandomModel({ shape: 'tiny', dtype: 'bf16', cacheDir: cache, maxShardBytes: 600_000 });
    assert.is(again.reused, true);
    assert.is(statSync(join(first.dir, 'config.json')).mtimeMs, mtime, 'nothing rewritten');

    writeFileSync(join(first.dir, 'config.json'), '{"model_type": "llama", "hidden_size": 1}');
    assert.is(ensureRandomModel({ shape: 'tiny', dtype: 'bf16', cacheDir: cache, maxShardBytes: 600_000 }).reused, false, 'a changed config is regenerated');
    assert.is(ensureRandomModel({ shape: 'tiny', dtype: 'bf16', cacheDir: cache, seed: 1, maxShardBytes: 600_000 }).reused, false, 'another seed is another model');
  }));

test('random model: same seed, same bytes; values normal-ish with the planned std', () =>
  withTmp((cache) => {
    const a = ensureRandomModel({ shape: 'tiny', dtype: 'bf16', cacheDir: join(cache, 'a') });
    const b = ensureRandomModel({ shape: 'tiny', dtype: 'bf16', cacheDir: join(cache, 'b') });
    assert.is(a.shards, 1);
    assert.ok(readFileSync(join(a.dir, 'model.safetensors')).equals(readFileSync(join(b.dir, 'model.safetensors'))), 'deterministic');
    const f = SafetensorsFile.open(join(a.dir, 'model.safetensors'));
    try {
      const w = f.read('model.layers.0.mlp.down_proj.weight'); // std 1/√352
      const xs = Array.from(w.data, (h) => bf16ToF32(h));
      const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
      const std = Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length);
      assert.ok(Math.abs(mean) < 0.002, `mean ${mean}`);
      assert.ok(Math.abs(std * Math.sqrt(352) - 1) < 0.02, `std ${std}`);
      assert.ok(Array.from(f.read('model.norm.weight').data).every((h) => bf16ToF32(h) === 1), 'norm weights are ones');
    } finally {
      f.close();
    }
  }));

test('streaming safetensors writer: chunked tensors read back exactly (f32, several chunks)', () =>
  withTmp((dir) => {
    const path = join(dir, 'x.safetensors');
    const tensors = [{ name: 'a', shape: [3, 5] }, { name: 'big', shape: [4 * 2 ** 20 + 3] }];
    writeSafetensorsStreaming(path, 'f32', tensors, (t, out, start) => {
      for (let i = 0; i < out.length; i++) out[i] = (t.name === 'a' ? 1000 : 0) + start + i;
    });
    const f = SafetensorsFile.open(path);
    try {
      assert.equal(Array.from(f.read('a').data), Array.from({ length: 15 }, (_, i) => 1000 + i));
      const big = f.read('big').data;
      assert.is(big.length, 4 * 2 ** 20 + 3);
      assert.is(big[4 * 2 ** 20 + 2], 4 * 2 ** 20 + 2, 'the last chunk continues where the first ended');
      assert.equal(f.metadata, { format: 'pt' });
    } finally {
      f.close();
    }
  }));

test('cost model: decode reads every linear and norm weight plus one embedding row; prefill FLOPs by formula', async () => {
  await withTmp(async (cache) => {
    const s = BENCH_SHAPES.tiny;
    const m = await loadModel(ensureRandomModel({ shape: 'tiny', dtype: 'bf16', cacheDir: cache }).dir);
    const c = modelCost(m.graph, m.weights.byteSize());
    m.weights.close();
    const headDim = s.hiddenSize / s.numHeads;
    const layerMatmul = 2 * s.hiddenSize * s.hiddenSize + 2 * s.hiddenSize * s.numKeyValueHeads * headDim + 3 * s.hiddenSize * s.intermediateSize;
    const lmHead = s.vocabSize * s.hiddenSize;
    assert.is(c.bytesPerParam, 2);
    assert.is(c.tokenMatmulParams, s.numLayers * layerMatmul);
    assert.is(c.selectedMatmulParams, lmHead);
    assert.is(c.decodeWeightBytes, 2 * (s.numLayers * (layerMatmul + 2 * s.hiddenSize) + s.hiddenSize + lmHead + s.hiddenSize));
    const T = 512;
    const attention = s.numLayers * 2 * s.numHeads * headDim * T * (T + 1);
    assert.is(prefillFlops(c, T), 2 * T * s.numLayers * layerMatmul + 2 * lmHead + attention);
  });
});

test('wasm read probe: the hand-assembled module validates and reads', async () => {
  const r = await wasmReadProbe(2, 64, 1);
  assert.is(r.bytes, 64 * 2 ** 20);
  assert.ok(Number.isFinite(r.gbPerS) && r.gbPerS > 0, String(r.gbPerS));
});

test('wasm SIMD ceiling probe: the hand-assembled modules compute their chains (mul+add and FMA) and time them', async () => {
  // m = 1: 10 iterations are 20 turns; mul+add: 6 chains stay 1, 6 grow by 1 a turn; FMA: all 12 grow.
  const lane0 = (fma: boolean) => (new WebAssembly.Instance(new WebAssembly.Module(peakModuleBytes(fma))).exports.peak as (n: number, m: number) => number)(10, 1);
  assert.is(lane0(false), 6 + 6 * 21);
  const r = await simdPeakProbe(1, 1, 1e5);
  assert.ok(Number.isFinite(r.gflops) && r.gflops > 0, String(r.gflops));
  if (r.fma || WebAssembly.validate(peakModuleBytes(true))) assert.is(lane0(true), 12 * 21);
  assert.match(r.detail, /12 independent f32x4 chains/);
});

test('zinfer bench --backend reference --shape tiny --no-probes: table on stdout, every required key in the JSON', () =>
  withTmp((dir) => {
    const json = join(dir, 'out.json');
    const results = join(dir, 'results');
    const r = zinfer('bench', '--backend', 'reference', '--shape', 'tiny', '--tokens', '4', '--repeat', '1', '--no-probes',
      '--json', json, '--results-dir', results, '--cache-dir', join(dir, 'cache'));
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stdout, /\| decode, batch 1 +\|/);
    assert.match(r.stdout, /\| prefill, 512-token prompt +\|/);
    const rec = JSON.parse(readFileSync(json, 'utf8')) as Record<string, unknown>;
    for (const k of REQUIRED) assert.ok(k in rec, `key ${k}`);
    for (const k of REQUIRED.filter((k) => !PROBED.includes(k) && !['backend', 'model_shape'].includes(k))) {
      assert.ok(typeof rec[k] === 'number' && Number.isFinite(rec[k]) && (rec[k] as number) > 0, `${k} = ${String(rec[k])}`);
    }
    for (const k of PROBED) assert.is(rec[k], null, `${k} is null without probes`);
    assert.is(rec.backend, 'reference');
    assert.is(rec.model_shape, 'tiny');
    assert.is(rec.card, null);
    assert.type(rec.cpu, 'string');
    assert.ok(!Number.isNaN(Date.parse(rec.date as string)), 'an ISO date');
    const saved = readdirSync(results);
    assert.is(saved.length, 1);
    assert.match(saved[0], /^reference-tiny-[a-z0-9-]+-\d+c\.json$/);
    assert.equal(JSON.parse(readFileSync(join(results, saved[0]), 'utf8')), rec);
  }));

test('zinfer bench --model DIR: a fixture checkpoint, named in model_shape', () =>
  withTmp((dir) => {
    const json = join(dir, 'out.json');
    const r = zinfer('bench', '--backend', 'reference', '--model', 'fixtures/models/llama3', '--tokens', '3', '--batch', '2', '--prompt-tokens', '32',
      '--repeat', '1', '--no-probes', '--json', json, '--results-dir', dir);
    assert.is(r.code, 0, r.stderr);
    const rec = JSON.parse(readFileSync(json, 'utf8')) as Record<string, unknown>;
    assert.is(rec.model_shape, 'model:llama3');
    assert.ok((rec.decode_bs2_tokens_per_s as number) > 0 && (rec.prefill_32_tokens_per_s as number) > 0);
  }));

const BAD: [string[], number, RegExp][] = [
  [['--tokens', '1'], 2, /--tokens/],
  [['--shape', 'huge'], 2, /--shape/],
  [['--model', 'no/such/dir'], 1, /--model.*does not exist/],
  [['--model', 'fixtures/models/llama3', '--shape', 'tiny'], 2, /--model|--shape/],
  ...(AVAILABLE_BACKENDS.includes('cpu') ? [] : [[['--backend', 'cpu'], 1, /backend cpu is not available in this build yet/] as [string[], number, RegExp]]),
];

for (const [args, code, names] of BAD) {
  test(`bench ${args.join(' ')} → exit ${code}, one line naming the flag`, () => {
    const r = zinfer('bench', '--backend', 'reference', ...args);
    assert.is(r.code, code, r.stderr);
    assert.is(r.stdout, '');
    // One `zinfer:` line, last; before it only `bench:` progress or a busy-machine warning.
    const lines = r.stderr.trimEnd().split('\n');
    assert.match(lines.at(-1)!, /^zinfer: /);
    assert.ok(lines.slice(0, -1).every((l) => l.startsWith('bench: ')), r.stderr);
    assert.match(lines.at(-1)!, names);
  });
}

test.run();
