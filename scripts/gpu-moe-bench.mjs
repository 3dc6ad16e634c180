#!/usr/bin/env node
// The Mixture-of-Experts benchmark of issue 7, run ON a 4-GPU machine from the unpacked bundle by
// scripts/gpu-moe.sh: a Mixtral-8x7B-shape bf16 model (hidden 4096, 32 layers, 8 experts top-2,
// intermediate 14336, 32 heads / 8 KV heads, vocab 32000: 46.7B parameters, 93 GB) with synthetic random
// weights, on 4 GPUs (devices 0–3) and on 2 (devices 0–1). Steps, most important first, each skipped when
// the time left (ZINFER_MOE_BENCH_BUDGET_S) cannot finish it, each failure recorded and the bench going on:
//   1. HBM read bandwidth of every GPU (cudaMicrobench in one process per GPU, all at once);
//   2. per GPU count (4, then 2) and strategy (ZINFER_MOE_STRATEGIES_4 / _2, names in gpu-moe-common.mjs):
//      load, batch-1 greedy decode through engine.step() (32-token prompt, median of 64 steps after 16),
//      the routing statistics of that decode (Program.expertLoad, when the backend keeps them), then the
//      batch-64 throughput (64 × 64-token prompts: one prefill step; 24 new tokens, median of the all-decode steps);
//   3. per GPU count, right after its strategies: transformers' MixtralForCausalLM with
//      device_map="auto" on the same GPUs (scripts/gpu-moe-hf.py, CUDA_VISIBLE_DEVICES), bs1 greedy decode.
// The limit: bytes a decode token reads (dense weights, one embedding row, top-2 experts per layer) ÷ the
// GPU count (the balanced ideal) ÷ the slowest GPU's read bandwidth. moe_decode_bs1_ms_per_token is the
// best strategy; moe_decode_bs1_over_limit = it ÷ the limit (target ≤ 1.4); moe_speedup_vs_hf = HF's
// ms/token ÷ ours (target ≥ 8). The unsuffixed keys are the 4-GPU figures; *_2gpu / *_4gpu give both.
// Synthetic weights: layer l > 0 serves layer 0's tensors (repeatLayer0 in zinfer-synthetic.json), which
// every rank still copies into each layer's own place; the JSON says so (weights_repeat_layer0), and the
// transformers peer does the same. Results: $OUT/moe-h100.json (flat, written after every step), moe-bench-detail.json,
// moe-bench.log. Locally, ZINFER_MOE_BENCH_BACKEND=reference runs every step on a tiny Mixtral.
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { activeBytesPerGpu, makeBackend, SHAPES, strategyFor, syntheticMixtral } from './gpu-moe-common.mjs';
import { benchExitCode, commitLines, importPackages, jsonWriter, probeDevices, ratio, round, stepRunner, teeLog } from './gpu-harness.mjs';
import { microbenchProcess } from './gpu-parallel-children.mjs';
import { decodeBs1, throughput } from './gpu-parallel-common.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const BACKEND = process.env.ZINFER_MOE_BENCH_BACKEND || 'cuda';
const LOCAL = BACKEND !== 'cuda';
const OUT = process.env.OUT || join(tmpdir(), 'zinfer-moe-bench');
const WORK = process.env.ZINFER_BENCH_DIR || join(tmpdir(), 'zinfer-moe-models');
const BUDGET_S = Number(process.env.ZINFER_MOE_BENCH_BUDGET_S || 500);
const RESULT = LOCAL ? `moe-${BACKEND}-tiny.json` : 'moe-h100.json';
const SHAPE = LOCAL ? 'tiny-mixtral' : 'mixtral-8x7b';
const GPU_SETS = (process.env.ZINFER_MOE_GPUS || '4,2').split(',').map(Number);
const STRATEGIES = { 4: (process.env.ZINFER_MOE_STRATEGIES_4 || 'slice,ep,ep-tp2').split(','), 2: (process.env.ZINFER_MOE_STRATEGIES_2 || 'slice,ep').split(',') };
const DECODE = LOCAL ? { steps: 6, skip: 2 } : { steps: 64, skip: 16 };
const BIG = LOCAL ? { seqs: 8, promptLen: 12, newTokens: 8 } : { seqs: 64, promptLen: 64, newTokens: 24 };
const HF_TOKENS = Number(process.env.ZINFER_MOE_HF_TOKENS || (LOCAL ? 4 : 32));
const GiB = 2 ** 30;
const LIMITS = LOCAL ? { kvCacheBytes: 32 << 20, maxSequences: BIG.seqs, maxBatchTokens: 256, maxContext: 128 }
  : { kvCacheBytes: 4 * GiB, maxSequences: 64, maxBatchTokens: 4096, maxContext: 512 };
