#!/usr/bin/env node
// Where a batch-1 decode step's time goes, by model shape, on one GPU (issues 4 and 6): the full 7B and
// 13B Llama shapes, and the shapes one rank of a tensor-parallel 13B / 70B computes (a Llama whose heads,
// KV heads, intermediate size and vocabulary are the rank's slices: the same GEMVs, attention and
// launches as the rank, without its all-reduces). For each shape: weight bytes read per token, the
// graphed Program.run + device argmax time against weight bytes ÷ read bandwidth (measured in this run),
// per decode-GEMV variant (ZINFER_PROFILE_GEMV, default every variant; they are bit-identical) and per
// assignment of the variants in ZINFER_PROFILE_MIX (default v1,roll,occ) to the GEMVs by epilogue (q|k|v and
// the head / o and down / gate-up: every combination), and every kernel of one eager step timed with CUDA
// events (GEMV GB/s per shape, µs for the rest). ZINFER_PROFILE_SWEEP=1 adds the microbench's GEMV sweep
// (each variant alone, back to back; ~80 s).
// The gap between the graphed step and its limit, shape by shape, says whether tp ranks lose to per-kernel
// fixed costs (a gap that does not shrink with the slice) or to bandwidth.
// Synthetic weights (every layer serves layer 0's values; each layer has its own device copy).
// Usage (GPU machine, bundle unpacked: source scripts/gpu-unpack.sh): node $dir/scripts/gpu-shape-profile.mjs
//   ZINFER_SHAPES=7b,13b-tp4 picks shapes; ZINFER_PROFILE_ROWS=64 times steps of that many sequences (default 1),
//   ZINFER_PROFILE_CONTEXT=520 at that many cached positions each (default 100). ZINFER_PROFILE_WARP_MAX_IN=1024,2048
//   also times the graphed step with each bound on the one-warp GEMV's inputs (gemvWarpMaxIn);
//   ZINFER_PROFILE_SPLITS=auto,4,8 with each decode-attention split count (setDecodeSplits);
//   ZINFER_PROFILE_CLUSTER=auto,off with and without the decode attention's clusters (setDecodeCluster).
//   ZINFER_CUDA_TRACE=1 (kernels built with the trace: kernel-trace.ts) adds each shape's graphed timeline.
//   Writes $OUT/shape-profile.json and prints a table.
import { join } from 'node:path';
import { tmpdir } from 'node:os';

import { benchExitCode, importPackages, jsonWriter, programDecode, ratio, round, stepRunner, teeLog } from './gpu-harness.mjs';
import { decodeBatch, profileDecode } from './gpu-bench-profile.mjs';
import { SHAPES as PARALLEL_SHAPES } from './gpu-parallel-common.mjs';
import { SHAPES as MOE_SHAPES } from './gpu-moe-common.mjs';

const OUT = process.env.OUT || join(tmpdir(), 'zinfer-shape-profile');
const WORK = process.env.ZINFER_BENCH_DIR || '/tmp/zinfer-bench';
const log = teeLog(join(OUT, 'shape-profile.log'));
const [core, cuda, testing] = await importPackages(['@zinfer/core', '@zinfer/kernels/cuda', '@zinfer/core/testing'], log);

