#!/usr/bin/env node
// ZeRO-Inference on N GPUs (issue 8's multi_gpu_fetch_speedup), ON the GPU machine from the unpacked bundle
// (scripts/gpu-offload.sh with ZINFER_OFFLOAD_MULTI=1). Data-parallel ranks, one GPU and one worker thread
// each, every rank running the whole model on its own batch; each rank's pinned host tier holds 1/N of
// every layer, copies its run over its own PCIe link and an in-place NCCL all-gather assembles the layer.
// Measured in this one run, each part in a child process (its pinned memory goes back when it exits):
//   1. pinned H2D of each GPU alone, then of all N at once (the host's memory may cap the sum);
//   2. the forward (B sequences × P prompt tokens) of the 47.5B fp16 Llama (as scripts/gpu-offload-bench.mjs,
//      layer 0's tensors served for every layer) from the host tier on 1 GPU (plain stream), then on N
//      GPUs at the same per-GPU batch, the all-gathers on their own stream and on the copy stream;
//      multi_gpu_fetch_speedup = 1-GPU forward ÷ N-GPU forward (the faster queue); all-gather and run-copy
//      time per forward and the copy/compute overlap from device events;
//   2b. the engine path on the fixtures: createEngine with dataParallel + weightOffload (worker ranks,
//      NCCL fetch group) against one GPU resident: tokens and prompt logits identical;
//   3. disk read bandwidth with O_DIRECT: one dd, then K dd's in parallel on disjoint ranges of one file.
// Writes $OUT/offload-multi-h100.json (flat numbers) and offload-multi-detail.json after every step.
// ZINFER_OFFLOAD_BENCH_BACKEND=cpu runs the same control flow on the cpu backend with tiny shapes and the
// shared-memory all-gather (no probes), to check the script without a GPU.
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchExitCode, childJson, commitOrHead, jsonWriter, round, stepRunner, teeLog } from './gpu-harness.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SELF = fileURLToPath(import.meta.url);
const OUT = process.env.OUT || join(tmpdir(), 'zinfer-offload-multi');
const WORK = process.env.ZINFER_BENCH_DIR || join(tmpdir(), 'zinfer-offload');
const BACKEND = process.env.ZINFER_OFFLOAD_BENCH_BACKEND || 'cuda';
const CPU = BACKEND === 'cpu';
const BUDGET_S = Number(process.env.ZINFER_OFFLOAD_MULTI_BUDGET_S || 470);
const GPUS = Number(process.env.ZINFER_MULTI_GPUS || 4);
const LAYERS = Number(process.env.ZINFER_MULTI_LAYERS || (CPU ? 6 : 58));
const SHAPE = CPU ? [64, LAYERS, 160, 4, 4, 256] : [8192, LAYERS, 22016, 64, 64, 32000];
const BATCH = Number(process.env.ZINFER_MULTI_BATCH || (CPU ? 4 : 64));
const PROMPT = Number(process.env.ZINFER_OFFLOAD_PROMPT || (CPU ? 4 : 16));
const PREFETCH = Number(process.env.ZINFER_OFFLOAD_PREFETCH || 2);
const DISK_GB = Number(process.env.ZINFER_MULTI_DISK_GB || (CPU ? 0.25 : 8));
const DISK_READERS = Number(process.env.ZINFER_MULTI_DISK_READERS || 8);
const T0 = performance.now();
const env = { BACKEND, PROMPT, PREFETCH, VOCAB: SHAPE[5], CHILD: join(ROOT, 'scripts/gpu-offload-child.mjs') };

if (process.argv[2] === '--child') {
  const { runMultiChild } = await import(join(ROOT, 'scripts/gpu-offload-multi-child.mjs'));
  const r = await runMultiChild(process.argv[3], JSON.parse(process.argv[4] || '{}'), { ...env, WORK, SHAPE, BATCH });
  process.stdout.write(`\n${JSON.stringify(r)}\n`);
  process.exit(0);
}

mkdirSync(OUT, { recursive: true });
mkdirSync(WORK, { recursive: true });
const log = teeLog(join(OUT, 'offload-multi.log'));
const commit = commitOrHead(ROOT);

const result = {
  card: null, gpus: GPUS, date: new Date().toISOString(), commit, backend: BACKEND,
  multi_gpu_fetch_speedup: null, multi_forward_1gpu_s: null, multi_forward_ngpu_s: null, multi_forward_ngpu_gather_stream_s: null, multi_forward_ngpu_copy_stream_s: null,
  multi_gather_queue: null, multi_engine_parity: null, multi_engine_concurrent_tokens_identical: null, multi_per_gpu_batch: BATCH, prompt_tokens_per_sequence: PROMPT, prefetch: PREFETCH,
  multi_allgather_s: null, multi_run_copy_s: null, multi_overlap_fraction: null, multi_1gpu_overlap_fraction: null,
  multi_ngpu_tokens_per_s: null, multi_1gpu_tokens_per_s: null,
  pinned_h2d_gb_per_s: null, pinned_h2d_gb_per_s_each: null, pinned_h2d_gb_per_s_all_sum: null, pinned_h2d_gb_per_s_all_each: null,
  multi_forward_limit_ngpu_s: null, disk_read_gb_per_s: null, disk_read_parallel_gb_per_s: null, disk_read_parallel_readers: DISK_READERS,
  model_params: null, streamed_weight_bytes: null, multi_place_1gpu_s: null, multi_place_ngpu_s: null, layers: LAYERS, weights_repeat_layer0: true,
};
const detail = { result, steps: {}, errors: {}, node: process.version };
const save = jsonWriter(OUT, [['offload-multi-h100.json', result], ['offload-multi-detail.json', detail]]);
const { step: runStep } = stepRunner({ budgetS: BUDGET_S, log, save, detail, errors: 'message', t0: T0 });
/** Runs `fn(secondsLeft)` unless the budget left is below minSeconds; a failure is recorded and the bench goes on. */
const step = (name, minSeconds, fn) => runStep(name, fn, { minSeconds });


