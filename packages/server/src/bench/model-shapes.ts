// The Llama shapes the benchmarks generate random checkpoints of. `llama-1b` is TinyLlama-1.1B's shape
// (the "about 1B parameters"); `tiny` is a few MB, for tests and quick runs of the bench command.
import type { FloatDType } from '@zinfer/core';

export interface LlamaShape {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKeyValueHeads: number;
  intermediateSize: number;
  vocabSize: number;
  maxPositions: number;
}

export const BENCH_SHAPES = {
  'llama-1b': { hiddenSize: 2048, numLayers: 22, numHeads: 32, numKeyValueHeads: 4, intermediateSize: 5632, vocabSize: 32000, maxPositions: 2048 },
  tiny: { hiddenSize: 128, numLayers: 2, numHeads: 4, numKeyValueHeads: 2, intermediateSize: 352, vocabSize: 2048, maxPositions: 2048 },
} satisfies Record<string, LlamaShape>;

export type BenchShapeName = keyof typeof BENCH_SHAPES;
export const BENCH_SHAPE_NAMES = Object.keys(BENCH_SHAPES) as BenchShapeName[];

const TORCH_DTYPE: Record<FloatDType, string> = { f32: 'float32', f16: 'float16', bf16: 'bfloat16' };

/** config.json as transformers writes it for LlamaForCausalLM (older rope_theta form, read by both). */
export function llamaConfigJson(s: LlamaShape, dtype: FloatDType): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: s.hiddenSize,
    intermediate_size: s.intermediateSize,
    num_hidden_layers: s.numLayers,
    num_attention_heads: s.numHeads,
    num_key_value_heads: s.numKeyValueHeads,
    vocab_size: s.vocabSize,
    max_position_embeddings: s.maxPositions,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    hidden_act: 'silu',
    attention_bias: false,
    mlp_bias: false,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: TORCH_DTYPE[dtype],
  };
}

/** How a tensor's values are drawn: normal-ish with this std, or all ones (norm weights). */
export type TensorInit = { kind: 'normal'; std: number } | { kind: 'ones' };

export interface TensorPlan {
  name: string;
  shape: number[];
  init: TensorInit;
}

/**
 * Every tensor of the checkpoint, in file order. Linear weights get std 1/√fanIn (so each projection keeps
 * unit-scale activations and 22 layers stay finite), embeddings std 1 (RMSNorm rescales them anyway).
 */
export function llamaTensors(s: LlamaShape): TensorPlan[] {
  const headDim = s.hiddenSize / s.numHeads;
  const out: TensorPlan[] = [];
  const linear = (name: string, rows: number, cols: number) => out.push({ name, shape: [rows, cols], init: { kind: 'normal', std: 1 / Math.sqrt(cols) } });
  const norm = (name: string) => out.push({ name, shape: [s.hiddenSize], init: { kind: 'ones' } });
  out.push({ name: 'model.embed_tokens.weight', shape: [s.vocabSize, s.hiddenSize], init: { kind: 'normal', std: 1 } });
  for (let l = 0; l < s.numLayers; l++) {
    const p = `model.layers.${l}.`;
    norm(`${p}input_layernorm.weight`);
    linear(`${p}self_attn.q_proj.weight`, s.numHeads * headDim, s.hiddenSize);
    linear(`${p}self_attn.k_proj.weight`, s.numKeyValueHeads * headDim, s.hiddenSize);
    linear(`${p}self_attn.v_proj.weight`, s.numKeyValueHeads * headDim, s.hiddenSize);
    linear(`${p}self_attn.o_proj.weight`, s.hiddenSize, s.numHeads * headDim);
    norm(`${p}post_attention_layernorm.weight`);
    linear(`${p}mlp.gate_proj.weight`, s.intermediateSize, s.hiddenSize);
    linear(`${p}mlp.up_proj.weight`, s.intermediateSize, s.hiddenSize);
    linear(`${p}mlp.down_proj.weight`, s.hiddenSize, s.intermediateSize);
  }
  norm('model.norm.weight');
  linear('lm_head.weight', s.vocabSize, s.hiddenSize);
  return out;
}

export function paramCount(tensors: readonly TensorPlan[]): number {
  return tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
}