/** A tp rank's slice of a Llama shape: heads, KV heads (at least 1), intermediate and vocab divided by tp. */
const rankOf = (c, tp) => ({
  ...c, head_dim: c.hidden_size / c.num_attention_heads, num_attention_heads: c.num_attention_heads / tp, num_key_value_heads: Math.max(1, c.num_key_value_heads / tp),
  intermediate_size: c.intermediate_size / tp, vocab_size: c.vocab_size / tp,
});
const L13 = PARALLEL_SHAPES['llama-2-13b'];
const L70 = PARALLEL_SHAPES['llama-2-70b'];
const L7 = { ...L13, hidden_size: 4096, intermediate_size: 11008, num_attention_heads: 32, num_key_value_heads: 32, num_hidden_layers: 32 };
// mixtral-tp4: one rank of the Mixtral-8x7B shape under expert slicing over 4 GPUs (every expert's
// intermediate and the attention heads divided by 4, the router whole).
const SHAPES = { '7b': L7, '13b': L13, '13b-tp2': rankOf(L13, 2), '13b-tp4': rankOf(L13, 4), '70b-tp4': rankOf(L70, 4), 'mixtral-tp4': rankOf(MOE_SHAPES['mixtral-8x7b'], 4) };
const variants = (process.env.ZINFER_PROFILE_GEMV || cuda.GEMV_VARIANTS.join(',')).split(',').map((s) => s.trim()).filter(Boolean);
const mixVariants = (process.env.ZINFER_PROFILE_MIX ?? 'v1,roll,occ').split(',').map((s) => s.trim()).filter(Boolean);
const MIX_EPILOGUES = ['none', 'residual', 'gated'];
const mixes = MIX_EPILOGUES.reduce((acc) => acc.flatMap((a) => mixVariants.map((v) => [...a, v])), [[]]).filter((m) => m.length && new Set(m).size > 1);
const ROWS = Number(process.env.ZINFER_PROFILE_ROWS || 1);
const WARP_BOUNDS = (process.env.ZINFER_PROFILE_WARP_MAX_IN || '').split(',').filter(Boolean).map(Number);
const CONTEXT = Number(process.env.ZINFER_PROFILE_CONTEXT || 100);
const SPLITS = (process.env.ZINFER_PROFILE_SPLITS || '').split(',').map((s) => s.trim()).filter(Boolean);
const CLUSTERS = (process.env.ZINFER_PROFILE_CLUSTER || '').split(',').map((s) => s.trim()).filter(Boolean);
// ZINFER_PROFILE_KV=fp8: the opt-in fp8 cache.
const FP8 = process.env.ZINFER_PROFILE_KV === 'fp8';
const pick = (process.env.ZINFER_SHAPES || Object.keys(SHAPES).join(',')).split(',').map((s) => s.trim()).filter(Boolean);

const result = { card: null, rows: ROWS, context: CONTEXT, kv_cache: FP8 ? 'fp8' : 'f16', date: new Date().toISOString(), read_gb_per_s: null, shapes: {} };
const detail = { errors: {}, steps: {} };
const save = jsonWriter(OUT, [['shape-profile.json', result], ['shape-profile-detail.json', detail]]);
const { step } = stepRunner({ budgetS: Number(process.env.ZINFER_BENCH_BUDGET_S || 480), log, save, detail, errors: 'message' });

const headDim = (c) => c.head_dim ?? c.hidden_size / c.num_attention_heads;

/** Bytes a decode token reads: every weight but the embedding table, whose one row is noise (MoE: the router and the routed experts). */
function bytesPerToken(c) {
  const h = c.hidden_size, hd = headDim(c);
  const q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd;
  const mlp = c.num_local_experts ? c.num_local_experts * h + c.num_experts_per_tok * 3 * h * c.intermediate_size : 3 * h * c.intermediate_size;
  const layer = h * (q + 2 * kv) + q * h + mlp;
  return 2 * (c.num_hidden_layers * layer + c.vocab_size * h);
}

await step('read bandwidth', () => {
  const m = cuda.cudaMicrobench(0, { readOnly: process.env.ZINFER_PROFILE_SWEEP !== '1' });
  result.read_gb_per_s = round(m.readGBps, 1);
  result.card = m.device;
  result.gemv_sweep = m.gemvSweep.map((g) => ({ ...g, us: round(g.us, 2), GBps: round(g.GBps, 0), fractionOfRead: round(g.fractionOfRead, 3) }));
  result.gemv_variant_mismatches = m.gemvVariantMismatches;
  return { readGBps: m.readGBps, mismatches: m.gemvVariantMismatches };
});
log(`card ${result.card}, read ${result.read_gb_per_s} GB/s`);

/**
 * The graphed step's timeline (trace builds, ZINFER_CUDA_TRACE=1: kernel-trace.ts): TRACE_STEPS replays of
 * Program.run's graph, each kernel's block 0 recording when it reached its wait and when it was let go;
 * per kernel (named from one eager step's launches), the median µs from its release to the next one's.
 */
