// Shared by scripts/gpu-moe-bench.mjs: the Mixtral shapes, the strategies it times (by name, so the list
// is an env var), and the active-parameter byte count behind the batch-1 decode limit.
import { join } from 'node:path';

const mixtral = (o) => ({
  architectures: ['MixtralForCausalLM'], model_type: 'mixtral', hidden_act: 'silu', rms_norm_eps: 1e-5, rope_theta: 1e6,
  max_position_embeddings: 32768, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2, vocab_size: 32000,
  num_local_experts: 8, num_experts_per_tok: 2, ...o,
});

/** Mixtral-8x7B (46.7B parameters, 93 GB in bf16) and a tiny Mixtral (8 experts, top 2) for the local check. */
export const SHAPES = {
  'mixtral-8x7b': mixtral({ hidden_size: 4096, intermediate_size: 14336, num_attention_heads: 32, num_key_value_heads: 8, num_hidden_layers: 32 }),
  'tiny-mixtral': mixtral({ hidden_size: 64, intermediate_size: 96, num_attention_heads: 8, num_key_value_heads: 4, num_hidden_layers: 4, vocab_size: 384, max_position_embeddings: 1024 }),
};

/**
 * The synthetic model directory. repeatLayer0: every decoder layer serves layer 0's generated tensors
 * (generating 93 GB at ~0.3 GB/s per core would take minutes); every rank still copies each layer's bytes
 * into that layer's own place on its GPU, so values do not change timings. The JSON says so.
 */
export function syntheticMixtral(core, work, shape) {
  return core.writeSyntheticModel(join(work, `${shape}-bf16-repeat0`), SHAPES[shape], { seed: 1, dtype: 'bf16', std: 0.02, repeatLayer0: true });
}

/** cuda on `device` (bf16 activations by default: 'auto' follows the weights), or reference / cpu for the local check. */
export async function makeBackend(kind, { device = 0, activations = 'auto' } = {}) {
  if (kind === 'cuda') return (await import('@zinfer/kernels/cuda')).cudaBackend({ device, activations, cacheDir: '/tmp/zinfer-cuda-cache' });
  if (kind === 'cpu') return (await import('@zinfer/kernels/cpu')).cpuBackend({ threads: 1 });
  return (await import('@zinfer/kernels/reference')).referenceBackend();
}

/**
 * Strategy names → strategies on `gpus` ranks (null when the name does not apply to that many):
 *   tp        tensorParallel: dense weights sliced, the MoE block whole on every rank (every rank holds every expert);
 *   slice     expert slicing: one expert group of all ranks, every expert and the dense weights sliced over them
 *             (each rank reads 1/gpus of each routed expert: the balanced case for batch 1);
 *   ep        expertParallel, contiguous placement (dense sliced, all-reduce combine);
 *   ep-rr     the same with round-robin placement;
 *   ep-tp2    expert groups of 2 ranks, each expert sliced over its group (needs ≥ 4 ranks);
 *   ep-a2a    expertParallel with all-to-all dispatch and combine;
 *   ep-dense  expertParallel with the dense weights replicated instead of sliced.
 */
export function strategyFor(name, gpus, { parallel, moe }) {
  const placement = name === 'ep-rr' ? moe.roundRobinPlacement() : moe.contiguousPlacement();
  switch (name) {
    case 'tp':
      return parallel.tensorParallel({ size: gpus });
    case 'ep':
    case 'ep-rr':
      return moe.expertParallel({ size: gpus, placement });
    case 'slice':
      return moe.expertParallel({ size: gpus, tensor: gpus, placement });
    case 'ep-tp2':
      return gpus >= 4 ? moe.expertParallel({ size: gpus, tensor: 2, placement }) : null;
    case 'ep-a2a':
      return moe.expertParallel({ size: gpus, placement, dispatch: 'all-to-all' });
    case 'ep-dense':
      return moe.expertParallel({ size: gpus, placement, dense: 'replicated' });
    default:
      throw new Error(`unknown strategy ${name} (known: tp, slice, ep, ep-rr, ep-tp2, ep-a2a, ep-dense)`);
  }
}

/**
 * Bytes a batch-1 decode token must read, spread evenly over `gpus` (the balanced ideal): every weight but
 * the experts and the embedding table (of which one row), plus top-k experts of every MoE layer.
 */
export function activeBytesPerGpu(graph, gpus, elementBytes = 2) {
  const numel = (name) => graph.weights.get(name).shape.reduce((a, b) => a * b, 1);
  const expertWeights = new Set();
  let expertsRead = 0;
  for (const n of graph.nodes.filter((x) => x.op === 'moeExperts')) {
    const sizes = n.attrs.experts.map((e) => [e.gate, e.up, e.down].reduce((s, w) => (expertWeights.add(w), s + numel(w)), 0));
    expertsRead += (n.attrs.topK * sizes.reduce((a, b) => a + b, 0)) / sizes.length;
  }
  const tables = new Set(graph.nodes.filter((n) => n.op === 'embedding').map((n) => n.attrs.table));
  const readElsewhere = new Set(graph.nodes.filter((n) => n.op !== 'embedding').flatMap((n) => Object.values(n.attrs).filter((v) => typeof v === 'string' && graph.weights.has(v))));
  let dense = 0;
  for (const [name, { shape }] of graph.weights) {
    if (expertWeights.has(name)) continue;
    dense += tables.has(name) && !readElsewhere.has(name) ? shape[shape.length - 1] : numel(name);
  }
  const total = graph.weights.size ? [...graph.weights.keys()].reduce((s, w) => s + numel(w), 0) : 0;
  return { bytesPerGpu: ((dense + expertsRead) * elementBytes) / gpus, activeParams: dense + expertsRead, totalParams: total };
}
