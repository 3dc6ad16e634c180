// The Mixture-of-Experts feed-forward of Mixtral and Qwen2-MoE: a softmax top-k router over the
// experts' gated MLPs, and for Qwen2-MoE a shared expert whose output a sigmoid gate scales.
import type { GraphBuilder } from '../graph.js';
import type { ConfigReader } from '../model-config.js';
import type { ActivationFn, ValueId } from '../ops.js';
import { gatedMlp } from './llama.js';
import type { WeightRecipe } from './types.js';

export interface MoeSpec {
  experts: number;
  topK: number;
  normalize: boolean;
  intermediate: number;
  /** Weight names under the layer prefix: router, and each expert's gate/up/down. */
  router: string;
  expert: (e: number) => { gate: string; up: string; down: string };
  shared: { intermediate: number } | null;
  /** Whether layer l uses the MoE block (Qwen2-MoE may keep dense MLPs in some layers). */
  sparse: (layer: number) => boolean;
}

export function readMoe(cfg: ConfigReader, modelType: string, layers: number): MoeSpec | null {
  if (modelType === 'mixtral') {
    return {
      experts: cfg.positiveInt('num_local_experts'), topK: cfg.positiveInt('num_experts_per_tok'), normalize: true,
      intermediate: cfg.positiveInt('intermediate_size'), router: 'block_sparse_moe.gate.weight',
      expert: (e) => ({ gate: `block_sparse_moe.experts.${e}.w1.weight`, up: `block_sparse_moe.experts.${e}.w3.weight`, down: `block_sparse_moe.experts.${e}.w2.weight` }),
      shared: null, sparse: () => true,
    };
  }
  if (modelType === 'qwen2_moe') {
    const step = cfg.positiveInt('decoder_sparse_step', 1);
    const dense = cfg.raw.mlp_only_layers ?? [];
    if (!Array.isArray(dense) || !dense.every((l) => Number.isInteger(l))) cfg.fail('mlp_only_layers', 'a list of layer indices', dense);
    const experts = cfg.positiveInt('num_experts');
    const sharedSize = cfg.int('shared_expert_intermediate_size', 0);
    return {
      experts, topK: cfg.positiveInt('num_experts_per_tok'), normalize: cfg.bool('norm_topk_prob', false),
      intermediate: cfg.positiveInt('moe_intermediate_size'), router: 'mlp.gate.weight',
      expert: (e) => ({ gate: `mlp.experts.${e}.gate_proj.weight`, up: `mlp.experts.${e}.up_proj.weight`, down: `mlp.experts.${e}.down_proj.weight` }),
      shared: sharedSize > 0 ? { intermediate: sharedSize } : null,
      sparse: (l) => !(dense as number[]).includes(l) && (l + 1) % step === 0 && layers > 0,
    };
  }
  return null;
}

/** The recipes of one layer's MoE weights (prefix: 'model.layers.L.'). */
export function moeWeights(moe: MoeSpec, prefix: string, hidden: number): WeightRecipe[] {
  const w: WeightRecipe[] = [];
  const add = (name: string, shape: number[]) => w.push({ name: prefix + name, shape, source: prefix + name });
  add(moe.router, [moe.experts, hidden]);
  for (let e = 0; e < moe.experts; e++) {
    const n = moe.expert(e);
    add(n.gate, [moe.intermediate, hidden]);
    add(n.up, [moe.intermediate, hidden]);
    add(n.down, [hidden, moe.intermediate]);
  }
  if (moe.shared) {
    for (const [n, shape] of [['gate_proj', [moe.shared.intermediate, hidden]], ['up_proj', [moe.shared.intermediate, hidden]], ['down_proj', [hidden, moe.shared.intermediate]]] as const) add(`mlp.shared_expert.${n}.weight`, [...shape]);
    add('mlp.shared_expert_gate.weight', [1, hidden]);
  }
  return w;
}

/** The MoE block on normalized hidden states h [T, hidden] → [T, hidden]. */
export function moeBlock(b: GraphBuilder, h: ValueId, moe: MoeSpec, prefix: string, act: ActivationFn): ValueId {
  const routing = b.moeRouter(h, prefix + moe.router, moe.topK, moe.normalize); // [T, 2·topK]
  const experts = Array.from({ length: moe.experts }, (_, e) => {
    const n = moe.expert(e);
    return { id: e, gate: prefix + n.gate, up: prefix + n.up, down: prefix + n.down };
  });
  let out = b.moeExperts(h, routing, { topK: moe.topK, fn: act, experts });
  if (moe.shared) {
    const shared = gatedMlp(b, h, prefix + 'mlp.shared_expert.', act, false);
    out = b.add(out, b.sigmoidGate(shared, b.linear(h, prefix + 'mlp.shared_expert_gate.weight')));
  }
  return out;
}
