#!/usr/bin/env node
// The multi-GPU benchmark (issue 6; a Mixtral section for issue 7 when the backend runs MoE ops), run ON a
// machine of several GPUs from the unpacked bundle by scripts/gpu-parallel.sh. Every model is a
// synthetic-weight directory (config.json + zinfer-synthetic.json, fp16): no checkpoint on disk, and each
// tensor-parallel rank generates only its own shards, in its own thread. Steps, most important first
// (each skipped when the time left, ZINFER_PARALLEL_BENCH_BUDGET_S, cannot finish it):
//   1. HBM read bandwidth of every GPU: cudaMicrobench(i)'s read-only kernel over 2 GiB, one process per
//      GPU, all at once;
//   2. Llama-2-13B shape at tp1, tp2, tp4: batch-1 greedy decode through engine.step() (32-token prompt,
//      median of 64 steps after 16) against its HBM limit, tokens of tp2 / tp4 against tp1; while each
//      engine is loaded, the Program.run time of 16/32/64-row decode steps (for the bubble below) and,
//      for tp1 and tp4, the 64 × 512 throughput;
//   3. Llama-2-70B shape at tp4: batch-1 decode against the HBM limit = the bytes one rank reads per token
//      (its shards of every weight but the embedding table, of which it reads one row) ÷ the slowest
//      GPU's read bandwidth;
//   4. throughput on the 13B shape, 64 sequences × 512-token prompts, 48 new tokens each (median of the
//      steps in which all 64 decode): pp4, tp2 × pp2 (tp4 and tp1 came with step 2) and 4 independent
//      replicas: 4 single-GPU engines in 4 child processes (scripts/gpu-parallel-replica.mjs), one per
//      GPU, loaded first, then measured in lock-step (64 sequences each, then 16 each); the figure is
//      their sum;
//   5. Mixtral-8x7B shape (bf16) at tp4, batch-1 decode, only when the backend supports every node, and
//      only when ZINFER_PARALLEL_BENCH_ONLY names it (`Mixtral`): on 4 × H200 it did not finish in the
//      call's time in sessions 12 and 14 (~7 minutes spent), and scripts/gpu-moe.sh measures that shape
//      with every MoE strategy.
// Tensor-parallel decode runs twice, in the same run: with the peer-memory all-reduce for small messages
// (the default; keys without a suffix) and with NCCL for everything (ZINFER_PEER_ALLREDUCE=0, keys with
// `_nccl`), one engine load each (workers read the variable when they start).
// Every step has its own budget (BUDGETS below): it is skipped when the run's budget left cannot hold its
// minimum, and its extras (row sweep, throughput) run only while its own share lasts, so a slow step
// cannot starve the throughput rows after it. Synthetic weights repeat layer 0 in every layer
// (weights_repeat_layer0: see syntheticModel), which cut 13B tp1's load from 96 s to a few seconds.
// Pipeline bubble (the launcher exposes no per-stage busy time, so it is derived): a pipeline of S stages
// and t-way tensor slicing runs a 64-row decode step as M micro-batches (M = S, the decode default); each
// stage holds 1/S of the layers, so one micro-batch of 64/M rows keeps it busy ≈ T_t(64/M) / S, where
// T_t(r) is the measured Program.run time of an r-row decode step of the whole model at tp t (step 2).
// busy = M · T_t(64/M) / S per step, bubble = 1 − busy / T_step, T_step the pipeline's own Program.run
// time of the 64-row step at the same context. It assumes balanced stages (40 layers / S; the embedding
// and LM head, ≈1.3% of the weights, are spread evenly instead of sitting on the first and last stage).
// Results: $OUT/parallel-h100.json (flat named numbers, card, gpus, date, commit; written after every step),
// $OUT/parallel-bench-detail.json (everything, errors by step), $OUT/parallel-bench.log. Locally,
// ZINFER_PARALLEL_BENCH_BACKEND=cpu|reference runs every step on tiny shapes (parallel-<backend>-tiny.json).
// ZINFER_PARALLEL_BENCH_ONLY=word,… runs only the steps whose names contain one of the words, and the HBM
// bandwidth step, which every limit needs (the pipeline bubbles need the tp step of their tensor width:
// `13B tp1:` for pp4, `13B tp2:` for tp2 × pp2).
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchExitCode, commitLines, importPackages, jsonWriter, probeDevices, ratio, round, stepRunner, teeLog } from './gpu-harness.mjs';
import { microbenchProcess, runReplicas } from './gpu-parallel-children.mjs';
import { bytesPerRankPerToken, capturingBackend, capturingStrategy, decodeBs1, makeBackend, programDecode, rankLoop, SHAPES, syntheticModel, throughput, throughputAuto } from './gpu-parallel-common.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const BACKEND = process.env.ZINFER_PARALLEL_BENCH_BACKEND || 'cuda';
const LOCAL = BACKEND !== 'cuda';
const OUT = process.env.OUT || join(tmpdir(), 'zinfer-parallel-bench');
const WORK = process.env.ZINFER_BENCH_DIR || join(tmpdir(), 'zinfer-parallel-models');
const BUDGET_S = Number(process.env.ZINFER_PARALLEL_BENCH_BUDGET_S || 480);
/** ZINFER_PARALLEL_BENCH_ONLY=replicas,pp4 runs only the steps whose names contain one of these words. */
const ONLY = (process.env.ZINFER_PARALLEL_BENCH_ONLY || '').split(',').map((w) => w.trim()).filter(Boolean);
/** ZINFER_PEER_ALLREDUCE=0 at start (gpu-parallel.sh sets it when the all-reduce check failed): NCCL for every run. */
const NO_PEER = process.env.ZINFER_PEER_ALLREDUCE === '0';
/** The Lamport kernel's limit at start (restored after a `oneshot` run). */
const LL_BYTES = process.env.ZINFER_PEER_ALLREDUCE_LL_BYTES;
/** Seconds per step on 4 × H100: [minimum to start it, its share] (extras stop at the share). */
const BUDGETS = {
  hbm: [20, 35], tp1: [25, 45], tp2: [15, 25], tp4: [20, 50], tp4nccl: [15, 20], m70: [30, 40], pp4: [30, 40], tp2pp2: [30, 40], replicas: [50, 90], mixtral: [40, 50],
};
const RESULT = LOCAL ? `parallel-${BACKEND}-tiny.json` : 'parallel-h100.json';
const GiB = 2 ** 30;
const T0 = performance.now();
const elapsed = () => (performance.now() - T0) / 1000;
const log = teeLog(join(OUT, 'parallel-bench.log'));