const TRACE_STEPS = 20;
async function traceGraphed(name, program, vocab) {
  const trace = cuda.CudaDevice.opened(0)?.trace;
  if (!trace) throw new Error('ZINFER_CUDA_TRACE=1 but device 0 has no trace buffer');
  const eager = await cuda.profileStep(program, decodeBatch(testing.stepBatch, { rows: ROWS, context: CONTEXT, vocab, t: 1 }));
  const names = eager.map((t) => (t.shape ? `${t.kernel} ${t.shape}` : t.kernel));
  program.resetGraphs();
  trace.reset();
  await programDecode(program, testing.stepBatch, { rows: ROWS, context: CONTEXT, vocab, argmax: false, steps: TRACE_STEPS - 4 });
  const records = trace.read();
  const t = cuda.summarizeTrace(records, TRACE_STEPS, names);
  const named = t.kernelsPerStep === names.length;
  log(`${name}: trace of ${t.steps} graphed steps, ${t.kernelsPerStep} kernels a step${named ? '' : ` (the eager step launched ${names.length}: named by grid)`}, first to last release ${round(t.stepUs, 1)} µs`);
  log(`   ${'kernel'.padEnd(56)} ${'×'.padStart(4)} ${'adds µs'.padStart(9)} ${'total µs'.padStart(9)} ${'early µs'.padStart(9)}`);
  for (const row of [...t.rows].sort((a, b) => b.addsTotalUs - a.addsTotalUs)) {
    log(`   ${row.what.slice(0, 56).padEnd(56)} ${String(row.count).padStart(4)} ${row.addsMedianUs.toFixed(2).padStart(9)} ${row.addsTotalUs.toFixed(1).padStart(9)} ${row.earlyMedianUs.toFixed(2).padStart(9)}`);
  }
  for (const m of t.marks) log(`   mark ${String(m.tag).padStart(2)} in ${m.what.slice(0, 44).padEnd(44)} ${m.afterReleaseMedianUs.toFixed(2).padStart(7)} µs after its release (×${m.count})`);
  return { ...t, marks: t.marks.map((m) => ({ ...m, afterReleaseMedianUs: round(m.afterReleaseMedianUs, 2) })), rows: t.rows.map((row) => ({ ...row, addsMedianUs: round(row.addsMedianUs, 2), addsTotalUs: round(row.addsTotalUs, 1), earlyMedianUs: round(row.earlyMedianUs, 2) })), named };
}