function child(name, args, limitS) {
  return childJson(name, [process.execPath, SELF, '--child', name, JSON.stringify(args)], limitS, { log, env: { NCCL_NVLS_ENABLE: '0' } });
}

await step('h2d-each', 15, async () => {
  if (CPU) return { note: 'cpu backend: no host-to-device link' };
  const r = child('h2d-each', { gpus: GPUS }, 90);
  Object.assign(result, { card: r.card, pinned_h2d_gb_per_s_each: r.each.map((x) => round(x, 2)), pinned_h2d_gb_per_s: round(r.each[0], 2) });
  return r;
});

await step('forward-1gpu', 60, async (left) => {
  const r = child('forward', { ranks: 1, queues: ['gather'] }, Math.min(left - 100, 220));
  const f = r.runs.gather;
  Object.assign(result, {
    card: result.card ?? r.card, model_params: r.params, streamed_weight_bytes: r.streamedBytes, multi_place_1gpu_s: round(r.placeS, 1),
    multi_forward_1gpu_s: round(f.s), multi_1gpu_overlap_fraction: round(f.overlap), multi_1gpu_tokens_per_s: round((BATCH * PROMPT) / f.s, 1),
  });
  return r;
});

await step(`forward-${GPUS}gpu`, 60, async (left) => {
  const r = child('forward', { ranks: GPUS, queues: CPU ? ['gather'] : ['gather', 'copy'] }, Math.min(left - 30, 260));
  const best = Object.entries(r.runs).sort((a, b) => a[1].s - b[1].s)[0];
  const [q, f] = best;
  Object.assign(result, {
    card: result.card ?? r.card, multi_place_ngpu_s: round(r.placeS, 1), multi_gather_queue: q,
    multi_forward_ngpu_s: round(f.s), multi_forward_ngpu_gather_stream_s: round(r.runs.gather?.s), multi_forward_ngpu_copy_stream_s: round(r.runs.copy?.s),
    multi_allgather_s: round(f.gatherMs / 1000), multi_run_copy_s: round(f.shardCopyMs / 1000), multi_overlap_fraction: round(f.overlap),
    multi_ngpu_tokens_per_s: round((GPUS * BATCH * PROMPT) / f.s, 1),
  });
  if (result.multi_forward_1gpu_s) result.multi_gpu_fetch_speedup = round(result.multi_forward_1gpu_s / f.s, 2);
  return r;
});

await step('engine-parity', 30, async (left) => {
  // --dp N with --offload host through createEngine (worker ranks, NCCL): identical to one GPU resident.
  const r = child('engine', { gpus: GPUS, models: ['llama3', 'gpt2'] }, Math.min(left - 40, 90));
  const ok = Object.values(r).filter((m) => m.identical).length;
  Object.assign(result, { multi_engine_parity: `${ok}/${Object.keys(r).length}`, multi_engine_concurrent_tokens_identical: Object.values(r).every((m) => m.concurrentTokensIdentical) });
  return r;
});

await step('h2d-all', 15, async () => {
  if (CPU) return { note: 'cpu backend: no host-to-device link' };
  const r = child('h2d-all', { gpus: GPUS }, 90);
  Object.assign(result, { pinned_h2d_gb_per_s_all_each: r.each.map((x) => round(x, 2)), pinned_h2d_gb_per_s_all_sum: round(r.each.reduce((a, b) => a + b, 0), 2) });
  if (result.streamed_weight_bytes) result.multi_forward_limit_ngpu_s = round(result.streamed_weight_bytes / GPUS / (Math.min(...r.each) * 1e9));
  return r;
});

await step('disk-read', 20, async (left) => {
  const { diskProbe } = await import(join(ROOT, 'scripts/gpu-offload-multi-child.mjs'));
  const dir = join(WORK, 'disk-probe');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  try {
    const r = await diskProbe(dir, DISK_GB, DISK_READERS, Math.min(left - 5, 120));
    Object.assign(result, { disk_read_gb_per_s: round(r.singleGbPerS, 2), disk_read_parallel_gb_per_s: round(r.parallelGbPerS, 2) });
    return r;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

log('');
log('| metric | value |');
log('| --- | --- |');
for (const [k, v] of Object.entries(result)) if (typeof v === 'number' || typeof v === 'boolean' || Array.isArray(v) || (typeof v === 'string' && k.startsWith('multi_'))) log(`| ${k} | ${Array.isArray(v) ? v.join(', ') : v} |`);
log(`errors: ${Object.keys(detail.errors).length ? Object.keys(detail.errors).join(', ') : 'none'}`);
save();
process.exit(benchExitCode(detail));
