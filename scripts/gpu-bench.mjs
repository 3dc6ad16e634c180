#!/usr/bin/env node
// The CUDA benchmark of issue 4, run ON the GPU machine from the unpacked bundle (scripts/gpu-bench.sh).
// Everything a ratio needs is measured in this one run on this one card:
//   1. random-weight fp16 checkpoints (Llama-2-7B shape, GPT-2 small) written by transformers
//      (scripts/gpu-bench-hf.py make) under $ZINFER_BENCH_DIR (default /tmp/zinfer-bench);
//   2. the limits: device read bandwidth (a read-only kernel over 2 GiB), cuBLAS bf16 8192³, plus the
//      decode GEMVs on the 7B shapes (cudaMicrobench);
//   3. zinfer through createEngine and the engine's own step loop (engine.step(): scheduling, the
//      program's run, logits to the host, the sampler), f16 activations and KV cache, CUDA graphs:
//      decode at batch 1 (32-token prompt, median of 64 steps after 16), prefill of 2048 tokens (one step,
//      median of 3 after a warm-up), decode at batch 64 with 512-token prompts (median of the steps where
//      all 64 decode), GPT-2 small at batch 1;
//   4. the peer: transformers generate() on the same checkpoints and card (gpu-bench-hf.py peer), and
//      whether its greedy tokens match zinfer's;
//   5. if time is left, the batch-1 decode again with programmatic dependent launch (same tokens?).
// Profiling (scripts/gpu-bench-profile.mjs): every kernel of one eager decode step timed with CUDA events
// (GEMV GB/s per shape, µs for the rest, decode attention GB/s at batch 64), for each decode-GEMV variant
// (ZINFER_GEMV: v1, roll, occ), and the graphed decode per variant on the same program (same ids?).
// Writes $OUT/cuda-h100.json (the issue's keys plus card/date/commit, and the limits they are measured
// against) after every step, $OUT/gpu-bench-detail.json (everything, errors by step) and gpu-bench.log;
// prints a table last. A failed step leaves its keys null and the rest runs.
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, programChain, programDecode as harnessProgramDecode, promptIds } from './gpu-harness.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = process.env.OUT || join(tmpdir(), 'zinfer-gpu-bench');
const WORK = process.env.ZINFER_BENCH_DIR || '/tmp/zinfer-bench';
const BUDGET_S = Number(process.env.ZINFER_BENCH_BUDGET_S || 500); // leave room in a 9-minute call
// ZINFER_BENCH_SKIP=peer,prefill skips the steps whose names contain any of these words (a run
// that only needs some numbers; the peer's numbers from the last run stay valid for the same card).
const SKIP = (process.env.ZINFER_BENCH_SKIP || '').split(',').map((w) => w.trim()).filter(Boolean);
const T0 = performance.now();
const elapsed = () => (performance.now() - T0) / 1000;
mkdirSync(OUT, { recursive: true });
mkdirSync(WORK, { recursive: true });
const LOG = join(OUT, 'gpu-bench.log');
writeFileSync(LOG, '');
const log = (line = '') => {
  console.log(line);
  appendFileSync(LOG, `${line}\n`);
};

let core, cuda, testing;
try {
  core = await import('@zinfer/core');
  cuda = await import('@zinfer/kernels/cuda');
  testing = await import('@zinfer/core/testing');
} catch (e) {
  log(`SETUP: cannot import the built packages (${e.message}); run scripts/gpu-bundle.sh and unpack the bundle`);
  process.exit(2);
}
const { createEngine } = core;
const { stepBatch } = testing;
const { cudaBackend, cudaMicrobench, probeFailure, profileStep, summarizeProfile, GEMV_VARIANTS, gemvVariant, setGemvVariant, GEMV_NARROW_MODES, gemvNarrow, setGemvNarrow } = cuda;
const { DECODE_ATTENTION_ENTRIES, decodeAttentionVariant, setDecodeAttentionVariant, L2_PREFETCH_MODES, l2Prefetch, setL2Prefetch } = cuda;
const { BATCHED_GEMM_MODES, setBatchedGemmMode, setSampleClusterMode } = cuda;
const { profileDecode, decodeByVariant, profileTable, decodeBatch } = await import('./gpu-bench-profile.mjs');
const DEFAULT_GEMV = gemvVariant();
const DEFAULT_ATTENTION = decodeAttentionVariant();

const commit = (() => {
  try {
    return readFileSync(join(ROOT, 'COMMIT'), 'utf8').split('\n')[0].trim() || null;
  } catch {
    return null;
  }
})();
const dirty = (() => {
  try {
    return readFileSync(join(ROOT, 'COMMIT'), 'utf8').split('\n').slice(1).filter(Boolean).length > 0;
  } catch {
    return null;
  }
})();

