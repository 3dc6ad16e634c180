#!/usr/bin/env node
// The ZeRO-Inference benchmark of issue 8, run ON the GPU machine from the unpacked bundle
// (scripts/gpu-offload.sh). Everything a ratio needs is measured in this one run on this one card, most
// important first; each part runs in a child process, so its pinned memory is back before the next starts:
//   1. the pinned host → device bandwidth (copy stream, device events: the limit the forward is held to);
//   2. zinfer on a Llama-shape fp16 model larger than the GPU (58 layers, hidden 8192, intermediate 22016,
//      vocab 32000: 47.5B parameters, 95 GB), every layer in the host tier (pinned), streamed with prefetch:
//      one prompt forward (B sequences × P tokens) and one decode forward at batch 64 and 256;
//      offload_forward_s is the prompt forward at batch 64, offload_forward_limit_s the streamed bytes ÷ (1);
//      the overlap of the copy and compute timelines (device events) of that forward;
//   3. the peer: transformers + accelerate CPU offload (device_map from max_memory) on the same shape and
//      batch (scripts/gpu-offload-hf.py) → offload_speedup_vs_hf;
//   4. the disk tier on a model that fits the disk (Llama-2-7B shape, 13.5 GB) against the disk's read
//      bandwidth measured on the tier's own file with O_DIRECT (dd).
// Synthetic weights (zinfer-synthetic.json) are generated at ~0.2–0.5 GB/s per core, too slow for 95 GB in
// a 10-minute call: layer l > 0 serves layer 0's generated tensors (repeatLayerZero below), so every layer
// still streams its own bytes from its own place in the tier; values do not change timings. The JSON says
// so (weights_repeat_layer0: true); the peer does the same (one random layer copied into every layer).
// Writes $OUT/offload-h100.json (flat numbers + card, date, commit) after every step, offload-detail.json
// and offload-bench.log. ZINFER_OFFLOAD_BENCH_BACKEND=cpu runs the same control flow on the cpu backend
// with tiny shapes (no probe, no peer unless python has torch), to check the script without a GPU.
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchExitCode, childJson, commitOrHead, jsonWriter, round, stepRunner, teeLog } from './gpu-harness.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SELF = fileURLToPath(import.meta.url);
const OUT = process.env.OUT || join(tmpdir(), 'zinfer-offload-bench');
const WORK = process.env.ZINFER_BENCH_DIR || join(tmpdir(), 'zinfer-offload');
const BACKEND = process.env.ZINFER_OFFLOAD_BENCH_BACKEND || 'cuda';
const BUDGET_S = Number(process.env.ZINFER_OFFLOAD_BUDGET_S || 540);
const CPU = BACKEND === 'cpu';

/** Llama shapes: [hidden, layers, intermediate, heads, kvHeads, vocab]. */
const SHAPES = {
  big: CPU ? [64, 6, 160, 4, 4, 256] : [8192, 58, 22016, 64, 64, 32000],
  disk: CPU ? [64, 4, 128, 4, 4, 256] : [4096, 32, 11008, 32, 32, 32000],
};
const BATCHES = CPU ? [4, 8] : [64, 256];
const PROMPT = Number(process.env.ZINFER_OFFLOAD_PROMPT || (CPU ? 4 : 16));
const PREFETCH = Number(process.env.ZINFER_OFFLOAD_PREFETCH || 2);

const T0 = performance.now();

if (process.argv[2] === '--child') {
  const { runChild } = await import(join(ROOT, 'scripts/gpu-offload-child.mjs'));
  const r = await runChild(process.argv[3], JSON.parse(process.argv[4] || '{}'), { WORK, BACKEND, PROMPT, PREFETCH, SHAPES, BATCHES });
  process.stdout.write(`\n${JSON.stringify(r)}\n`);
  process.exit(0);
}

mkdirSync(OUT, { recursive: true });
mkdirSync(WORK, { recursive: true });
const log = teeLog(join(OUT, 'offload-bench.log'));
const commit = commitOrHead(ROOT);

const result = {
  card: null, date: new Date().toISOString(), commit, backend: BACKEND,
  offload_forward_s: null, offload_forward_limit_s: null, offload_forward_over_limit: null,
  offload_bs64_tokens_per_s: null, offload_bs256_tokens_per_s: null,
  offload_bs64_decode_tokens_per_s: null, offload_bs256_decode_tokens_per_s: null,
  offload_speedup_vs_hf: null, hf_offload_forward_s: null,
  offload_disk_forward_s: null, offload_disk_forward_limit_s: null, offload_disk_forward_over_limit: null, disk_read_gb_per_s: null,
  pinned_h2d_gb_per_s: null, offload_overlap_fraction: null, offload_copy_gb_per_s: null,
  offload_bs256_forward_s: null, offload_bs64_decode_s: null, offload_bs256_decode_s: null,
  model_params: null, model_weight_bytes: null, streamed_weight_bytes: null, prompt_tokens_per_sequence: PROMPT, prefetch: PREFETCH,
  disk_model_params: null, disk_streamed_weight_bytes: null, weights_repeat_layer0: true,
};
const detail = { result, steps: {}, errors: {}, node: process.version };
const save = jsonWriter(OUT, [['offload-h100.json', result], ['offload-detail.json', detail]]);
const { step: runStep } = stepRunner({ budgetS: BUDGET_S, log, save, detail, errors: 'message', t0: T0 });
/** Runs `fn(secondsLeft)` unless the budget left is below minSeconds; a failure is recorded and the bench goes on. */
const step = (name, minSeconds, fn) => runStep(name, fn, { minSeconds });