// Sizes: the issue's on a GPU machine, tiny ones that run every step in seconds on a CPU.
const M13 = LOCAL ? 'tiny-13b' : 'llama-2-13b';
const M70 = LOCAL ? 'tiny-70b' : 'llama-2-70b';
const MIX = LOCAL ? 'tiny-mixtral' : 'mixtral-8x7b';
const DECODE = LOCAL ? { steps: 8, skip: 2 } : { steps: 64, skip: 16 };
const BIG = LOCAL ? { seqs: 8, promptLen: 24, newTokens: 10, context: 24 } : { seqs: 64, promptLen: 512, newTokens: 48, context: 520 };
const LIMITS_13B = LOCAL ? { kvCacheBytes: 64 << 20, maxSequences: BIG.seqs, maxBatchTokens: 256, maxContext: 128 }
  : { kvCacheBytes: 32 * GiB, maxSequences: 64, maxBatchTokens: 4096, maxContext: 1024 };
const LIMITS_BS1 = LOCAL ? { kvCacheBytes: 16 << 20, maxSequences: 4, maxContext: 128 } : { kvCacheBytes: 4 * GiB, maxSequences: 4, maxBatchTokens: 512, maxContext: 256 };

const [core, testing, parallel] = await importPackages(['@zinfer/core', '@zinfer/core/testing', '@zinfer/parallel'], log);
const { createEngine, loadModel } = core;
const { tensorParallel, pipelineParallel } = parallel;