// The issue's keys first; the limits and peers they are compared with after.
const result = {
  card: null, date: new Date().toISOString(), commit,
  decode_bs1_ms_per_token: null, roofline_bs1_ms_per_token: null, hf_decode_bs1_ms_per_token: null,
  decode_bs64_tokens_per_s: null, prefill_2048_tflops: null, cublas_bf16_tflops: null, gpt2_124m_decode_bs1_ms_per_token: null,
  device_read_gb_per_s: null, weight_bytes: null,
  decode_bs1_over_roofline: null, hf_over_zinfer_bs1: null, prefill_over_cublas: null,
  decode_bs64_step_ms: null, decode_bs64_floor_tokens_per_s: null, prefill_2048_ms: null,
  decode_bs1_pdl_ms_per_token: null, decode_bs1_no_pdl_ms_per_token: null, gpt2_124m_roofline_ms_per_token: null, hf_gpt2_124m_decode_bs1_ms_per_token: null,
  greedy_bs1_tokens_matching_hf: null,
  // The same decode steps through Program.run (no engine: no scheduling, no host sampler) and with the
  // argmax on the GPU (only token ids cross PCIe): what a sampling contract would give the engine.
  program_decode_bs1_ms: null, program_decode_bs1_argmax_ms: null, program_decode_bs64_ms: null, program_decode_bs64_argmax_ms: null,
  program_gpt2_124m_decode_bs1_ms: null, program_gpt2_124m_decode_bs1_argmax_ms: null,
  // Issue 4 profiling: the GEMV variant the engine steps used, the graphed Program.run decode per variant
  // (ms; with PDL too), whether every variant gave the same greedy ids, and per-kernel profiles of one
  // eager step (scripts/gpu-bench-profile.mjs).
  gemv_variant: DEFAULT_GEMV, decode_attention_variant: DEFAULT_ATTENTION,
  program_decode_ms_by_batched_gemm: null, program_decode_bs64_ms_by_attention: null, program_decode_bs64_argmax_ms_by_attention: null, attention_variants_same_ids: null, attention_variants_ids_agreement: null,
  program_decode_bs1_ms_by_gemv: null, program_decode_bs1_argmax_ms_by_gemv: null, program_decode_bs1_pdl_ms_by_gemv: null, program_decode_bs1_no_pdl_ms_by_gemv: null,
  program_gpt2_124m_decode_bs1_ms_by_gemv: null, gemv_variants_same_ids: null, gemv_mma_same_ids: null, gpt2_124m_gemv_mma_same_ids: null,
  decode_bs64_attention_gb_per_s: null,
  // The opt-in fp8 (e4m3) KV cache (the engine's limits.kvCacheDtype 'fp8'): the same batch-64 decode, its floor
  // (K/V bytes halved), the graphed 64-row step per decode attention variant, and the cache's blocks.
  decode_bs64_fp8_tokens_per_s: null, decode_bs64_fp8_step_ms: null, decode_bs64_fp8_floor_tokens_per_s: null,
  program_decode_bs64_fp8_ms_by_attention: null, kv_cache_blocks_f16_20gib: null, kv_cache_blocks_fp8_10gib: null,
  profile_bs1: null, profile_bs64: null, profile_gpt2_124m_bs1: null,
  // Graphed Program.run step minus the sum of its kernels' own times (eager profile), per GEMV variant:
  // what launch gaps and tails cost a replayed step (what PDL or fewer kernels can win).
  decode_bs1_gap_ms_by_gemv: null, gpt2_124m_decode_bs1_gap_ms_by_gemv: null,
  // The graphed batch-1 decode per L2 prefetch mode (off, attention, all: ZINFER_L2_PREFETCH; the engine's
  // steps ran with the mode l2_prefetch names), and whether every mode gave the same greedy ids.
  l2_prefetch: l2Prefetch(), program_decode_bs1_ms_by_l2: null, program_gpt2_124m_decode_bs1_ms_by_l2: null, l2_prefetch_same_ids: null,
  // GPT-2's narrow rows (768 inputs) on the one-warp GEMV or the 128-thread one (ZINFER_GEMV_NARROW; the engine
  // ran gemv_narrow), graphed, and whether both gave the same greedy ids.
  gemv_narrow: gemvNarrow(), program_gpt2_124m_decode_bs1_ms_by_narrow: null, gemv_narrow_same_ids: null,
};
const detail = { result, steps: {}, errors: {}, microbench: null, dirty, node: process.version };
const save = () => {
  writeFileSync(join(OUT, 'cuda-h100.json'), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(OUT, 'gpu-bench-detail.json'), `${JSON.stringify(detail, null, 2)}\n`);
};

/** Runs one step; a failure is logged with the step's name and recorded, and the bench goes on. */
async function step(name, fn, { minSeconds = 0 } = {}) {
  if (SKIP.some((w) => name.includes(w))) {
    detail.errors[name] = `skipped: ZINFER_BENCH_SKIP=${SKIP.join(',')}`;
    log(`SKIP [${name}] (ZINFER_BENCH_SKIP)`);
    save();
    return null;
  }
  if (BUDGET_S - elapsed() < minSeconds) {
    detail.errors[name] = `skipped: ${(BUDGET_S - elapsed()).toFixed(0)} s of the budget left, the step needs ~${minSeconds} s`;
    log(`SKIP [${name}] ${detail.errors[name]}`);
    save();
    return null;
  }
  const t = performance.now();
  log(`.. [${name}] at ${elapsed().toFixed(0)} s`);
  try {
    const r = await fn();
    const s = (performance.now() - t) / 1000;
    detail.steps[name] = { seconds: s, ...(r && typeof r === 'object' && !Array.isArray(r) ? r : {}) };
    log(`OK [${name}] ${s.toFixed(1)} s`);
    return r;
  } catch (e) {
    detail.errors[name] = `${e?.message ?? e}`.slice(0, 2000);
    log(`FAIL [${name}] ${detail.errors[name].replace(/\s+/g, ' ').slice(0, 600)}`);
    return null;
  } finally {
    save();
  }
}

