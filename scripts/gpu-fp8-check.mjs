#!/usr/bin/env node
// Issue 4 on the GPU machine (run from the unpacked bundle: scripts/gpu-fp8-check.sh): the new kernel
// paths against the reference backend.
// In order (the budget may cut the last):
//   1-2. fp8: the opt-in fp8 (e4m3) KV cache. Long-context attention (prompt chunks, then decode steps,
//      GQA and a window) against the f32 reference, in f16 and f32 activations, and the fixture models'
//      prompt logits against transformers (f16 activations). e4m3 rounds every K and V element by up to
//      2^-4 of itself, so the bound is 0.1 of the output's largest magnitude (attention) and 0.1 relative
//      (logits, the 16-bit rule's measure); greedy tokens are reported, not required (random fixture
//      weights give near-ties). The default cache stays exact: gpu-check.mjs covers it unchanged.
//   1b. batch decode steps (16+ rows) over many sequences of mixed lengths, f16 and fp8 caches, against the
//      reference.
//   3. variants: the conformance cases that reach the decode GEMV and the decode attention, with every
//      GEMV variant (ZINFER_GEMV: roll, occ) and the pipelined decode attention, in f16 (1e-2) and bf16
//      (3e-2), the modes they are compiled for: bit-identical to v1, so they must pass as v1 does.
// Writes $OUT/gpu-fp8-check.json after every case and a table; never stops at a failure. ZINFER_FP8_CHECK_BUDGET_S
// (default 210) bounds it. ZINFER_FP8_CHECK_DRY=1 runs everything on the reference backend here (no GPU).
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { caseRunner, importPackages, teeLog } from './gpu-harness.mjs';
import { opGraphHelpers } from './gpu-op-graphs.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = process.env.OUT || join(tmpdir(), 'zinfer-gpu-fp8-check');
const BUDGET_S = Number(process.env.ZINFER_FP8_CHECK_BUDGET_S || 210);
const DRY = process.env.ZINFER_FP8_CHECK_DRY === '1';
const T0 = performance.now();
const elapsed = () => (performance.now() - T0) / 1000;
const log = teeLog(join(OUT, 'gpu-fp8-check.log'));

const [core, testing, cuda, reference] = await importPackages(['@zinfer/core', '@zinfer/core/testing', '@zinfer/kernels/cuda', '@zinfer/kernels/reference'], log);
const { createEngine, SafetensorsFile } = core;
const { kernelBackendConformance, relativeDifference } = testing;
const { cudaBackend, probeFailure, setGemvVariant, setDecodeAttentionVariant, gemvVariant, decodeAttentionVariant } = cuda;
const [GEMV_DEFAULT, ATTENTION_DEFAULT] = [gemvVariant(), decodeAttentionVariant()];
const { referenceBackend } = reference;

const results = { date: new Date().toISOString(), dry: DRY, device: null, cases: [] };
const save = () => writeFileSync(join(OUT, 'gpu-fp8-check.json'), `${JSON.stringify(results, null, 2)}\n`);
const runCase = caseRunner({ log, results, errLength: 600, after: save, skip: () => (elapsed() > BUDGET_S ? 'budget spent' : null) });

const cacheDir = join(tmpdir(), 'zinfer-cuda-cache');
const makeBackend = DRY ? () => referenceBackend() : (o) => cudaBackend({ cacheDir, poison: true, ...o });
const oracle = referenceBackend();
const device = await makeBackend({}).probe();
results.device = device;
if (!device) {
  log(`NO GPU: ${probeFailure(0) ?? 'unknown reason'}`);
  save();
  process.exit(3);
}
log(`== zinfer fp8 KV cache and kernel variants check on ${device.description}${DRY ? ' (DRY: reference backend)' : ''}`);

// 1. fp8: long-context attention against the f32 reference.
const { runSteps, longContextAttention, manySequenceAttention } = opGraphHelpers(core, testing);
const { range } = testing;
const FP8_BOUND = 0.1;
for (const [heads, kvHeads, headDim, window, act] of [[8, 2, 128, null, 'f16'], [4, 4, 64, 256, 'f32']]) {
  await runCase('fp8 attention', `long context heads ${heads}/${kvHeads} headDim ${headDim} window ${window} (${act}; bound ${FP8_BOUND})`, async () => {
    const { graph, tensors, kvCache, steps } = longContextAttention({ heads, kvHeads, headDim, window });
    const got = await runSteps(makeBackend({ activations: act, kvCacheDtype: 'fp8' }), graph, tensors, kvCache, steps);
    const want = await runSteps(oracle, graph, tensors, kvCache, steps);
    const errs = got.map((g, i) => relativeDifference(g, want[i]) || (g.some(Number.isNaN) ? Infinity : 0));
    const worst = Math.max(...errs);
    const msg = `rel err per step ${errs.map((e) => e.toExponential(1)).join(' ')}`;
    if (!(worst <= FP8_BOUND)) throw new Error(`${msg}: ${worst.toExponential(2)} > ${FP8_BOUND}`);
    return msg;
  });
}