const T0 = performance.now();
const elapsed = () => (performance.now() - T0) / 1000;
const log = teeLog(join(OUT, 'moe-bench.log'));

const [core, parallel, moe] = await importPackages(['@zinfer/core', '@zinfer/parallel', '@zinfer/moe'], log);
const commit = commitLines(join(HERE, '..'));
const activations = process.env.ZINFER_MOE_ACTIVATIONS || 'auto';
const result = {
  card: null, gpus: null, date: new Date().toISOString(), commit: commit[0]?.trim() || null, backend: BACKEND, shape: SHAPE, dtype: 'bf16',
  weights_repeat_layer0: true, activations: LOCAL ? null : activations, headline_gpus: GPU_SETS[0],
  moe_decode_bs1_ms_per_token: null, moe_decode_bs1_limit_ms_per_token: null, moe_decode_bs1_over_limit: null, moe_best_strategy: null,
  moe_bs64_tokens_per_s: null, moe_speedup_vs_hf: null, hf_decode_bs1_ms_per_token: null,
  hbm_read_gb_per_s: null, model_params: null, active_params_per_token: null,
};
const detail = { result, strategies: STRATEGIES, steps: {}, errors: {}, tokens: {}, expertLoad: {}, dirty: commit.slice(1).some(Boolean), node: process.version };
const save = jsonWriter(OUT, [[RESULT, result], ['moe-bench-detail.json', detail]]);
const { step } = stepRunner({ budgetS: BUDGET_S, log, save, detail, noteSkipped: true, t0: T0 });