function python(args, timeoutS) {
  const r = spawnSync('python3', [join(ROOT, 'scripts/gpu-bench-hf.py'), ...args], {
    encoding: 'utf8', timeout: timeoutS * 1000, maxBuffer: 64 << 20, env: { ...process.env, PYTHONUNBUFFERED: '1', NCCL_NVLS_ENABLE: '0' },
  });
  for (const line of (r.stderr || '').split('\n').filter(Boolean).slice(-12)) log(`   python: ${line.slice(0, 300)}`);
  if (r.error) throw new Error(`python3 ${args[0]}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`python3 ${args[0]} exited ${r.status}: ${(r.stderr || '').slice(-1500)}`);
  const last = r.stdout.trim().split('\n').pop();
  return JSON.parse(last);
}

/** Bytes of the checkpoint's tensors (the index's total_size, else the safetensors files). */
function weightBytes(dir) {
  const index = join(dir, 'model.safetensors.index.json');
  if (existsSync(index)) {
    const t = JSON.parse(readFileSync(index, 'utf8')).metadata?.total_size;
    if (t) return Number(t);
  }
  return readdirSync(dir).filter((f) => f.endsWith('.safetensors')).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
}

/** The harness's programDecode on this bench's step batches, 32 timed steps unless told. */
const programDecode = (program, o) => harnessProgramDecode(program, stepBatch, { steps: 32, ...o });

/** Median ms of the engine's steps in which all 64 sequences (512-token prompts, 48 new tokens each) decode. */
async function bs64StepMs(e) {
  const gens = Array.from({ length: 64 }, (_, i) => e.generate({ inputIds: promptIds(512, 32000, 1000 + i), maxTokens: 48, temperature: 0, ignoreEos: true }));
  const times = await stepTimes(e, { steps: 30, skip: 3, keep: (r) => r.tokens === 64 * r.steps && r.sequences === 64 });
  for (const g of gens) await settle(e, g);
  if (times.length < 5) throw new Error(`only ${times.length} steps decoded all 64 sequences`);
  return { ms: median(times), stepsTimed: times.length, minMs: Math.min(...times) };
}

/**
 * The graphed batch-1 decode on one program under each of `variants` (set by `set`), then `get`'s setting
 * restored: the GEMV variants, the L2 prefetch modes, the narrow-row GEMV modes.
 */
async function bs1ByVariant(program, { context, vocab }, variants, get, set) {
  const before = get();
  try {
    return await decodeByVariant({
      program, variants, setVariant: set,
      time: (argmax) => programDecode(program, { rows: 1, context, vocab, argmax }),
      ids: () => program.runArgmax(decodeBatch(stepBatch, { rows: 1, context, vocab, t: 3 })),
    });
  } finally {
    set(before);
    program.resetGraphs();
  }
}
const variantsOn = (program, o) => bs1ByVariant(program, o, GEMV_VARIANTS, () => DEFAULT_GEMV, setGemvVariant);

/**
 * Whether the GEMV variants' greedy ids agree: the FMA variants (and auto, FMA at 1 row) add in one order and must
 * give the same ids; mma adds in another, so its agreement (a near-tie may differ) is recorded apart (null: not run).
 */
function gemvIdsAgree(ids) {
  const fma = Object.entries(ids).filter(([v]) => v !== 'mma').map(([, x]) => JSON.stringify(x));
  return { same: fma.every((x) => x === fma[0]), mma: ids.mma === undefined ? null : JSON.stringify(ids.mma) === fma[0] };
}
const l2On = (program, o) => bs1ByVariant(program, o, L2_PREFETCH_MODES, l2Prefetch, setL2Prefetch);
const narrowOn = (program, o) => bs1ByVariant(program, o, GEMV_NARROW_MODES, gemvNarrow, setGemvNarrow);

/** Graphed step ms minus the profiled kernels' sum, per variant present in both. */
function gaps(ms, profile) {
  if (!ms || !profile) return null;
  return Object.fromEntries(Object.keys(ms).filter((v) => profile[v]).map((v) => [v, round(ms[v] - profile[v].kernelSumMs, 3)]));
}

/** Per-kernel profile of one eager decode step for each variant (or the default alone), default restored. */
async function profileOn(program, { rows, context, vocab, kvBytesPerToken, variants = GEMV_VARIANTS }) {
  try {
    return await profileDecode({
      program, profileStep, summarizeProfile, stepBatch, variants, setVariant: setGemvVariant,
      rows, context, vocab, readGBps: result.device_read_gb_per_s, kv: { bytesPerToken: kvBytesPerToken },
    });
  } finally {
    setGemvVariant(DEFAULT_GEMV);
  }
}

/**
 * Times engine.step() calls while `keep(report)` says the step counts; returns ms a step. A call that runs a
 * chain of decode steps (report.steps > 1, limits.decodeSteps) counts as that many steps of its mean time.
 */
async function stepTimes(engine, { steps, skip = 0, keep = () => true, until = () => false }) {
  const times = [];
  let taken = 0;
  while (taken < steps + skip && !until()) {
    const t = performance.now();
    const r = await engine.step();
    const ms = performance.now() - t;
    if (r.tokens === 0) break;
    if (!keep(r)) continue;
    if (taken >= skip) times.push(ms / r.steps);
    taken += r.steps;
  }
  return times;
}

// ---------------------------------------------------------------------------------------------------
log('== zinfer CUDA bench');
const backendOpts = { activations: 'f16', cacheDir: join(tmpdir(), 'zinfer-cuda-cache') };
/** The backend's default for programmatic dependent launch (the engine runs above use it). */
const DEFAULT_PDL = true;
const device = await cudaBackend(backendOpts).probe();
if (!device) {
  log(`NO GPU: ${probeFailure(0) ?? 'unknown reason'}`);
  detail.errors.probe = probeFailure(0);
  save();
  process.exit(3);
}
result.card = device.description.replace(/ \(sm_.*$/, '');
log(`device ${device.description}, ${(device.memoryBytes / 2 ** 30).toFixed(1)} GiB free; commit ${commit}${dirty ? ' (+ uncommitted changes)' : ''}`);
save();

const LLAMA = join(WORK, 'llama-2-7b-shape-f16');
const GPT2 = join(WORK, 'gpt2-124m-f16');
await step('write the Llama-2-7B-shape checkpoint (transformers, random fp16)', () => python(['make', '--shape', 'llama7b', '--out', LLAMA], 300));
await step('write the GPT-2 124M checkpoint', () => python(['make', '--shape', 'gpt2', '--out', GPT2], 120));
if (existsSync(LLAMA)) result.weight_bytes = weightBytes(LLAMA);

await step('limits: read bandwidth, cuBLAS bf16 8192³, decode GEMVs', () => {
  const m = cudaMicrobench(0);
  detail.microbench = m;
  result.device_read_gb_per_s = round(m.readGBps, 1);
  result.cublas_bf16_tflops = m.cublasBf16Tflops === null ? null : round(m.cublasBf16Tflops, 1);
  if (m.cublasError) throw new Error(`cuBLAS: ${m.cublasError}`);
  return { readGBps: m.readGBps, copyGBps: m.copyGBps };
});
if (result.weight_bytes && result.device_read_gb_per_s) result.roofline_bs1_ms_per_token = round(result.weight_bytes / (result.device_read_gb_per_s * 1e6), 3);

// The 7B model: batch-1 decode, 2048-token prefill, batch-64 decode, all on one engine.
const bs1Prompt = promptIds(32, 32000, 1);
writeFileSync(join(WORK, 'prompt-llama.json'), JSON.stringify(bs1Prompt));
let zinferTokens = null;
let engine = null;
let llamaBackend = null;
/** Graph captures/replays and any graph error of a backend's last program. */
const programStats = (be) => (be?.programs?.length ? { ...be.programs[be.programs.length - 1].stats } : null);
await step('load the 7B model (createEngine, f16)', async () => {
  const t = performance.now();
  llamaBackend = cudaBackend(backendOpts);
  engine = await createEngine({
    model: LLAMA, backend: llamaBackend, autoStep: false,
    limits: { kvCacheBytes: 20 * 2 ** 30, maxSequences: 64, maxBatchTokens: 4096, maxContext: 2560 },
  });
  result.kv_cache_blocks_f16_20gib = engine.kvBlocks.total;
  return { loadSeconds: (performance.now() - t) / 1000, kvBlocks: engine.kvBlocks.total };
}, { minSeconds: 60 });
if (engine) {
  await step('decode batch 1 (engine step loop)', async () => {
    const gen = engine.generate({ inputIds: bs1Prompt, maxTokens: 1 + 16 + 64, temperature: 0, ignoreEos: true });
    await engine.step(); // the prompt
    const times = await stepTimes(engine, { steps: 64, skip: 16 });
    const r = await settle(engine, gen);
    zinferTokens = r.tokens;
    result.decode_bs1_ms_per_token = round(median(times), 3);
    const stats = programStats(llamaBackend);
    if (stats?.graphError) log(`   graphs off: ${stats.graphError}`);
    return { stepsTimed: times.length, minMs: Math.min(...times), p90Ms: quantile(times, 0.9), program: stats };
  });
  await step('decode batch 1 through Program.run and runArgmax (no engine)', async () => {
    const program = llamaBackend.programs[llamaBackend.programs.length - 1];
    result.program_decode_bs1_ms = round(await programDecode(program, { rows: 1, context: 100, vocab: 32000, argmax: false }), 3);
    result.program_decode_bs1_argmax_ms = round(await programDecode(program, { rows: 1, context: 100, vocab: 32000, argmax: true }), 3);
  });
  await step('chained decode: runArgmaxSteps, ms a token, against runArgmax step by step (same ids?)', async () => {
    const program = llamaBackend.programs[llamaBackend.programs.length - 1];
    const by = {};
    for (const chain of [1, 2, 4, 8, 16]) by[chain] = await programChain(program, stepBatch, { rows: 1, context: 100, vocab: 32000, chain });
    const three = await programChain(program, stepBatch, { rows: 3, context: 100, vocab: 32000, chain: 4, calls: 4 }); // a padded bucket
    result.program_decode_bs1_chain_ms = Object.fromEntries(Object.entries(by).map(([k, v]) => [k, round(v.msPerToken, 3)]));
    result.chain_same_ids = Object.values(by).every((v) => v.same) && three.same;
    if (!result.chain_same_ids) throw new Error(`chained decode gave other ids: ${JSON.stringify({ by, three })}`);
    return { by, three };
  });
  await step('profile: every kernel of one eager batch-1 decode step, per GEMV variant', async () => {
    const program = llamaBackend.programs[llamaBackend.programs.length - 1];
    result.profile_bs1 = await profileOn(program, { rows: 1, context: 100, vocab: 32000, kvBytesPerToken: 2 * 4096 * 2 });
  });
  await step('GEMV variants: graphed batch-1 decode through Program.run, per variant', async () => {
    const program = llamaBackend.programs[llamaBackend.programs.length - 1];
    const r = await variantsOn(program, { context: 100, vocab: 32000 });
    result.program_decode_bs1_ms_by_gemv = r.ms;
    result.program_decode_bs1_argmax_ms_by_gemv = r.argmaxMs;
    result.decode_bs1_gap_ms_by_gemv = gaps(r.ms, result.profile_bs1);
    const agree = gemvIdsAgree(r.ids);
    result.gemv_variants_same_ids = agree.same;
    result.gemv_mma_same_ids = agree.mma;
    if (!agree.same) throw new Error(`GEMV variants gave different greedy ids: ${JSON.stringify(r.ids)}`);
    return r;
  });
  await step('L2 prefetch modes: graphed batch-1 decode through Program.run', async () => {
    const r = await l2On(llamaBackend.programs[llamaBackend.programs.length - 1], { context: 100, vocab: 32000 });
    result.program_decode_bs1_ms_by_l2 = r.ms;
    result.l2_prefetch_same_ids = r.sameIds;
    if (!r.sameIds) throw new Error(`the L2 prefetch changed the greedy ids: ${JSON.stringify(r.ids)}`);
    return r;
  });
  await step('prefill 2048 tokens (one step)', async () => {
    const times = [];
    for (let i = 0; i < 4; i++) {
      const gen = engine.generate({ inputIds: promptIds(2048, 32000, 100 + i), maxTokens: 1, temperature: 0, ignoreEos: true });
      const t = performance.now();
      const r = await engine.step();
      times.push(performance.now() - t);
      if (r.tokens !== 2048) throw new Error(`the prefill step computed ${r.tokens} tokens, not 2048`);
      await settle(engine, gen);
    }
    const ms = median(times.slice(1));
    result.prefill_2048_ms = round(ms, 2);
    result.prefill_2048_tflops = round(prefillFlops(LLAMA, 2048) / (ms * 1e9), 1);
    return { runsMs: times, flops: prefillFlops(LLAMA, 2048) };
  });
  await step('decode batch 64, 512-token prompts', async () => {
    const { ms, stepsTimed, minMs } = await bs64StepMs(engine);
    result.decode_bs64_step_ms = round(ms, 3);
    result.decode_bs64_tokens_per_s = round((64 / ms) * 1000, 0);
    // The floor: weights once plus every sequence's K and V (f16) once per step, at the read bandwidth.
    const kvBytesPerToken = 2 * 32 * 4096 * 2;
    if (result.device_read_gb_per_s && result.weight_bytes) {
      const floorMs = (result.weight_bytes + 64 * 536 * kvBytesPerToken) / (result.device_read_gb_per_s * 1e6);
      result.decode_bs64_floor_tokens_per_s = round((64 / floorMs) * 1000, 0);
    }
    return { stepsTimed, minMs };
  });
  await step('decode batch 64 through Program.run and runArgmax (no engine)', async () => {
    const program = llamaBackend.programs[llamaBackend.programs.length - 1];
    result.program_decode_bs64_ms = round(await programDecode(program, { rows: 64, context: 520, vocab: 32000, argmax: false, steps: 16 }), 3);
    result.program_decode_bs64_argmax_ms = round(await programDecode(program, { rows: 64, context: 520, vocab: 32000, argmax: true, steps: 16 }), 3);
    return { program: programStats(llamaBackend) };
  });
  await step('batched GEMMs (q|k|v, gate|up as one strided batch) on / off: graphed 16-, 32- and 64-row decode through Program.run', async () => {
    const program = llamaBackend.programs[llamaBackend.programs.length - 1];
    const out = {};
    try {
      for (const rows of [16, 32, 64]) {
        const r = await decodeByVariant({
          program, variants: BATCHED_GEMM_MODES, setVariant: setBatchedGemmMode,
          time: (argmax) => programDecode(program, { rows, context: 520, vocab: 32000, argmax, steps: 16 }),
          ids: () => program.runArgmax(decodeBatch(stepBatch, { rows, context: 520, vocab: 32000, t: 3 })),
        });
        out[`bs${rows}`] = { ms: r.ms, argmaxMs: r.argmaxMs, sameIds: r.sameIds };
      }
    } finally {
      setBatchedGemmMode('on');
      program.resetGraphs();
    }
    result.program_decode_ms_by_batched_gemm = out;
    return out;
  });
  await step('sampling: decode steps through runSample (picked on the GPU) against run() + the host pick, batch 1 and 64', async () => {
    const program = llamaBackend.programs[llamaBackend.programs.length - 1];
    const host = new core.HostRowSampler();
    const hostPick = (logits, rows, vocab) => host.pick(logits, rows, vocab);
    const nucleus = { temperature: 0.8, topK: 0, topP: 0.95, minP: 0, repetitionPenalty: 1 };
    const topK = { ...nucleus, topK: 50, topP: 1 };
    const out = {};
    for (const [rows, context] of [[1, 100], [64, 520]]) {
      const o = { rows, context, vocab: 32000, steps: 16 };
      const r = (out[`bs${rows}`] = { argmax_ms: round(await programDecode(program, { ...o, argmax: true }), 3) });
      // The sampler with each row on one block against the default split over a cluster (sample-launch.ts).
      for (const mode of ['auto', '1']) {
        setSampleClusterMode(mode);
        const tag = mode === 'auto' ? '' : `_cluster${mode}`;
        r[`sample_top_p${tag}_ms`] = round(await programDecode(program, { ...o, sample: nucleus }), 3);
        r[`sample_top_k${tag}_ms`] = round(await programDecode(program, { ...o, sample: topK }), 3);
      }
      setSampleClusterMode('auto');
      r.host_top_p_ms = round(await programDecode(program, { ...o, sample: nucleus, hostPick }), 3);
    }
    result.program_decode_sampling_ms = out;
    return out;
  });
  await step('profile: one eager batch-64 decode step at 520-token contexts, per decode attention variant (its GB/s)', async () => {
    const program = llamaBackend.programs[llamaBackend.programs.length - 1];
    try {
      result.profile_bs64 = await profileDecode({
        program, profileStep, summarizeProfile, stepBatch, variants: DECODE_ATTENTION_ENTRIES, setVariant: setDecodeAttentionVariant,
        rows: 64, context: 520, vocab: 32000, readGBps: result.device_read_gb_per_s, kv: { bytesPerToken: 2 * 4096 * 2 },
      });
    } finally {
      setDecodeAttentionVariant(DEFAULT_ATTENTION);
    }
    result.decode_bs64_attention_gb_per_s = Object.fromEntries(Object.entries(result.profile_bs64).map(([v, p]) => [v, p.kernels.find((k) => /^(attn_decode|attention_partial)/.test(k.what))?.GBps ?? null]));
  });
  await step('decode attention variants: graphed batch-64 decode through Program.run, per variant', async () => {
    const program = llamaBackend.programs[llamaBackend.programs.length - 1];
    try {
      const r = await decodeByVariant({
        program, variants: DECODE_ATTENTION_ENTRIES, setVariant: setDecodeAttentionVariant,
        time: (argmax) => programDecode(program, { rows: 64, context: 520, vocab: 32000, argmax, steps: 16 }),
        ids: () => program.runArgmax(decodeBatch(stepBatch, { rows: 64, context: 520, vocab: 32000, t: 3 })),
      });
      result.program_decode_bs64_ms_by_attention = r.ms;
      result.program_decode_bs64_argmax_ms_by_attention = r.argmaxMs;
      // Not bit-identical at batch 64 (both agree with the reference backend within tolerance in gpu-check and
      // gpu-fp8-check; with random weights near-ties flip): record how many of the 64 greedy ids agree.
      result.attention_variants_same_ids = r.sameIds;
      const [a, b] = DECODE_ATTENTION_ENTRIES.map((v) => r.ids[v]);
      result.attention_variants_ids_agreement = a.filter((id, i) => id === b[i]).length / a.length;
      return { sameIds: r.sameIds };
    } finally {
      setDecodeAttentionVariant(DEFAULT_ATTENTION);
      program.resetGraphs();
    }
  });
  await step('close the 7B engine', () => engine.close());
  engine = null;
}

await step('GPT-2 124M decode batch 1', async () => {
  const be = cudaBackend(backendOpts);
  const e = await createEngine({ model: GPT2, backend: be, autoStep: false, limits: { kvCacheBytes: 2 ** 28, maxSequences: 4, maxContext: 512 } });
  try {
    const gen = e.generate({ inputIds: promptIds(32, 50257, 7), maxTokens: 1 + 16 + 128, temperature: 0, ignoreEos: true });
    await e.step();
    const times = await stepTimes(e, { steps: 128, skip: 16 });
    await settle(e, gen);
    result.gpt2_124m_decode_bs1_ms_per_token = round(median(times), 3);
    if (result.device_read_gb_per_s) result.gpt2_124m_roofline_ms_per_token = round(weightBytes(GPT2) / (result.device_read_gb_per_s * 1e6), 4);
    const program = be.programs[be.programs.length - 1];
    result.program_gpt2_124m_decode_bs1_ms = round(await programDecode(program, { rows: 1, context: 100, vocab: 50257, argmax: false, steps: 64 }), 3);
    result.program_gpt2_124m_decode_bs1_argmax_ms = round(await programDecode(program, { rows: 1, context: 100, vocab: 50257, argmax: true, steps: 64 }), 3);
    result.profile_gpt2_124m_bs1 = await profileOn(program, { rows: 1, context: 100, vocab: 50257, kvBytesPerToken: 2 * 768 * 2 });
    const r = await variantsOn(program, { context: 100, vocab: 50257 });
    result.program_gpt2_124m_decode_bs1_ms_by_gemv = r.ms;
    result.program_gpt2_124m_decode_bs1_ms_by_l2 = (await l2On(program, { context: 100, vocab: 50257 })).ms;
    const nr = await narrowOn(program, { context: 100, vocab: 50257 });
    result.program_gpt2_124m_decode_bs1_ms_by_narrow = nr.ms;
    result.gemv_narrow_same_ids = nr.sameIds;
    result.gpt2_124m_decode_bs1_gap_ms_by_gemv = gaps(r.ms, result.profile_gpt2_124m_bs1);
    const agree = gemvIdsAgree(r.ids);
    result.gpt2_124m_gemv_mma_same_ids = agree.mma;
    if (!agree.same) throw new Error(`GEMV variants gave different greedy ids on GPT-2: ${JSON.stringify(r.ids)}`);
    return { minMs: Math.min(...times), p90Ms: quantile(times, 0.9), program: programStats(be) };
  } finally {
    await e.close();
  }
});

await step('transformers generate() on the 7B model (peer)', () => {
  const r = python(['peer', '--model', LLAMA, '--prompt', join(WORK, 'prompt-llama.json'), '--new-tokens', '64'], 240);
  result.hf_decode_bs1_ms_per_token = round(r.ms_per_token, 2);
  if (zinferTokens) {
    let k = 0;
    while (k < r.tokens.length && r.tokens[k] === zinferTokens[k]) k++;
    result.greedy_bs1_tokens_matching_hf = k;
  }
  return { ...r, tokens: r.tokens.slice(0, 24), zinfer: zinferTokens?.slice(0, 24) };
}, { minSeconds: 60 });

await step('transformers generate() on GPT-2 124M (peer)', () => {
  writeFileSync(join(WORK, 'prompt-gpt2.json'), JSON.stringify(promptIds(32, 50257, 7)));
  const r = python(['peer', '--model', GPT2, '--prompt', join(WORK, 'prompt-gpt2.json'), '--new-tokens', '64'], 120);
  result.hf_gpt2_124m_decode_bs1_ms_per_token = round(r.ms_per_token, 2);
  return { msPerToken: r.ms_per_token };
}, { minSeconds: 30 });

// Programmatic dependent launch flipped from the backend's default (on since 2026-11-28): the same batch-1
// decode, and the same tokens. The key names the setting it ran: decode_bs1_no_pdl_ms_per_token now.
await step('decode batch 1 with programmatic dependent launch flipped', async () => {
  const be = cudaBackend({ ...backendOpts, pdl: !DEFAULT_PDL });
  const e = await createEngine({ model: LLAMA, backend: be, autoStep: false, limits: { kvCacheBytes: 2 ** 30, maxSequences: 4, maxContext: 256 } });
  try {
    const gen = e.generate({ inputIds: bs1Prompt, maxTokens: 1 + 16 + 64, temperature: 0, ignoreEos: true });
    await e.step();
    const times = await stepTimes(e, { steps: 64, skip: 16 });
    const r = await settle(e, gen);
    result[DEFAULT_PDL ? 'decode_bs1_no_pdl_ms_per_token' : 'decode_bs1_pdl_ms_per_token'] = round(median(times), 3);
    result[DEFAULT_PDL ? 'decode_bs1_pdl_ms_per_token' : 'decode_bs1_no_pdl_ms_per_token'] = result.decode_bs1_ms_per_token;
    const same = zinferTokens && JSON.stringify(r.tokens) === JSON.stringify(zinferTokens);
    if (zinferTokens && !same) throw new Error(`tokens differ from the run with PDL ${DEFAULT_PDL ? 'on' : 'off'}: ${r.tokens.slice(0, 16)} vs ${zinferTokens.slice(0, 16)}`);
    const v = await variantsOn(be.programs[be.programs.length - 1], { context: 100, vocab: 32000 });
    result[DEFAULT_PDL ? 'program_decode_bs1_no_pdl_ms_by_gemv' : 'program_decode_bs1_pdl_ms_by_gemv'] = v.ms;
    return { sameTokens: same, program: programStats(be) };
  } finally {
    await e.close();
  }
}, { minSeconds: 90 });

// The opt-in fp8 KV cache: batch-64 decode at 512-token contexts, as above (the accuracy: gpu-fp8-check).
await step('decode batch 64 with the fp8 KV cache, 512-token prompts', async () => {
  const be = cudaBackend(backendOpts); // fp8 through the engine's limits.kvCacheDtype
  const e = await createEngine({ model: LLAMA, backend: be, autoStep: false, limits: { kvCacheBytes: 10 * 2 ** 30, maxSequences: 64, maxBatchTokens: 4096, maxContext: 2560, kvCacheDtype: 'fp8' } });
  try {
    const { ms, stepsTimed } = await bs64StepMs(e);
    result.decode_bs64_fp8_step_ms = round(ms, 3);
    result.decode_bs64_fp8_tokens_per_s = round((64 / ms) * 1000, 0);
    if (result.device_read_gb_per_s && result.weight_bytes) {
      const floorMs = (result.weight_bytes + 64 * 536 * 32 * 4096 * 2) / (result.device_read_gb_per_s * 1e6); // K and V, one byte each
      result.decode_bs64_fp8_floor_tokens_per_s = round((64 / floorMs) * 1000, 0);
    }
    result.kv_cache_blocks_fp8_10gib = e.kvBlocks.total; // kvBytesPerBlock halved: as many blocks in half the bytes
    const program = be.programs[be.programs.length - 1];
    const r = await decodeByVariant({
      program, variants: DECODE_ATTENTION_ENTRIES, setVariant: setDecodeAttentionVariant,
      time: (argmax) => programDecode(program, { rows: 64, context: 520, vocab: 32000, argmax, steps: 16 }),
      ids: () => program.runArgmax(decodeBatch(stepBatch, { rows: 64, context: 520, vocab: 32000, t: 3 })),
    }).finally(() => setDecodeAttentionVariant(DEFAULT_ATTENTION));
    result.program_decode_bs64_fp8_ms_by_attention = r.ms;
    return { kvBlocks: e.kvBlocks.total, stepsTimed, sameIdsAcrossAttentionVariants: r.sameIds, program: programStats(be) };
  } finally {
    await e.close();
  }
}, { minSeconds: 90 });

// Ratios against the limits and the peer, all from this run.
const ratio = (a, b, d = 3) => (a !== null && b !== null && b !== 0 ? round(a / b, d) : null);
result.decode_bs1_over_roofline = ratio(result.decode_bs1_ms_per_token, result.roofline_bs1_ms_per_token);
result.hf_over_zinfer_bs1 = ratio(result.hf_decode_bs1_ms_per_token, result.decode_bs1_ms_per_token, 1);
result.prefill_over_cublas = ratio(result.prefill_2048_tflops, result.cublas_bf16_tflops);
save();

// ---------------------------------------------------------------------------------------------------
const m = detail.microbench;
log('');
log(`== zinfer CUDA bench on ${result.card} (${result.date}, commit ${commit ?? '?'}${dirty ? '+' : ''}), ${elapsed().toFixed(0)} s`);
if (m) {
  log(`read ${m.readGBps.toFixed(0)} GB/s, copy ${m.copyGBps.toFixed(0)} GB/s; launch host ${m.launchHostUs.toFixed(2)} us`);
  for (const g of m.gemvSweep) log(`  GEMV f16 ${g.shape.padEnd(32)} ${String(g.variant).padEnd(4)} rows ${g.rows}: ${g.us.toFixed(1).padStart(6)} us = ${(100 * g.fractionOfRead).toFixed(0)}% of read`);
  if (m.gemvVariantMismatches?.length) log(`  GEMV variants NOT bit-identical to v1: ${m.gemvVariantMismatches.join(', ')}`);
  log(`  cuBLAS f16 prefill GEMMs: ${m.cublasPrefill.map((p) => `${p.shape} ${p.tflops.toFixed(0)} TFLOP/s`).join(', ')}`);
  log(`  cuBLAS f16 64-row GEMMs: ${m.cublasDecode64.map((p) => `${p.shape} ${p.us.toFixed(0)} us = ${(100 * p.fractionOfRead).toFixed(0)}% of read`).join(', ')}`);
  log(`  prefill layer, non-GEMM kernels: ${m.prefillKernels.map((p) => `${p.kernel} ${p.us.toFixed(0)} us`).join(', ')}`);
}
for (const [name, prof] of [['7B bs1', result.profile_bs1], ['7B bs64', result.profile_bs64], ['GPT-2 bs1', result.profile_gpt2_124m_bs1]]) {
  if (!prof) continue;
  log(`profile ${name} (one eager step, events per kernel; no graph, no PDL):`);
  for (const v of Object.keys(prof)) for (const line of profileTable(prof, v)) log(line);
}
const row = (key, value, target) => log(`${key.padEnd(38)} ${String(value ?? 'n/a').padStart(10)}   ${target}`);
row('decode_bs1_ms_per_token', result.decode_bs1_ms_per_token, `target ≤ 1.15 × roofline ${result.roofline_bs1_ms_per_token ?? '?'} (ratio ${result.decode_bs1_over_roofline ?? '?'})`);
row('decode_bs1_pdl_ms_per_token', result.decode_bs1_pdl_ms_per_token, 'same, with programmatic dependent launch');
row('decode_bs1_no_pdl_ms_per_token', result.decode_bs1_no_pdl_ms_per_token, 'same, without it');
row('program_decode_bs1_ms (argmax on GPU)', `${result.program_decode_bs1_ms ?? '?'} (${result.program_decode_bs1_argmax_ms ?? '?'})`, 'Program.run without the engine (runArgmax: ids only)');
row('program_decode_bs64_ms (argmax on GPU)', `${result.program_decode_bs64_ms ?? '?'} (${result.program_decode_bs64_argmax_ms ?? '?'})`, 'per 64-row step');
row('program_decode_sampling_ms', JSON.stringify(result.program_decode_sampling_ms), 'graphed step + pick: argmax, runSample (top-p 0.95 / top-k 50, T 0.8) on the GPU (a row split over a cluster; _cluster1: one block a row), run() + host pick');
row('program_decode_bs1_ms_by_gemv', JSON.stringify(result.program_decode_bs1_ms_by_gemv), `graphed, per GEMV variant (engine used ${DEFAULT_GEMV}); same ids: ${result.gemv_variants_same_ids}`);
row('decode_bs1_gap_ms_by_gemv', JSON.stringify(result.decode_bs1_gap_ms_by_gemv), 'graphed step − Σ kernel times (launch gaps and tails); GPT-2: ' + JSON.stringify(result.gpt2_124m_decode_bs1_gap_ms_by_gemv));
row('program_decode_bs1_pdl_ms_by_gemv', JSON.stringify(result.program_decode_bs1_pdl_ms_by_gemv), 'the same with PDL');
row('program_decode_bs1_no_pdl_ms_by_gemv', JSON.stringify(result.program_decode_bs1_no_pdl_ms_by_gemv), 'the same without PDL');
row('program_gpt2_124m_decode_bs1_ms_by_gemv', JSON.stringify(result.program_gpt2_124m_decode_bs1_ms_by_gemv), '');
row('program_gpt2_124m_decode_bs1_ms_by_narrow', JSON.stringify(result.program_gpt2_124m_decode_bs1_ms_by_narrow), `graphed, GPT-2's 768-wide rows on the one-warp or the 128-thread GEMV (engine: ${result.gemv_narrow}); same ids: ${result.gemv_narrow_same_ids}`);
row('program_decode_bs1_ms_by_l2', JSON.stringify(result.program_decode_bs1_ms_by_l2), `graphed, per L2 prefetch mode of the next GEMV's weights (engine: ${result.l2_prefetch}); same ids: ${result.l2_prefetch_same_ids}; GPT-2: ${JSON.stringify(result.program_gpt2_124m_decode_bs1_ms_by_l2)}`);
row('decode_bs64_attention_gb_per_s', JSON.stringify(result.decode_bs64_attention_gb_per_s), 'decode attention K/V bytes over its µs (one eager 64-row step), per variant');
row('decode_bs64_fp8_tokens_per_s', result.decode_bs64_fp8_tokens_per_s, `opt-in fp8 KV cache (floor ${result.decode_bs64_fp8_floor_tokens_per_s ?? '?'}; step ${result.decode_bs64_fp8_step_ms ?? '?'} ms; graphed by attention variant ${JSON.stringify(result.program_decode_bs64_fp8_ms_by_attention)})`);
row('program_decode_ms_by_batched_gemm', JSON.stringify(result.program_decode_ms_by_batched_gemm), 'graphed 16/32/64-row steps, side-by-side linears as one strided batch vs one GEMM each');
row('program_decode_bs64_ms_by_attention', JSON.stringify(result.program_decode_bs64_ms_by_attention), `graphed 64-row step per decode attention variant; same ids: ${result.attention_variants_same_ids} (agreement ${result.attention_variants_ids_agreement})`);
row('program_gpt2_124m_decode_bs1_ms (argmax)', `${result.program_gpt2_124m_decode_bs1_ms ?? '?'} (${result.program_gpt2_124m_decode_bs1_argmax_ms ?? '?'})`, '');
row('hf_decode_bs1_ms_per_token', result.hf_decode_bs1_ms_per_token, `target ≥ 12 × ours (${result.hf_over_zinfer_bs1 ?? '?'}×); greedy tokens matching: ${result.greedy_bs1_tokens_matching_hf ?? '?'}/64`);
row('decode_bs64_tokens_per_s', result.decode_bs64_tokens_per_s, `target ≥ 8000 (floor at read bandwidth: ${result.decode_bs64_floor_tokens_per_s ?? '?'}; step ${result.decode_bs64_step_ms ?? '?'} ms)`);
row('prefill_2048_tflops', result.prefill_2048_tflops, `target ≥ 0.6 × cuBLAS bf16 ${result.cublas_bf16_tflops ?? '?'} (ratio ${result.prefill_over_cublas ?? '?'}; ${result.prefill_2048_ms ?? '?'} ms)`);
row('gpt2_124m_decode_bs1_ms_per_token', result.gpt2_124m_decode_bs1_ms_per_token, `target ≤ 0.5 (roofline ${result.gpt2_124m_roofline_ms_per_token ?? '?'}; transformers ${result.hf_gpt2_124m_decode_bs1_ms_per_token ?? '?'})`);
const errs = Object.entries(detail.errors);
for (const [name, e] of errs) log(`ERROR [${name}] ${e.replace(/\s+/g, ' ').slice(0, 400)}`);
log(`results: ${join(OUT, 'cuda-h100.json')}, ${join(OUT, 'gpu-bench-detail.json')}`);
process.exit(errs.some(([, e]) => !e.startsWith('skipped')) ? 1 : 0);

// ---------------------------------------------------------------------------------------------------
function round(x, d) {
  return x === null || !Number.isFinite(x) ? null : Number(x.toFixed(d));
}

function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

/** Steps the engine until the stream settles (its request finished); returns the result. */
async function settle(e, gen) {
  let done = false;
  const p = gen.result.then((r) => ((done = true), r));
  for (let i = 0; i < 100000 && !done; i++) {
    if ((await e.step()).tokens === 0) await new Promise((r) => setImmediate(r));
  }
  return p;
}

/**
 * FLOPs of a prompt of n tokens through a Llama checkpoint's config: 2 × n × the per-token linear
 * weights (q, k, v, o, gate, up, down of every layer), the LM head for the one selected row, and causal
 * attention (QKᵀ and PV, 2 × 2 × headDim per query-key pair per head, n(n+1)/2 pairs).
 */
function prefillFlops(dir, n) {
  const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  const [h, L, inter, heads, vocab] = [c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.num_attention_heads, c.vocab_size];
  const kvHeads = c.num_key_value_heads ?? heads;
  const headDim = h / heads;
  const perLayer = h * heads * headDim + 2 * h * kvHeads * headDim + heads * headDim * h + 3 * h * inter;
  const attention = L * heads * 4 * headDim * ((n * (n + 1)) / 2);
  return 2 * n * L * perLayer + 2 * h * vocab + attention;
}