for (const name of pick) {
  const config = SHAPES[name];
  if (!config) {
    log(`unknown shape ${name}`);
    continue;
  }
  const r = (result.shapes[name] = { bytes_per_token: bytesPerToken(config), limit_ms: null, graphed_ms: null, over_limit: null, graphed_ms_by_gemv: {}, graphed_ms_by_mix: {}, best_mix: null, launches: null, kernel_sum_ms: null, kernels: null });
  r.limit_ms = result.read_gb_per_s ? round(r.bytes_per_token / (result.read_gb_per_s * 1e6), 3) : null;
  await step(`${name}: load, graphed decode, eager profile`, async () => {
    const dir = core.writeSyntheticModel(join(WORK, `shape-${name}`), config, { seed: 1, dtype: 'f16', std: 0.02, repeatLayer0: true });
    const backend = cuda.cudaBackend({ device: 0, activations: 'f16', cacheDir: '/tmp/zinfer-cuda-cache' });
    const kvBytesPerToken = 2 * config.num_key_value_heads * headDim(config) * (FP8 ? 1 : 2); // a layer's K and V of a position
    // The cache holds every row's context and the timed steps (128 tokens a row of headroom) over all layers: 4 GiB
    // was short of a 7B's 64 rows at 100 positions (session 21).
    const cacheGiB = Math.ceil((ROWS * (CONTEXT + 128) * kvBytesPerToken * config.num_hidden_layers) / 2 ** 30);
    const engine = await core.createEngine({ model: dir, backend, autoStep: false, limits: { kvCacheBytes: Math.max(CONTEXT > 100 ? 24 : 4, cacheGiB) * 2 ** 30, maxSequences: Math.max(8, ROWS), maxBatchTokens: Math.max(512, ROWS), maxContext: 1024, ...(FP8 ? { kvCacheDtype: 'fp8' } : {}) } });
    try {
      const program = backend.programs[backend.programs.length - 1];
      const vocab = config.vocab_size;
      const decode = async (steps) => round(await programDecode(program, testing.stepBatch, { rows: ROWS, context: CONTEXT, vocab, argmax: true, steps }), 3);
      const base = cuda.gemvVariant();
      const baseByEpilogue = cuda.gemvVariantByEpilogue(); // ZINFER_GEMV_BY_EPILOGUE, restored after the mixes
      const baseWarp = cuda.gemvWarpMaxIn();
      const baseSplits = cuda.decodeSplitsMode();
      const baseCluster = cuda.decodeClustersMode();
      try {
        for (const v of variants) {
          cuda.setGemvVariant(v);
          program.resetGraphs();
          r.graphed_ms_by_gemv[v] = await decode(48);
        }
        cuda.setGemvVariant(base);
        /** Graphed ms for each setting, the settings alternated twice so drift shows; then the base again. */
        const alternated = async (values, set, restore) => {
          const ms = {};
          for (const rep of [0, 1])
            for (const v of values) {
              set(v);
              program.resetGraphs();
              (ms[v] ??= []).push(await decode(48));
            }
          set(restore);
          return ms;
        };
        r.graphed_ms_by_warp_max_in = await alternated(WARP_BOUNDS, cuda.setGemvWarpMaxIn, baseWarp);
        r.graphed_ms_by_decode_splits = await alternated(SPLITS, cuda.setDecodeSplits, baseSplits);
        if (SPLITS.length) log(`${name}: graphed ms by decode-attention splits ${JSON.stringify(r.graphed_ms_by_decode_splits)}`);
        r.graphed_ms_by_decode_cluster = await alternated(CLUSTERS, cuda.setDecodeCluster, baseCluster);
        if (CLUSTERS.length) log(`${name}: graphed ms by decode-attention clusters ${JSON.stringify(r.graphed_ms_by_decode_cluster)}`);
        if (WARP_BOUNDS.length) log(`${name}: graphed ms by one-warp GEMV bound ${JSON.stringify(r.graphed_ms_by_warp_max_in)}`);
        for (const m of mixes) { // none/residual/gated
          cuda.setGemvVariantByEpilogue(Object.fromEntries(MIX_EPILOGUES.map((e, i) => [e, m[i]])));
          program.resetGraphs();
          r.graphed_ms_by_mix[m.join('/')] = await decode(32);
        }
      } finally {
        cuda.setGemvVariant(base);
        cuda.setGemvVariantByEpilogue(baseByEpilogue);
        cuda.setGemvWarpMaxIn(baseWarp);
        cuda.setDecodeSplits(baseSplits);
        program.resetGraphs();
      }
      const all = { ...Object.fromEntries(Object.entries(r.graphed_ms_by_gemv).map(([v, ms]) => [`${v}/${v}/${v}`, ms])), ...r.graphed_ms_by_mix };
      r.best_mix = Object.entries(all).sort((a, b) => a[1] - b[1]).slice(0, 5);
      log(`${name}: best (none/residual/gated) ${JSON.stringify(r.best_mix)}`);
      r.graphed_ms = r.graphed_ms_by_gemv[base] ?? Math.min(...Object.values(r.graphed_ms_by_gemv));
      r.over_limit = ratio(r.graphed_ms, r.limit_ms);
      log(`${name}: graphed ms by GEMV variant ${JSON.stringify(r.graphed_ms_by_gemv)}`);
      const p = await profileDecode({
        program, profileStep: cuda.profileStep, summarizeProfile: cuda.summarizeProfile, stepBatch: testing.stepBatch,
        variants: [cuda.gemvVariant()], setVariant: cuda.setGemvVariant, rows: ROWS, context: CONTEXT, vocab, readGBps: result.read_gb_per_s, kv: { bytesPerToken: kvBytesPerToken },
      });
      const v = Object.values(p)[0];
      r.launches = v.launches;
      r.kernel_sum_ms = v.kernelSumMs;
      r.gemv_sum_ms = v.gemvSumMs;
      r.kernels = v.kernels;
      log(`${name}: ${r.graphed_ms} ms graphed, limit ${r.limit_ms} (${r.over_limit}×), ${v.launches} launches, eager kernels ${v.kernelSumMs} ms (GEMVs ${v.gemvSumMs})`);
      for (const k of v.kernels) log(`   ${k.what.padEnd(48)} ×${String(k.count).padStart(3)}  ${String(k.medianUs).padStart(8)} µs${k.fractionOfRead !== null ? `  ${Math.round(k.fractionOfRead * 100)}% of read` : ''}`);
      if (cuda.traceBuild()) r.trace = await traceGraphed(name, program, vocab);
    } finally {
      await engine.close();
    }
  });
}
save();
log(`\nbest assignments (q|k|v and head / o and down / gate-up): ms`);
for (const [n, r] of Object.entries(result.shapes)) log(`${n.padEnd(10)} ${(r.best_mix ?? []).map(([m, ms]) => `${m} ${ms}`).join(', ')}`);
log(`\nshape       limit ms  graphed ms  × limit  launches  eager kernels ms  ${variants.map((v) => v.padStart(7)).join(' ')}`);
for (const [n, r] of Object.entries(result.shapes)) {
  const by = variants.map((v) => String(r.graphed_ms_by_gemv[v] ?? '—').padStart(7)).join(' ');
  log(`${n.padEnd(10)} ${String(r.limit_ms).padStart(9)} ${String(r.graphed_ms).padStart(11)} ${String(r.over_limit).padStart(8)} ${String(r.launches).padStart(9)} ${String(r.kernel_sum_ms).padStart(17)}  ${by}`);
}
process.exit(benchExitCode(detail));