// ---------------------------------------------------------------------------------------------------
log(`== zinfer MoE bench (${BACKEND}${LOCAL ? ', tiny Mixtral' : ', Mixtral-8x7B shape bf16'}), budget ${BUDGET_S} s`);
const probeBackend = await makeBackend(BACKEND, { activations });
const gpus = await probeDevices((device) => makeBackend(BACKEND, { device, activations }), LOCAL ? 1 : 16);
result.gpus = gpus.length;
result.card = gpus[0]?.description.replace(/ \(sm_.*$/, '') ?? null;
for (const g of gpus) log(`device ${g.description}, ${(g.memoryBytes / GiB).toFixed(1)} GiB free`);
if (!gpus.length) {
  log('NO DEVICE: the backend probe found none');
  save();
  process.exit(3);
}
const dir = syntheticMixtral(core, WORK, SHAPE);
const model = await core.loadModel(dir);
model.weights.close();
const graph = model.graph;
save();

await step('HBM read bandwidth of every GPU (one process each, at once)', async () => {
  if (LOCAL) return { skipped: 'no GPU: the limits stay null' };
  const per = await Promise.all(gpus.map((_, i) => microbenchProcess(i)));
  per.forEach((m, i) => (result[`hbm_read_gb_per_s_gpu${i}`] = round(m.readGBps, 1)));
  result.hbm_read_gb_per_s = round(Math.min(...per.map((m) => m.readGBps)), 1);
  return { readGBps: per.map((m) => m.readGBps) };
});

for (const n of GPU_SETS) {
  const key = `${n}gpu`;
  if (!LOCAL && n > gpus.length) {
    detail.errors[key] = `skipped: ${n} GPUs asked, ${gpus.length} found`;
    continue;
  }
  const bytes = activeBytesPerGpu(graph, n);
  result.model_params = bytes.totalParams;
  result.active_params_per_token = bytes.activeParams;
  result[`moe_${key}_bytes_per_gpu_per_token`] = Math.round(bytes.bytesPerGpu);
  const hbm = LOCAL ? null : Math.min(...gpus.slice(0, n).map((_, i) => result[`hbm_read_gb_per_s_gpu${i}`] ?? Infinity));
  result[`moe_${key}_decode_bs1_limit_ms_per_token`] = hbm && Number.isFinite(hbm) ? round(bytes.bytesPerGpu / (hbm * 1e6), 3) : null;
  for (const name of STRATEGIES[n] ?? []) {
    await step(`${n} GPUs ${name}: load, decode batch 1, batch ${BIG.seqs}`, () => runStrategy(n, name), { minSeconds: LOCAL ? 3 : 45 });
  }
  summarise(n);
  await step(`${n} GPUs transformers MixtralForCausalLM device_map=auto, decode batch 1`, async () => {
    const r = await hfPeer(n);
    result[`hf_${key}_decode_bs1_ms_per_token`] = round(r.ms_per_token, 3);
    result[`hf_${key}_load_s`] = round(r.load_s, 1);
    summarise(n);
    return { ...r, tokens: undefined };
  }, { minSeconds: LOCAL ? 3 : 70 });
}
printTable();
process.exit(benchExitCode(detail));

// ---------------------------------------------------------------------------------------------------
async function runStrategy(n, name) {
  const key = `moe_${n}gpu_${name.replace(/-/g, '_')}`;
  const strategy = strategyFor(name, n, { parallel, moe });
  if (!strategy) return { skipped: `${name} does not apply to ${n} ranks` };
  const plan = strategy.plan(graph, Array.from({ length: n }, (_, rank) => ({ rank, backend: probeBackend.name })));
  const missing = [...new Set(plan.ranks.flatMap((r) => r.graph.nodes).filter((x) => !probeBackend.supports(x)).map((x) => x.op))];
  if (missing.length) {
    result[`${key}_unsupported`] = missing.join(',');
    return { skipped: `the ${BACKEND} backend does not run ${missing.join(', ')}` };
  }
  const t = performance.now();
  const engine = await core.createEngine({ model: dir, backend: await makeBackend(BACKEND, { activations }), parallel: strategy, autoStep: false, limits: LIMITS });
  result[`${key}_load_s`] = round((performance.now() - t) / 1000, 1);
  log(`   ${strategy.name} loaded in ${result[`${key}_load_s`]} s`);
  try {
    const before = await engine.expertLoad?.().catch(() => null);
    const d = await decodeBs1(engine, { vocab: SHAPES[SHAPE].vocab_size, ...DECODE });
    result[`${key}_decode_bs1_ms_per_token`] = round(d.msPerToken, 3);
    detail.tokens[key] = d.tokens;
    const after = await engine.expertLoad?.().catch((e) => ({ error: e.message }));
    detail.expertLoad[key] = routingSummary(before, after);
    save();
    if (BUDGET_S - elapsed() > (LOCAL ? 0 : 100)) {
      const r = await throughput(engine, { ...BIG, vocab: SHAPES[SHAPE].vocab_size });
      result[`${key}_bs${BIG.seqs}_tokens_per_s`] = round(r.tokensPerS, 0);
      return { strategy: strategy.name, minMs: d.minMs, steps: d.steps, throughput: r };
    }
    return { strategy: strategy.name, minMs: d.minMs, steps: d.steps, throughput: 'skipped: budget' };
  } finally {
    await engine.close();
  }
}

/** Tokens routed per expert during the timed decode (counts after − before), and the busiest/mean ratio per layer. */
function routingSummary(before, after) {
  if (!Array.isArray(after)) return after ?? 'the backend keeps no routing statistics';
  const delta = after.map((l, i) => Array.from(l, (x, e) => x - (before?.[i]?.[e] ?? 0)));
  const imbalance = delta.map((l) => {
    const sum = l.reduce((a, b) => a + b, 0);
    return sum ? round(Math.max(...l) / (sum / l.length), 3) : null;
  });
  return { perLayer: delta, imbalance };
}

/** The best strategy of an n-GPU set, its limit ratio and the HF speedup; the headline keys follow GPU_SETS[0]. */
function summarise(n) {
  const key = `${n}gpu`;
  const names = (STRATEGIES[n] ?? []).map((s) => [s, result[`moe_${key}_${s.replace(/-/g, '_')}_decode_bs1_ms_per_token`]]).filter(([, v]) => v !== null && v !== undefined);
  if (!names.length) return;
  const [best, ms] = names.reduce((a, b) => (b[1] < a[1] ? b : a));
  result[`moe_${key}_decode_bs1_ms_per_token`] = ms;
  result[`moe_${key}_best_strategy`] = best;
  result[`moe_${key}_decode_bs1_over_limit`] = ratio(ms, result[`moe_${key}_decode_bs1_limit_ms_per_token`]);
  const bs = (STRATEGIES[n] ?? []).map((s) => result[`moe_${key}_${s.replace(/-/g, '_')}_bs${BIG.seqs}_tokens_per_s`]).filter((v) => v !== null && v !== undefined);
  result[`moe_${key}_bs${BIG.seqs}_tokens_per_s`] = bs.length ? Math.max(...bs) : null;
  result[`moe_${key}_speedup_vs_hf`] = ratio(result[`hf_${key}_decode_bs1_ms_per_token`] ?? null, ms, 2);
  // Greedy tokens of every strategy against the first (informational: bf16 sums in another order may drift).
  const runs = (STRATEGIES[n] ?? []).map((s) => detail.tokens[`moe_${key}_${s.replace(/-/g, '_')}`]).filter(Boolean);
  if (runs.length > 1) result[`moe_${key}_tokens_identical`] = runs.every((t) => t.length === runs[0].length && t.every((x, i) => x === runs[0][i]));
  if (n === GPU_SETS[0]) {
    Object.assign(result, {
      moe_decode_bs1_ms_per_token: ms, moe_best_strategy: best, moe_decode_bs1_limit_ms_per_token: result[`moe_${key}_decode_bs1_limit_ms_per_token`],
      moe_decode_bs1_over_limit: result[`moe_${key}_decode_bs1_over_limit`], moe_bs64_tokens_per_s: result[`moe_${key}_bs${BIG.seqs}_tokens_per_s`],
      hf_decode_bs1_ms_per_token: result[`hf_${key}_decode_bs1_ms_per_token`] ?? null, moe_speedup_vs_hf: result[`moe_${key}_speedup_vs_hf`],
    });
  }
  save();
}

/** scripts/gpu-moe-hf.py on the first n GPUs (locally on the CPU, when python3 has torch). */
function hfPeer(n) {
  const c = SHAPES[SHAPE];
  const args = [join(HERE, 'gpu-moe-hf.py'), '--hidden', c.hidden_size, '--layers', c.num_hidden_layers, '--intermediate', c.intermediate_size, '--heads', c.num_attention_heads,
    '--kv-heads', c.num_key_value_heads, '--experts', c.num_local_experts, '--top-k', c.num_experts_per_tok, '--vocab', c.vocab_size, '--new-tokens', HF_TOKENS, ...(LOCAL ? ['--cpu'] : [])].map(String);
  const env = { ...process.env, CUDA_VISIBLE_DEVICES: Array.from({ length: n }, (_, i) => i).join(',') };
  const timeoutS = Math.floor(Math.max(30, Math.min(LOCAL ? 120 : 240, BUDGET_S - elapsed() - 5)));
  return new Promise((resolve, reject) => {
    const child = spawn('python3', args, { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutS * 1000 });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => {
      err += d;
      for (const line of `${d}`.split('\n').filter(Boolean)) log(`   hf: ${line.slice(0, 300)}`);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const last = out.trim().split('\n').at(-1) ?? '';
      if (code === 0 && last.startsWith('{')) return resolve(JSON.parse(last));
      reject(new Error(`gpu-moe-hf.py ${signal ? `killed (${signal}, ${timeoutS} s)` : `exited ${code}`}: ${err.slice(-800)}`));
    });
  });
}