const commit = commitLines(join(HERE, '..'));
const result = {
  card: null, gpus: null, date: new Date().toISOString(), commit: commit[0]?.trim() || null, backend: BACKEND,
  hbm_read_gb_per_s: null,
  tp1_13b_decode_bs1_ms_per_token: null, tp2_13b_decode_bs1_ms_per_token: null, tp4_13b_decode_bs1_ms_per_token: null,
  tp2_speedup: null, tp4_speedup: null, tp_tokens_identical: null, tp2_tokens_matching: null, tp4_tokens_matching: null, tokens_compared: null,
  tp4_70b_decode_bs1_ms_per_token: null, tp4_70b_hbm_limit_ms_per_token: null, tp4_70b_over_hbm_limit: null, tp4_70b_bytes_per_gpu_per_token: null,
  tp1_13b_bs64_tokens_per_s: null, tp4_13b_bs64_tokens_per_s: null, pp4_13b_bs64_tokens_per_s: null, tp2pp2_13b_bs64_tokens_per_s: null,
  replicas4_13b_bs64_tokens_per_s: null, replicas4_13b_bs16_tokens_per_s: null,
  tp4_over_replicas4: null, pp4_over_replicas4: null, tp2pp2_over_replicas4: null, pp4_lanes_over_replicas4: null, tp2pp2_lanes_over_replicas4: null,
  pp4_bubble_fraction: null, tp2pp2_bubble_fraction: null, pp4_step_ms: null, tp2pp2_step_ms: null,
  // The same pipelines with the engine stepping on its own (step lanes: one step a stage in flight).
  pp4_13b_bs64_lanes_tokens_per_s: null, tp2pp2_13b_bs64_lanes_tokens_per_s: null, pp4_lanes_bubble_fraction: null, tp2pp2_lanes_bubble_fraction: null,
  tp1_13b_load_s: null, tp2_13b_load_s: null, tp4_13b_load_s: null, tp4_70b_load_s: null,
  mixtral_tp4_decode_bs1_ms_per_token: null,
  tp2_13b_nccl_decode_bs1_ms_per_token: null, tp4_13b_nccl_decode_bs1_ms_per_token: null, tp2_speedup_nccl: null, tp4_speedup_nccl: null,
  tp2_nccl_tokens_matching: null, tp4_nccl_tokens_matching: null, tp4_70b_nccl_decode_bs1_ms_per_token: null, tp4_70b_nccl_over_hbm_limit: null,
  tp2_13b_unfused_decode_bs1_ms_per_token: null, tp4_13b_unfused_decode_bs1_ms_per_token: null, tp2_speedup_unfused: null, tp4_speedup_unfused: null,
  tp2_unfused_tokens_matching: null, tp4_unfused_tokens_matching: null,
  tp2_13b_oneshot_decode_bs1_ms_per_token: null, tp4_13b_oneshot_decode_bs1_ms_per_token: null, tp2_speedup_oneshot: null, tp4_speedup_oneshot: null,
  tp2_13b_rank_loop_ms: null, tp4_13b_rank_loop_ms: null, tp2_13b_message_step_ms: null, tp4_13b_message_step_ms: null, tp2_13b_chain_step_ms: null, tp4_13b_chain_step_ms: null,
  tp2_13b_nopush_decode_bs1_ms_per_token: null, tp4_13b_nopush_decode_bs1_ms_per_token: null, tp2_speedup_nopush: null, tp4_speedup_nopush: null,
  tp4_70b_nopush_decode_bs1_ms_per_token: null, tp4_70b_nopush_over_hbm_limit: null,
  tp2_13b_nospin_decode_bs1_ms_per_token: null, tp4_13b_nospin_decode_bs1_ms_per_token: null, tp2_speedup_nospin: null, tp4_speedup_nospin: null,
  allreduce: 'peer memory for messages up to ZINFER_PEER_ALLREDUCE_MAX_BYTES (default 512 KiB; the Lamport kernel up to ZINFER_PEER_ALLREDUCE_LL_BYTES, default 64 KiB), NCCL above; *_nccl keys: NCCL only; *_oneshot: the one-shot peer kernel only; *_nopush: the row-parallel GEMVs do not push into the Lamport all-reduce',
  weights_repeat_layer0: true,
};
if (NO_PEER) result.allreduce = 'NCCL only for every run (ZINFER_PEER_ALLREDUCE=0 at start): the keys without _nccl are NCCL too';
const detail = { result, model_shapes: { m13: M13, m70: M70, mixtral: MIX }, replicas: 'child processes, one per GPU', steps: {}, errors: {}, programMs: {}, dirty: commit.slice(1).some(Boolean), node: process.version };
const save = jsonWriter(OUT, [[RESULT, result], ['parallel-bench-detail.json', detail]]);
const runner = stepRunner({ budgetS: BUDGET_S, log, save, detail, t0: T0 });
/** Whether the running step's share (and the run's budget) still holds `seconds`. */
const stepHas = (seconds) => LOCAL || runner.stepHas(seconds);

/**
 * Runs one step unless the budget cannot take its minimum (BUDGETS[budget] on a GPU); a failure is recorded
 * and the bench goes on. `always`: runs whatever ZINFER_PARALLEL_BENCH_ONLY says (the limits every ratio needs);
 * `optIn`: runs only when ZINFER_PARALLEL_BENCH_ONLY names it (locally, always).
 */