/** Runs `node this --child name` (or another command) with a time limit; returns its last stdout line as JSON. */
function child(name, args, limitS, cmd = null) {
  const argv = cmd ?? [process.execPath, SELF, '--child', name, JSON.stringify(args)];
  return childJson(name, argv, limitS, { log, tail: 30, env: { PYTHONUNBUFFERED: '1', NCCL_NVLS_ENABLE: '0' } });
}


await step('pinned-h2d', 10, async () => {
  if (CPU) return { note: 'cpu backend: no host-to-device link' };
  const r = child('pinned-h2d', {}, 60);
  Object.assign(result, { card: r.card, pinned_h2d_gb_per_s: round(r.pinnedGbPerS, 2) });
  return r;
});

await step('zinfer-host', 60, async (left) => {
  const r = child('zinfer', { tier: 'host', shape: 'big', batches: BATCHES }, Math.min(left - 20, 300));
  const bw = result.pinned_h2d_gb_per_s;
  const b0 = r.batches[0];
  Object.assign(result, {
    card: result.card ?? r.card, model_params: r.params, model_weight_bytes: r.weightBytes, streamed_weight_bytes: r.streamedBytes,
    offload_forward_s: round(b0.promptS), offload_overlap_fraction: round(b0.overlap), offload_copy_gb_per_s: round(b0.copyGbPerS, 2),
    offload_bs64_tokens_per_s: round(b0.promptTokensPerS, 1), offload_bs64_decode_s: round(b0.decodeS), offload_bs64_decode_tokens_per_s: round(b0.decodeTokensPerS, 2),
  });
  const b1 = r.batches[1];
  if (b1) Object.assign(result, { offload_bs256_forward_s: round(b1.promptS), offload_bs256_tokens_per_s: round(b1.promptTokensPerS, 1), offload_bs256_decode_s: round(b1.decodeS), offload_bs256_decode_tokens_per_s: round(b1.decodeTokensPerS, 2) });
  if (bw) {
    result.offload_forward_limit_s = round(r.streamedBytes / (bw * 1e9));
    result.offload_forward_over_limit = round(result.offload_forward_s / result.offload_forward_limit_s);
  }
  return r;
});

await step('hf-peer', 120, async (left) => {
  const [hidden, layers, inter, heads, kvHeads, vocab] = SHAPES.big;
  const args = ['--hidden', hidden, '--layers', layers, '--intermediate', inter, '--heads', heads, '--kv-heads', kvHeads, '--vocab', vocab, '--batch', BATCHES[0], '--prompt', PROMPT].map(String);
  const r = child('hf-peer', {}, Math.min(left - 10, 330), ['python3', join(ROOT, 'scripts/gpu-offload-hf.py'), ...args]);
  result.hf_offload_forward_s = round(r.forward_s);
  if (result.offload_forward_s) result.offload_speedup_vs_hf = round(r.forward_s / result.offload_forward_s, 2);
  return r;
});

await step('zinfer-disk', 60, async (left) => {
  const dir = join(WORK, 'disk-tier');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const r = child('zinfer', { tier: 'disk', shape: 'disk', batches: [BATCHES[0]], dir, probeDisk: true }, Math.min(left - 5, 240));
  const b0 = r.batches[0];
  Object.assign(result, {
    disk_model_params: r.params, disk_streamed_weight_bytes: r.streamedBytes, offload_disk_forward_s: round(b0.promptS), disk_read_gb_per_s: round(r.diskReadGbPerS, 2),
  });
  if (r.diskReadGbPerS) {
    result.offload_disk_forward_limit_s = round(r.streamedBytes / (r.diskReadGbPerS * 1e9));
    result.offload_disk_forward_over_limit = round(result.offload_disk_forward_s / result.offload_disk_forward_limit_s);
  }
  rmSync(dir, { recursive: true, force: true });
  return r;
});

log('');
log('| metric | value |');
log('| --- | --- |');
for (const [k, v] of Object.entries(result)) if (typeof v === 'number') log(`| ${k} | ${v} |`);
log(`errors: ${Object.keys(detail.errors).length ? Object.keys(detail.errors).join(', ') : 'none'}`);
save();
for (const f of readdirSync(OUT)) log(`wrote ${join(OUT, f)} (${statSync(join(OUT, f)).size} bytes)`);
process.exit(benchExitCode(detail));
