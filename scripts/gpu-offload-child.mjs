// The parts of scripts/gpu-offload-bench.mjs that run in a child process (their pinned host memory and
// GPU memory go back when it exits): the pinned-copy probe, and zinfer on a synthetic Llama with every
// layer in the host or disk tier, timed through Program.run (no scheduler: one forward is one step).
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** A WeightSource whose layer l > 0 serves layer 0's tensors (generated once): see the bench's header. */
export function repeatLayerZero(weights, layerOfWeight) {
  const cache = new Map();
  const zero = (name) => name.replace(/(^|\.)(layers|h)\.\d+\./, '$1$2.0.');
  return {
    names: () => weights.names(),
    get(name) {
      if (layerOfWeight(name) === null) return weights.get(name);
      const key = zero(name);
      let t = cache.get(key);
      if (!t) cache.set(key, (t = weights.get(key)));
      return t;
    },
  };
}

export function llamaConfig([hidden, layers, inter, heads, kvHeads, vocab]) {
  return {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: hidden, intermediate_size: inter, num_hidden_layers: layers,
    num_attention_heads: heads, num_key_value_heads: kvHeads, vocab_size: vocab, max_position_embeddings: 4096, rms_norm_eps: 1e-5,
    rope_theta: 10000, tie_word_embeddings: false, torch_dtype: 'float16',
  };
}

/** Fraction of the shorter timeline (copy or compute) that ran under the other, and the copy rate. */
export function overlapOf(events, bytes) {
  const fetch = events.filter((e) => e.kind === 'fetch');
  const compute = events.filter((e) => e.kind === 'compute');
  const total = (xs) => xs.reduce((s, e) => s + (e.end - e.start), 0);
  let both = 0;
  for (const f of fetch) for (const c of compute) both += Math.max(0, Math.min(f.end, c.end) - Math.max(f.start, c.start));
  const shorter = Math.min(total(fetch), total(compute));
  return { overlap: shorter > 0 ? both / shorter : null, copyGbPerS: total(fetch) > 0 ? bytes / (total(fetch) / 1000) / 1e9 : null, copyMs: total(fetch), computeMs: total(compute) };
}

/** O_DIRECT read rate of the largest file under dir (the disk tier's), first `bytes` of it, with dd. */
function diskRead(dir, bytes) {
  const files = [];
  const walk = (d) => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else files.push({ p, size: st.size });
    }
  };
  walk(dir);
  const file = files.sort((a, b) => b.size - a.size)[0];
  if (!file) return { diskReadGbPerS: null, diskProbe: 'no tier file' };
  const count = Math.max(1, Math.floor(Math.min(bytes, file.size) / (64 << 20)));
  const t = performance.now();
  const r = spawnSync('dd', [`if=${file.p}`, 'of=/dev/null', 'bs=64M', `count=${count}`, 'iflag=direct'], { encoding: 'utf8', timeout: 120_000 });
  const s = (performance.now() - t) / 1000;
  if (r.status !== 0) return { diskReadGbPerS: null, diskProbe: `dd failed: ${(r.stderr || '').slice(-300)}` };
  return { diskReadGbPerS: (count * (64 << 20)) / s / 1e9, diskProbe: `${count} × 64 MiB O_DIRECT from ${file.p} (${file.size} bytes) in ${s.toFixed(2)} s`, diskDd: (r.stderr || '').trim().split('\n').pop() };
}

/** B sequences of P prompt tokens (blocks of 16), then one decode token each. */
export function batches(stepBatch, B, P, vocab) {
  const blocksPer = Math.ceil((P + 2) / 16);
  const parts = Array.from({ length: B }, (_, s) => ({
    tokens: Array.from({ length: P }, (_, i) => 100 + ((s * 131 + i * 17) % (vocab - 200))),
    cached: 0,
    blocks: Array.from({ length: blocksPer }, (_, k) => s * blocksPer + k),
  }));
  const prompt = stepBatch(parts, 16, 'last');
  const decode = stepBatch(parts.map((p, s) => ({ ...p, tokens: [7 + (s % 50)], cached: P })), 16, 'last');
  return { prompt, decode, blocks: B * blocksPer };
}