function printTable() {
  log('');
  log(`== MoE bench on ${result.gpus} × ${result.card} (${result.date}, commit ${result.commit ?? '?'}${detail.dirty ? '+' : ''}), ${SHAPE}, ${elapsed().toFixed(0)} s`);
  const row = (key, note = '') => log(`${key.padEnd(44)} ${String(result[key] ?? 'n/a').padStart(10)}   ${note}`);
  row('hbm_read_gb_per_s', 'slowest GPU');
  for (const n of GPU_SETS) {
    const key = `${n}gpu`;
    for (const s of STRATEGIES[n] ?? []) {
      const k = `moe_${key}_${s.replace(/-/g, '_')}`;
      row(`${k}_decode_bs1_ms_per_token`, `bs${BIG.seqs} ${result[`${k}_bs${BIG.seqs}_tokens_per_s`] ?? 'n/a'} tok/s; load ${result[`${k}_load_s`] ?? '?'} s${result[`${k}_unsupported`] ? `; unsupported ${result[`${k}_unsupported`]}` : ''}`);
    }
    row(`moe_${key}_decode_bs1_ms_per_token`, `best (${result[`moe_${key}_best_strategy`] ?? '?'}); limit ${result[`moe_${key}_decode_bs1_limit_ms_per_token`] ?? '?'} ms → ${result[`moe_${key}_decode_bs1_over_limit`] ?? '?'}× (target ≤ 1.4)`);
    row(`hf_${key}_decode_bs1_ms_per_token`, `speedup ${result[`moe_${key}_speedup_vs_hf`] ?? '?'}× (target ≥ 8)`);
  }
  for (const [name, e] of Object.entries(detail.errors)) log(`${e.startsWith('skipped') ? 'SKIPPED' : 'ERROR'} [${name}] ${e.replace(/\s+/g, ' ').slice(0, 300)}`);
  log(`results: ${join(OUT, RESULT)}, ${join(OUT, 'moe-bench-detail.json')}`);
}
