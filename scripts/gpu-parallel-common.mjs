// Shared by scripts/gpu-parallel-bench.mjs and its replica processes (gpu-parallel-replica.mjs): the
// synthetic model shapes, the backend choice, and the measurements (batch-1 decode through the engine's
// step loop, batch-N throughput, Program.run step times).
import { join } from 'node:path';

import { median, promptIds } from './gpu-harness.mjs';

export { median, programDecode, promptIds } from './gpu-harness.mjs';

/** Hugging Face config.json of a Llama-family shape; `tiny-*` shapes exercise the script on a CPU. */
const llama = (o) => ({
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_act: 'silu', rms_norm_eps: 1e-5, rope_theta: 10000,
  max_position_embeddings: 4096, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2, vocab_size: 32000, ...o,
});
export const SHAPES = {
  'llama-2-13b': llama({ hidden_size: 5120, intermediate_size: 13824, num_attention_heads: 40, num_key_value_heads: 40, num_hidden_layers: 40 }),
  'llama-2-70b': llama({ hidden_size: 8192, intermediate_size: 28672, num_attention_heads: 64, num_key_value_heads: 8, num_hidden_layers: 80 }),
  'mixtral-8x7b': {
    ...llama({ hidden_size: 4096, intermediate_size: 14336, num_attention_heads: 32, num_key_value_heads: 8, num_hidden_layers: 32, rope_theta: 1e6 }),
    architectures: ['MixtralForCausalLM'], model_type: 'mixtral', num_local_experts: 8, num_experts_per_tok: 2, max_position_embeddings: 32768,
  },
  'tiny-13b': llama({ hidden_size: 64, intermediate_size: 96, num_attention_heads: 8, num_key_value_heads: 8, num_hidden_layers: 4, vocab_size: 512 }),
  'tiny-70b': llama({ hidden_size: 64, intermediate_size: 128, num_attention_heads: 8, num_key_value_heads: 4, num_hidden_layers: 4, vocab_size: 384 }),
  'tiny-mixtral': {
    ...llama({ hidden_size: 64, intermediate_size: 96, num_attention_heads: 8, num_key_value_heads: 4, num_hidden_layers: 4, vocab_size: 384 }),
    architectures: ['MixtralForCausalLM'], model_type: 'mixtral', num_local_experts: 4, num_experts_per_tok: 2,
  },
};

/**
 * Writes (or rewrites: two small files) a synthetic model directory; no weights touch the disk. Every
 * decoder layer serves layer 0's values (repeatLayer0): generating 26–140 GB at ~0.3 GB/s a core was most
 * of each load (96 s for 13B tp1); values do not change timings, and the results say so
 * (weights_repeat_layer0). Greedy tokens still compare like with like (every run uses the same weights).
 */
export function syntheticModel(core, work, shape, dtype) {
  return core.writeSyntheticModel(join(work, `${shape}-${dtype}`), SHAPES[shape], { seed: 1, dtype, std: 0.02, repeatLayer0: true });
}

/** A backend on device `device`: cuda (f16 activations, CUDA graphs), or cpu/reference for local runs. */
export async function makeBackend(kind, device = 0) {
  if (kind === 'cuda') {
    const { cudaBackend } = await import('@zinfer/kernels/cuda');
    return cudaBackend({ device, activations: 'f16', cacheDir: '/tmp/zinfer-cuda-cache' });
  }
  if (kind === 'cpu') return (await import('@zinfer/kernels/cpu')).cpuBackend({ threads: 1 });
  return (await import('@zinfer/kernels/reference')).referenceBackend();
}

/** The backend, with the Program it compiles kept (single-device engines). */
export function capturingBackend(backend) {
  const box = { program: null };
  return { box, backend: { ...backend, compile: async (...a) => (box.program = await backend.compile(...a)) } };
}

/** The strategy, with the Program its launch returns kept (one program steps every rank). */
export function capturingStrategy(strategy) {
  const box = { program: null };
  return { box, strategy: { ...strategy, launch: async (args) => (box.program = await strategy.launch(args)) } };
}

export const round = (x, d) => (x === null || x === undefined || !Number.isFinite(x) ? null : Number(x.toFixed(d)));


/** Steps the engine until `gen` settles; returns its result. */
export async function settle(engine, gen) {
  let done = false;
  const p = gen.result.then((r) => ((done = true), r));
  for (let i = 0; i < 100000 && !done; i++) if ((await engine.step()).tokens === 0) await new Promise((r) => setImmediate(r));
  return p;
}

/**
 * Batch-1 greedy decode through engine.step(): a 32-token prompt, `skip` warm-up steps, then `steps`
 * timed ones. Returns the median ms per token and every generated token (for the identity check). A call
 * that runs a chain of steps (report.steps > 1: limits.decodeSteps) counts as that many of its mean time.
 */
export async function decodeBs1(engine, { vocab, steps, skip }) {
  const gen = engine.generate({ inputIds: promptIds(32, vocab, 1), maxTokens: 1 + skip + steps, temperature: 0, ignoreEos: true });
  await engine.step(); // the prompt
  const times = [];
  for (let taken = 0; taken < skip + steps; ) {
    const t = performance.now();
    const r = await engine.step();
    if (r.tokens === 0) break;
    if (taken >= skip) times.push((performance.now() - t) / r.steps);
    taken += r.steps;
  }
  const { tokens } = await settle(engine, gen);
  return { msPerToken: median(times), minMs: Math.min(...times), steps: times.length, tokens };
}