export async function runChild(name, args, env) {
  const core = await import('@zinfer/core');
  if (name === 'pinned-h2d') {
    const cuda = await import('@zinfer/kernels/cuda');
    const info = await cuda.cudaBackend().probe();
    if (!info) throw new Error(`no CUDA GPU: ${cuda.probeFailure?.() ?? ''}`);
    return { card: info.description, ...(await cuda.pinnedCopyProbe(0, { bytes: 1 << 30, rounds: 5 })) };
  }
  const { stepBatch } = await import('@zinfer/core/testing');
  const { weightOffload } = await import('@zinfer/offload');
  const shape = env.SHAPES[args.shape];
  const dir = core.writeSyntheticModel(join(env.WORK, `synthetic-${args.shape}-${shape.join('x')}`), llamaConfig(shape), { seed: 1, dtype: 'f16', std: 0.02 });
  const model = await core.loadModel(dir);
  const weights = repeatLayerZero(model.weights, core.layerOfWeight);
  let backend;
  let card = null;
  if (env.BACKEND === 'cpu') {
    backend = (await import('@zinfer/kernels/cpu')).cpuBackend();
  } else {
    const cuda = await import('@zinfer/kernels/cuda');
    backend = cuda.cudaBackend({ activations: 'f16' });
    card = (await backend.probe())?.description ?? null;
  }
  const params = [...model.graph.weights.values()].reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1), 0);
  const t0 = performance.now();
  const placement = await weightOffload({ tier: args.tier, prefetch: env.PREFETCH, ...(args.dir ? { dir: args.dir } : {}) }).place({ graph: model.graph, weights, backend });
  const placeS = (performance.now() - t0) / 1000;
  const streamedNames = placement.stream ? placement.stream.groups.flat() : [];
  const streamedBytes = streamedNames.reduce((s, n) => s + model.graph.weights.get(n).shape.reduce((a, b) => a * b, 1) * 2, 0);
  const maxB = Math.max(...args.batches);
  const numBlocks = batches(stepBatch, maxB, env.PROMPT, shape[5]).blocks + 4;
  const t1 = performance.now();
  const program = await backend.compile(model.graph, placement.resident, { kvCache: { numBlocks, blockSize: 16 }, ...(placement.stream ? { stream: placement.stream } : {}) });
  const compileS = (performance.now() - t1) / 1000;
  const disk = args.probeDisk ? diskRead(args.dir, 4 << 30) : {};
  const timed = async (batch) => {
    const t = performance.now();
    const ids = program.runArgmax ? await program.runArgmax(batch) : await program.run(batch);
    return { s: (performance.now() - t) / 1000, n: ids.length };
  };
  const out = [];
  for (const B of args.batches) {
    const { prompt, decode } = batches(stepBatch, B, env.PROMPT, shape[5]);
    await timed(prompt); // warm-up: kernels, buffers, first touch of the tier
    placement.timeline().length = 0;
    const p = await timed(prompt);
    const events = program.streamStats?.timeline ?? placement.timeline();
    const ov = overlapOf(events, streamedBytes);
    const d1 = await timed(decode);
    const d2 = await timed(decode);
    const decodeS = Math.min(d1.s, d2.s);
    out.push({ batch: B, promptS: p.s, promptTokensPerS: (B * env.PROMPT) / p.s, decodeS, decodeTokensPerS: B / decodeS, ...ov });
  }
  await program.dispose();
  await placement.close();
  model.weights.close();
  return { card, params, weightBytes: params * 2, streamedBytes, placeS, compileS, summary: placement.summary, batches: out, ...disk };
}