// 1b. Batch decode steps (16 rows and more: the wide kernel of an f16 cache, the fp8 cache's loop) over many
// sequences of mixed lengths against the f32 reference, with an f16 cache (the 16-bit rule, 1e-2) and an fp8 one.
const F16_BOUND = 1e-2;
for (const [heads, kvHeads, headDim, sequences] of [[8, 2, 128, 40], [4, 4, 64, 16], [16, 16, 128, 17]]) {
  await runCase('batch decode', `${sequences} sequences, heads ${heads}/${kvHeads} headDim ${headDim}: f16 cache (≤ ${F16_BOUND}) and fp8 cache (≤ ${FP8_BOUND}) vs reference`, async () => {
    const { graph, tensors, kvCache, steps, prompts } = manySequenceAttention({ heads, kvHeads, headDim, sequences });
    const f16 = await runSteps(makeBackend({ activations: 'f16' }), graph, tensors, kvCache, steps);
    const fp8 = await runSteps(makeBackend({ activations: 'f16', kvCacheDtype: 'fp8' }), graph, tensors, kvCache, steps);
    const want = await runSteps(oracle, graph, tensors, kvCache, steps);
    const err = (a, b) => relativeDifference(a, b) || (a.some(Number.isNaN) ? Infinity : 0);
    const decode = range(steps.length - prompts).map((i) => prompts + i);
    const e16 = decode.map((i) => err(f16[i], want[i]));
    const e8 = decode.map((i) => err(fp8[i], want[i]));
    const msg = `decode steps of ${sequences} rows vs reference: f16 cache ${e16.map((e) => e.toExponential(1)).join(' ')}; fp8 cache ${e8.map((e) => e.toExponential(1)).join(' ')}`;
    if (!(Math.max(...e16) <= F16_BOUND) || !(Math.max(...e8) <= FP8_BOUND)) throw new Error(msg);
    return msg;
  });
}

// 2. fp8: fixture models' prompt logits and greedy tokens against transformers (f16 activations).
const FIXTURES = join(ROOT, 'fixtures/models');
for (const arch of readdirSync(FIXTURES).filter((x) => statSync(join(FIXTURES, x)).isDirectory())) {
  await runCase('fp8 fixtures f16', `${arch}: prompt logits (rel ≤ ${FP8_BOUND}) vs transformers; greedy tokens reported`, async () => {
    const expected = JSON.parse(readFileSync(join(FIXTURES, arch, 'expected.json'), 'utf8'));
    const f = SafetensorsFile.open(join(FIXTURES, arch, 'expected-logits.safetensors'));
    const t = f.read('logits');
    f.close();
    const vocab = t.shape[1];
    const engine = await createEngine({ model: join(FIXTURES, arch), backend: makeBackend({ activations: 'f16' }), limits: DRY ? {} : { kvCacheDtype: 'fp8' } });
    try {
      const r = await engine.generate({ inputIds: expected.input_ids, maxTokens: 16, temperature: 0, ignoreEos: true, promptLogits: true }).result;
      let worst = 0;
      r.promptLogits.forEach((row, p) => {
        worst = Math.max(worst, relativeDifference(row, t.data.subarray(p * vocab, (p + 1) * vocab)) || (row.some(Number.isNaN) ? Infinity : 0));
      });
      let same = 0;
      while (same < r.tokens.length && r.tokens[same] === expected.greedy_tokens[same]) same++;
      const msg = `rel err ${worst.toExponential(2)}; greedy tokens matching ${same}/${expected.greedy_tokens.length}`;
      if (!(worst <= FP8_BOUND)) throw new Error(`${msg}: over ${FP8_BOUND}`);
      return msg;
    } finally {
      await engine.close();
    }
  });
}

// 3. Variants through the conformance cases that reach them.
const reaches = /linear|attention|kv cache|decode|llama|graph/i;
for (const [label, set, reset] of [
  ['gemv v1', () => setGemvVariant('v1'), () => setGemvVariant(GEMV_DEFAULT)],
  ['gemv roll', () => setGemvVariant('roll'), () => setGemvVariant(GEMV_DEFAULT)],
  ['gemv occ', () => setGemvVariant('occ'), () => setGemvVariant(GEMV_DEFAULT)],
  ['decode attention v1', () => setDecodeAttentionVariant('v1'), () => setDecodeAttentionVariant(ATTENTION_DEFAULT)],
  ['decode attention pipe', () => setDecodeAttentionVariant('pipe'), () => setDecodeAttentionVariant(ATTENTION_DEFAULT)],
]) {
  for (const [activations, tolerance] of [['f16', 1e-2], ['bf16', 3e-2]]) {
    const be = makeBackend({ activations });
    for (const c of kernelBackendConformance(be, { oracle, ...(tolerance ? { tolerance } : {}) })) {
      if (!reaches.test(c.name)) continue;
      await runCase(`${label} ${activations}`, c.name, async () => {
        set();
        try {
          return await c.run();
        } finally {
          reset();
        }
      });
    }
  }
}

const count = (s) => results.cases.filter((c) => c.status === s).length;
log('');
log(`== fp8 / variants check: ${count('PASS')} passed, ${count('FAIL')} failed, ${count('SKIP')} skipped, ${elapsed().toFixed(0)} s`);
for (const c of results.cases.filter((c) => c.status === 'FAIL')) log(`FAIL [${c.group}] ${c.name}: ${c.detail}`);
save();
process.exit(count('FAIL') ? 1 : 0);