function step(name, fn, { minSeconds = 0, budget = null, always = false, optIn = false } = {}) {
  if (!always && ONLY.length && !ONLY.some((w) => name.includes(w))) {
    detail.errors[name] = `skipped: ZINFER_PARALLEL_BENCH_ONLY=${ONLY.join(',')}`;
    return Promise.resolve();
  }
  if (optIn && !LOCAL && !ONLY.length) {
    detail.errors[name] = 'skipped: opt-in (ZINFER_PARALLEL_BENCH_ONLY=Mixtral runs it)';
    return Promise.resolve();
  }
  if (budget && !LOCAL) return runner.step(name, fn, { minSeconds: BUDGETS[budget][0], shareSeconds: BUDGETS[budget][1] });
  return runner.step(name, fn, { minSeconds });
}

/**
 * Loads an engine, runs `body(engine, program)`, always closes it. `allReduce: 'nccl'` turns the peer
 * all-reduce off; 'unfused' keeps it but launches the residual add after it on its own (ZINFER_REDUCE_ADD=off).
 */
async function withEngine(model, { parallel: strategy, limits, loadKey, allReduce = 'peer', autoStep = false }, body) {
  const t = performance.now();
  variantEnv(allReduce); // read by the rank workers this engine starts
  const cap = strategy ? capturingStrategy(strategy) : capturingBackend(await makeBackend(BACKEND));
  const backend = strategy ? await makeBackend(BACKEND) : cap.backend;
  const engine = await createEngine({ model, backend, parallel: cap.strategy, autoStep, limits });
  const loadS = (performance.now() - t) / 1000;
  if (loadKey) result[loadKey] = round(loadS, 1);
  log(`   loaded ${model} in ${loadS.toFixed(1)} s`);
  try {
    return await body(engine, cap.box.program);
  } finally {
    await engine.close();
    variantEnv('peer');
  }
}

/** The environment of a tp variant: the all-reduce's kind, the GEMV push, the leader's spin ('peer' restores the run's own). */
function variantEnv(allReduce) {
  process.env.ZINFER_PEER_ALLREDUCE = allReduce === 'nccl' || NO_PEER ? '0' : '1';
  process.env.ZINFER_REDUCE_ADD = allReduce === 'unfused' ? 'off' : 'on';
  process.env.ZINFER_PEER_PUSH = allReduce === 'nopush' ? 'off' : 'on';
  process.env.ZINFER_LEADER_SPIN = allReduce === 'nospin' ? '0' : ''; // read by the leader at each step ('': on for GPU ranks)
  const ll = allReduce === 'oneshot' ? '0' : LL_BYTES;
  if (ll === undefined) delete process.env.ZINFER_PEER_ALLREDUCE_LL_BYTES;
  else process.env.ZINFER_PEER_ALLREDUCE_LL_BYTES = ll;
}

const vocabOf = (shape) => SHAPES[shape].vocab_size;
const matching = (a, b) => {
  let k = 0;
  while (k < a.length && k < b.length && a[k] === b[k]) k++;
  return k;
};