/**
 * A launched ranks program's own step time at batch 1 (RanksProgram.timeSteps: every rank runs one decode
 * step `times` times back to back in its thread, no message between the runs), against the same step sent
 * to the ranks one message round at a time (Program.runArgmax, no engine). Returns the slowest rank's
 * mean, the message path's median and each rank's mean (ms); null where the program has no timeSteps
 * (one device, inline ranks).
 */
export async function rankLoop(program, stepBatch, { vocab, context = 64, times = 64, blockSize = 16 }) {
  if (!program?.timeSteps) return null;
  const per = Math.ceil((context + 8) / blockSize);
  const batch = stepBatch([{ tokens: [7 % vocab], cached: context, blocks: Array.from({ length: per }, (_, b) => b) }], blockSize, 'last');
  await program.timeSteps(batch, 4); // warm-up: the graph bucket is captured
  const ranks = await program.timeSteps(batch, times);
  const round = [];
  for (let i = 0; i < 24; i++) {
    const t0 = performance.now();
    await program.runArgmax(batch);
    round.push(performance.now() - t0);
  }
  // One message a run of 8 chained steps (runArgmaxSteps): the ranks feed their own tokens.
  const chained = [];
  for (let i = 0; i < 10 && program.runArgmaxSteps; i++) {
    const t0 = performance.now();
    await program.runArgmaxSteps(batch, 8);
    if (i >= 2) chained.push((performance.now() - t0) / 8);
  }
  return { loopMs: Math.max(...ranks), messageMs: median(round), chainMs: chained.length ? median(chained) : null, ranks };
}

/**
 * Throughput at batch `seqs`: that many `promptLen`-token prompts, `newTokens` each; the median of the
 * steps in which every sequence decodes gives tokens/s (prefill steps are not counted).
 */
export async function throughput(engine, { seqs, promptLen, newTokens, vocab, seed = 1000 }) {
  const gens = Array.from({ length: seqs }, (_, i) => engine.generate({ inputIds: promptIds(promptLen, vocab, seed + i), maxTokens: newTokens, temperature: 0, ignoreEos: true }));
  const times = [];
  let full = 0;
  for (let guard = 0; guard < 100000; guard++) {
    const t = performance.now();
    const r = await engine.step();
    const ms = performance.now() - t;
    if (r.tokens === 0) break;
    if (r.tokens === seqs * r.steps && r.sequences === seqs && full++ >= 2) times.push(ms / r.steps); // 2 warm-up calls; a chained call's mean step
  }
  for (const g of gens) await settle(engine, g);
  if (times.length < 3) throw new Error(`only ${times.length} steps decoded all ${seqs} sequences`);
  const ms = median(times);
  return { stepMs: ms, tokensPerS: (seqs / ms) * 1000, steps: times.length };
}

/**
 * Decode rate with the engine stepping on its own (a pipeline then keeps one step a stage in flight, each
 * over its own lane of sequences): the tokens every sequence produced after the last one's first token and
 * before the first one's last, over that window.
 */
export async function throughputAuto(engine, { seqs, promptLen, newTokens, vocab, seed = 1000 }) {
  const stamps = Array.from({ length: seqs }, () => []);
  const gens = Array.from({ length: seqs }, (_, i) => engine.generate({ inputIds: promptIds(promptLen, vocab, seed + i), maxTokens: newTokens, temperature: 0, ignoreEos: true }));
  await Promise.all(gens.map(async (g, i) => {
    for await (const _ of g) stamps[i].push(performance.now());
  }));
  const start = Math.max(...stamps.map((s) => s[0]));
  const end = Math.min(...stamps.map((s) => s[s.length - 1]));
  const tokens = stamps.reduce((n, s) => n + s.filter((t) => t > start && t <= end).length, 0);
  if (!(end > start) || tokens < seqs) throw new Error(`no window in which all ${seqs} sequences decode (${tokens} tokens)`);
  return { tokensPerS: (tokens / (end - start)) * 1000, windowMs: end - start, tokens };
}

/** Bytes the busiest rank of a tp-way plan reads per decode token (one row of an embedding table). */
export async function bytesPerRankPerToken(core, tensorParallel, dir, tp) {
  const m = await core.loadModel(dir);
  m.weights.close();
  const plan = tensorParallel({ size: tp }).plan(m.graph, Array.from({ length: tp }, (_, rank) => ({ rank, backend: 'any' })));
  const elementBytes = 2;
  return Math.max(...plan.ranks.map(({ graph }) => {
    const tables = new Set(graph.nodes.filter((n) => n.op === 'embedding').map((n) => n.attrs.table));
    const other = new Set(graph.nodes.filter((n) => n.op !== 'embedding').flatMap((n) => Object.values(n.attrs).filter((v) => typeof v === 'string' && graph.weights.has(v))));
    let n = 0;
    for (const [name, { shape }] of graph.weights) n += tables.has(name) && !other.has(name) ? shape[shape.length - 1] : shape.reduce((a, b) => a * b, 1);
    return n * elementBytes;
  }));
}