// ---------------------------------------------------------------------------------------------------
log(`== zinfer parallel bench (${BACKEND}${LOCAL ? ', tiny shapes' : ''}), budget ${BUDGET_S} s`);
// The devices the backend sees (cuda: ordinals 0.. until a probe fails; cpu/reference: one).
const gpus = await probeDevices((i) => makeBackend(BACKEND, i), LOCAL ? 1 : 16);
result.gpus = gpus.length;
result.card = gpus[0]?.description.replace(/ \(sm_.*$/, '') ?? null;
for (const g of gpus) log(`device ${g.description}, ${(g.memoryBytes / GiB).toFixed(1)} GiB free`);
if (!gpus.length) {
  log('NO DEVICE: the backend probe found none');
  save();
  process.exit(3);
}
save();
const TP_MAX = Math.min(4, LOCAL ? 4 : gpus.length);
const dir13 = syntheticModel(core, WORK, M13, 'f16');
const dir70 = syntheticModel(core, WORK, M70, 'f16');

await step('HBM read bandwidth of every GPU (one process each, at once)', async () => {
  if (LOCAL) return { note: 'no GPU: the HBM limits stay null' };
  const per = await Promise.all(gpus.map((_, i) => microbenchProcess(i)));
  per.forEach((m, i) => (result[`hbm_read_gb_per_s_gpu${i}`] = round(m.readGBps, 1)));
  result.hbm_read_gb_per_s = round(Math.min(...per.map((m) => m.readGBps)), 1);
  return { readGBps: per.map((m) => m.readGBps), copyGBps: per.map((m) => m.copyGBps) };
}, { budget: 'hbm', always: true });

// 13B at tp1, tp2, tp4 (batch-1 latency first; the row sweep and throughput while the engine is loaded);
// tp2 and tp4 again with NCCL for every all-reduce, and with the residual adds launched on their own
// (`unfused`: the A/B of the peer all-reduce adding the residual itself)
const tokensAt = {};
// (`oneshot`: the barrier kernel for every peer message, no Lamport kernel). ZINFER_PARALLEL_VARIANTS picks them.
// (`nopush`: the row-parallel GEMVs store their outputs and the Lamport all-reduce reads and pushes them, as
// before the GEMV's push: ZINFER_PEER_PUSH=off). (`nospin`: the leader's event loop sleeps while a step is out
// instead of turning over: ZINFER_LEADER_SPIN=0.)
const VARIANT = {
  nccl: ['_nccl', ' (NCCL all-reduce)'], unfused: ['_unfused', ' (residual adds on their own)'], oneshot: ['_oneshot', ' (one-shot peer kernel only)'],
  nopush: ['_nopush', ' (GEMV push off)'],
  nospin: ['_nospin', ' (the leader sleeps while a step is out)'],
};
const VARIANTS = (process.env.ZINFER_PARALLEL_VARIANTS ?? 'nccl,unfused,oneshot').split(',').map((w) => w.trim()).filter((w) => w in VARIANT);
for (const tp of [1, 2, 4].filter((n) => n <= TP_MAX)) {
  for (const allReduce of tp > 1 ? ['peer', ...VARIANTS] : ['peer']) {
    const [suffix, label] = VARIANT[allReduce] ?? ['', ''];
    const variant = allReduce !== 'peer';
    const key = `tp${tp}_13b${suffix}_decode_bs1_ms_per_token`;
    await step(`13B tp${tp}${label}: load, decode batch 1`, () => withEngine(dir13, { parallel: tp > 1 ? tensorParallel({ size: tp }) : undefined, limits: LIMITS_13B, loadKey: variant ? null : `tp${tp}_13b_load_s`, allReduce }, async (engine, program) => {
      const d = await decodeBs1(engine, { vocab: vocabOf(M13), ...DECODE });
      result[key] = round(d.msPerToken, 3);
      if (variant) { // a variant of the peer run: its time and tokens only
        result[`tp${tp}${suffix}_tokens_matching`] = tokensAt[1] ? matching(d.tokens, tokensAt[1]) : null;
        result[`tp${tp}_speedup${suffix}`] = ratio(result.tp1_13b_decode_bs1_ms_per_token, result[key]);
        return { minMs: d.minMs, steps: d.steps };
      }
      const loop = await rankLoop(program, testing.stepBatch, { vocab: vocabOf(M13) });
      if (loop) {
        result[`tp${tp}_13b_rank_loop_ms`] = round(loop.loopMs, 3);
        result[`tp${tp}_13b_message_step_ms`] = round(loop.messageMs, 3);
        result[`tp${tp}_13b_chain_step_ms`] = round(loop.chainMs, 3);
        detail.steps[`tp${tp} rank loop`] = loop;
      }
      const bytes = await bytesPerRankPerToken(core, tensorParallel, dir13, tp);
      if (result.hbm_read_gb_per_s) result[`tp${tp}_13b_hbm_limit_ms_per_token`] = round(bytes / (result.hbm_read_gb_per_s * 1e6), 3);
      tokensAt[tp] = d.tokens;
      compareTokens();
      // Extras while loaded, while this step's share lasts.
      if (stepHas(15)) await rowSweep(`tp${tp}`, program);
      if ((tp === 1 || tp === 4) && stepHas(20)) {
        const r = await throughput(engine, { ...BIG, vocab: vocabOf(M13) });
        result[`tp${tp}_13b_bs64_tokens_per_s`] = round(r.tokensPerS, 0);
        detail.steps[`tp${tp} throughput`] = r;
      }
      return { minMs: d.minMs, steps: d.steps, tokens: d.tokens.slice(0, 24) };
    }), { minSeconds: LOCAL ? 5 : 60, budget: tp === 4 && variant ? 'tp4nccl' : `tp${tp}` });
  }
}

// 70B tp4, and its variants (ZINFER_PARALLEL_70B_VARIANTS, default nccl; nopush too).
const VARIANTS_70B = (process.env.ZINFER_PARALLEL_70B_VARIANTS ?? 'nccl').split(',').map((w) => w.trim()).filter((w) => w === 'nccl' || w === 'nopush');
for (const allReduce of ['peer', ...VARIANTS_70B]) {
  const variant = allReduce !== 'peer'; // its time and ratio under its own keys
  await step(`70B tp4${variant ? VARIANT[allReduce][1] : ''}: load, decode batch 1, HBM limit`, async () => {
    if (TP_MAX < 4) throw new Error(`tp4 needs 4 devices, found ${gpus.length}`);
    const bytes = await bytesPerRankPerToken(core, tensorParallel, dir70, 4);
    result.tp4_70b_bytes_per_gpu_per_token = bytes;
    if (result.hbm_read_gb_per_s) result.tp4_70b_hbm_limit_ms_per_token = round(bytes / (result.hbm_read_gb_per_s * 1e6), 3);
    return withEngine(dir70, { parallel: tensorParallel({ size: 4 }), limits: LIMITS_BS1, loadKey: variant ? null : 'tp4_70b_load_s', allReduce }, async (engine) => {
      const d = await decodeBs1(engine, { vocab: vocabOf(M70), ...DECODE });
      const k = variant ? `tp4_70b${VARIANT[allReduce][0]}` : 'tp4_70b';
      result[`${k}_decode_bs1_ms_per_token`] = round(d.msPerToken, 3);
      result[`${k}_over_hbm_limit`] = ratio(result[`${k}_decode_bs1_ms_per_token`], result.tp4_70b_hbm_limit_ms_per_token);
      return { minMs: d.minMs, steps: d.steps };
    });
  }, { minSeconds: LOCAL ? 5 : 100, budget: 'm70' });
}

for (const [key, stages, tp] of [['pp4', 4, 1], ['tp2pp2', 2, 2]]) {
  await step(`13B ${key}: throughput ${BIG.seqs} × ${BIG.promptLen}, bubble`, () => withEngine(dir13, { parallel: pipelineParallel({ stages, tensorSize: tp }), limits: LIMITS_13B }, async (engine, program) => {
    const r = await throughput(engine, { ...BIG, vocab: vocabOf(M13) });
    result[`${key}_13b_bs64_tokens_per_s`] = round(r.tokensPerS, 0);
    const stepMs = await programDecode(program, testing.stepBatch, { rows: BIG.seqs, context: BIG.context, vocab: vocabOf(M13) });
    result[`${key}_step_ms`] = round(stepMs, 3);
    const micro = stages; // pipelineParallel's decode default: M = S micro-batches of 64/M rows
    const part = detail.programMs[`tp${tp}`]?.[BIG.seqs / micro]; // T_t(64/M), the whole model
    if (part) result[`${key}_bubble_fraction`] = round(1 - (micro * part) / stages / stepMs, 3);
    return { ...r, stepMs, tpPartMs: part ?? null };
  }), { minSeconds: LOCAL ? 5 : 50, budget: key });
  // The same with the engine stepping on its own: one step a stage in flight (step lanes), so the stages
  // overlap across steps too.
  await step(`13B ${key}: throughput ${BIG.seqs} × ${BIG.promptLen}, engine's own loop (step lanes)`, () => withEngine(dir13, { parallel: pipelineParallel({ stages, tensorSize: tp }), limits: LIMITS_13B, autoStep: true }, async (engine) => {
    const r = await throughputAuto(engine, { ...BIG, vocab: vocabOf(M13) });
    result[`${key}_13b_bs64_lanes_tokens_per_s`] = round(r.tokensPerS, 0);
    // The same bubble as above, with the time the lanes take for BIG.seqs tokens as the step.
    const part = detail.programMs[`tp${tp}`]?.[BIG.seqs / stages];
    if (part) result[`${key}_lanes_bubble_fraction`] = round(1 - (stages * part) / stages / ((BIG.seqs / r.tokensPerS) * 1000), 3);
    return r;
  }), { minSeconds: LOCAL ? 5 : 50, budget: key });
}

await step(`4 independent replicas (child processes), ${BIG.seqs} and ${BIG.seqs / 4} sequences each`, async () => {
  const n = LOCAL ? 4 : Math.min(4, gpus.length);
  const runs = [BIG.seqs, BIG.seqs / 4].map((seqs) => ({ ...BIG, seqs, vocab: vocabOf(M13) }));
  const per = await runReplicas(n, { model: dir13, limits: LIMITS_13B, runs, backend: BACKEND }, { timeoutS: LOCAL ? 60 : 300, log });
  result.replicas4_13b_bs64_tokens_per_s = round(per.reduce((s, p) => s + p[0].tokensPerS, 0), 0);
  result.replicas4_13b_bs16_tokens_per_s = round(per.reduce((s, p) => s + p[1].tokensPerS, 0), 0);
  for (const k of ['tp4', 'pp4', 'tp2pp2']) result[`${k}_over_replicas4`] = ratio(result[`${k}_13b_bs64_tokens_per_s`], result.replicas4_13b_bs64_tokens_per_s);
  for (const k of ['pp4', 'tp2pp2']) result[`${k}_lanes_over_replicas4`] = ratio(result[`${k}_13b_bs64_lanes_tokens_per_s`], result.replicas4_13b_bs64_tokens_per_s);
  return { perReplica: per };
}, { minSeconds: LOCAL ? 5 : 70, budget: 'replicas' });

await step('Mixtral-8x7B shape (bf16) tp4 decode batch 1', async () => {
  const dir = syntheticModel(core, WORK, MIX, 'bf16');
  const m = await loadModel(dir);
  m.weights.close();
  const backend = await makeBackend(BACKEND);
  const missing = [...new Set(m.graph.nodes.filter((n) => !backend.supports(n)).map((n) => n.op))];
  if (missing.length) return { skipped: `the ${BACKEND} backend does not run ${missing.join(', ')}` };
  return withEngine(dir, { parallel: tensorParallel({ size: Math.min(4, TP_MAX) }), limits: LIMITS_BS1 }, async (engine) => {
    const d = await decodeBs1(engine, { vocab: vocabOf(MIX), ...DECODE });
    result.mixtral_tp4_decode_bs1_ms_per_token = round(d.msPerToken, 3);
    return { minMs: d.minMs };
  });
}, { minSeconds: LOCAL ? 5 : 80, budget: 'mixtral', optIn: true });

printTable();
process.exit(benchExitCode(detail));

// ---------------------------------------------------------------------------------------------------
function compareTokens() {
  const base = tokensAt[1];
  if (!base) return;
  result.tokens_compared = base.length;
  const others = [2, 4].filter((tp) => tokensAt[tp]);
  for (const tp of others) result[`tp${tp}_tokens_matching`] = matching(tokensAt[tp], base);
  if (others.length) result.tp_tokens_identical = others.every((tp) => result[`tp${tp}_tokens_matching`] === base.length && tokensAt[tp].length === base.length);
  result.tp2_speedup = ratio(result.tp1_13b_decode_bs1_ms_per_token, result.tp2_13b_decode_bs1_ms_per_token);
  result.tp4_speedup = ratio(result.tp1_13b_decode_bs1_ms_per_token, result.tp4_13b_decode_bs1_ms_per_token);
}

/** Program.runArgmax ms of decode steps of 16, 32 and 64 rows (the bubble's T_t(r)), at the big context:
 * the engine's own call for greedy rows (Program.run would also move every row's logits to the leader). */
async function rowSweep(key, program) {
  if (!program) return;
  detail.programMs[key] = {};
  for (const rows of [BIG.seqs / 4, BIG.seqs / 2, BIG.seqs]) {
    detail.programMs[key][rows] = await programDecode(program, testing.stepBatch, { rows, context: BIG.context, vocab: vocabOf(M13), argmax: true });
  }
  log(`   ${key} Program.runArgmax ms by rows: ${JSON.stringify(detail.programMs[key])}`);
}

function printTable() {
  log('');
  log(`== parallel bench on ${result.gpus} × ${result.card} (${result.date}, commit ${result.commit ?? '?'}${detail.dirty ? '+' : ''}), ${elapsed().toFixed(0)} s`);
  const row = (key, note = '') => log(`${key.padEnd(36)} ${String(result[key] ?? 'n/a').padStart(10)}   ${note}`);
  row('hbm_read_gb_per_s', `slowest GPU; per GPU: ${gpus.map((_, i) => result[`hbm_read_gb_per_s_gpu${i}`] ?? '?').join(', ')}`);
  for (const tp of [1, 2, 4]) {
    const limit = `HBM limit ${result[`tp${tp}_13b_hbm_limit_ms_per_token`] ?? '?'}`;
    row(`tp${tp}_13b_decode_bs1_ms_per_token`, tp > 1 ? `${limit}; speedup ${result[`tp${tp}_speedup`] ?? '?'}; tokens matching tp1 ${result[`tp${tp}_tokens_matching`] ?? '?'}/${result.tokens_compared ?? '?'}` : limit);
  }
  for (const tp of [2, 4]) row(`tp${tp}_13b_rank_loop_ms`, `each rank runs the batch-1 step back to back in its thread (slowest rank); through messages, no engine: ${result[`tp${tp}_13b_message_step_ms`] ?? '?'} ms; chained by 8: ${result[`tp${tp}_13b_chain_step_ms`] ?? '?'} ms`);
  for (const tp of [2, 4]) row(`tp${tp}_13b_nccl_decode_bs1_ms_per_token`, `NCCL all-reduce only; speedup ${result[`tp${tp}_speedup_nccl`] ?? '?'}; tokens matching tp1 ${result[`tp${tp}_nccl_tokens_matching`] ?? '?'}`);
  for (const tp of [2, 4]) row(`tp${tp}_13b_unfused_decode_bs1_ms_per_token`, `residual adds on their own; speedup ${result[`tp${tp}_speedup_unfused`] ?? '?'}; tokens matching tp1 ${result[`tp${tp}_unfused_tokens_matching`] ?? '?'}`);
  for (const tp of [2, 4]) row(`tp${tp}_13b_oneshot_decode_bs1_ms_per_token`, `one-shot peer kernel only; speedup ${result[`tp${tp}_speedup_oneshot`] ?? '?'}`);
  for (const tp of [2, 4]) row(`tp${tp}_13b_nopush_decode_bs1_ms_per_token`, `GEMV push off; speedup ${result[`tp${tp}_speedup_nopush`] ?? '?'}`);
  for (const tp of [2, 4]) row(`tp${tp}_13b_nospin_decode_bs1_ms_per_token`, `the leader sleeping while a step is out; speedup ${result[`tp${tp}_speedup_nospin`] ?? '?'}`);
  row('tp_tokens_identical');
  row('tp4_70b_decode_bs1_ms_per_token', `HBM limit ${result.tp4_70b_hbm_limit_ms_per_token ?? '?'} (ratio ${result.tp4_70b_over_hbm_limit ?? '?'})`);
  row('tp4_70b_nccl_decode_bs1_ms_per_token', `NCCL all-reduce only (ratio ${result.tp4_70b_nccl_over_hbm_limit ?? '?'})`);
  row('tp4_70b_nopush_decode_bs1_ms_per_token', `GEMV push off (ratio ${result.tp4_70b_nopush_over_hbm_limit ?? '?'})`);
  const vsReplicas = (k) => (k === 'tp1' || k === 'replicas4' ? '' : `${result[`${k}_over_replicas4`] ?? '?'} × the replicas`);
  const bubble = (k) => (k === 'pp4' || k === 'tp2pp2' ? `; bubble ${result[`${k}_bubble_fraction`] ?? '?'} (step ${result[`${k}_step_ms`] ?? '?'} ms)` : '');
  for (const k of ['tp1', 'tp4', 'pp4', 'tp2pp2', 'replicas4']) row(`${k}_13b_bs64_tokens_per_s`, vsReplicas(k) + bubble(k));
  for (const k of ['pp4', 'tp2pp2']) row(`${k}_13b_bs64_lanes_tokens_per_s`, `the engine's own loop: one step a stage in flight; bubble ${result[`${k}_lanes_bubble_fraction`] ?? '?'}`);
  row('replicas4_13b_bs16_tokens_per_s', '4 × 16 sequences');
  row('mixtral_tp4_decode_bs1_ms_per_token', detail.steps['Mixtral-8x7B shape (bf16) tp4 decode batch 1']?.skipped ?? '');
  for (const [name, e] of Object.entries(detail.errors)) log(`${e.startsWith('skipped') ? 'SKIPPED' : 'ERROR'} [${name}] ${e.replace(/\s+/g, ' ').slice(0, 300)}`);
  log(`results: ${join(OUT, RESULT)}, ${join(OUT, 'parallel-bench-detail.json')}`);
}
