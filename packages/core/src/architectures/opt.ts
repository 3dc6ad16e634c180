// OPT: learned positions with an offset of 2, LayerNorm before (or, for opt-350m, after) each block,
// ReLU MLP, optional project_in/project_out when word_embed_proj_dim ≠ hidden_size, tied lm_head.
import type { GraphBuilder } from '../graph.js';
import type { ValueId } from '../ops.js';
import { readActivation } from './activations.js';
import { modelSpec, type Architecture, type WeightRecipe } from './types.js';

const POSITION_OFFSET = 2; // OPTLearnedPositionalEmbedding reserves the first two rows.

export const opt: Architecture = {
  modelTypes: ['opt'],
  describe(cfg) {
    const hidden = cfg.positiveInt('hidden_size');
    const heads = cfg.positiveInt('num_attention_heads');
    const layers = cfg.positiveInt('num_hidden_layers');
    const ffn = cfg.positiveInt('ffn_dim');
    const vocab = cfg.positiveInt('vocab_size');
    const positions = cfg.positiveInt('max_position_embeddings');
    const embDim = cfg.positiveInt('word_embed_proj_dim', hidden);
    const preNorm = cfg.bool('do_layer_norm_before', true);
    const finalNorm = preNorm && !cfg.bool('_remove_final_layer_norm', false);
    const bias = cfg.bool('enable_bias', true);
    const act = readActivation(cfg, 'activation_function', 'relu');
    const headDim = hidden / heads;
    if (!Number.isInteger(headDim)) cfg.fail('num_attention_heads', `a divisor of hidden_size (${hidden})`, heads);
    if (!cfg.bool('layer_norm_elementwise_affine', true)) cfg.fail('layer_norm_elementwise_affine', 'true (not supported)', false);
    const project = embDim !== hidden;
    const eps = 1e-5;

    const d = (n: string) => `model.decoder.${n}`;
    const w: WeightRecipe[] = [];
    const add = (name: string, shape: number[]) => w.push({ name: d(name), shape, source: d(name) });
    const linear = (name: string, out: number, inF: number) => {
      add(name + '.weight', [out, inF]);
      if (bias) add(name + '.bias', [out]);
    };
    const norm = (name: string) => {
      add(name + '.weight', [hidden]);
      add(name + '.bias', [hidden]);
    };
    add('embed_tokens.weight', [vocab, embDim]);
    add('embed_positions.weight', [positions + POSITION_OFFSET, hidden]);
    if (project) {
      add('project_in.weight', [hidden, embDim]);
      add('project_out.weight', [embDim, hidden]);
    }
    for (let l = 0; l < layers; l++) {
      const p = `layers.${l}.`;
      for (const n of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) linear(`${p}self_attn.${n}`, hidden, hidden);
      norm(p + 'self_attn_layer_norm');
      norm(p + 'final_layer_norm');
      linear(p + 'fc1', ffn, hidden);
      linear(p + 'fc2', hidden, ffn);
    }
    if (finalNorm) norm('final_layer_norm');

    const build = (b: GraphBuilder): ValueId => {
      const lin = (x: ValueId, n: string) => b.linear(x, d(n + '.weight'), bias ? d(n + '.bias') : null);
      const ln = (x: ValueId, n: string) => b.layerNorm(x, d(n + '.weight'), d(n + '.bias'), eps);
      let x = b.embedding(b.inputs.tokenIds, d('embed_tokens.weight')); // [T, embDim]
      if (project) x = b.linear(x, d('project_in.weight'));
      x = b.add(x, b.embedding(b.inputs.positions, d('embed_positions.weight'), { offset: POSITION_OFFSET })); // [T, hidden]
      for (let l = 0; l < layers; l++) {
        const p = `layers.${l}.`;
        const h = preNorm ? ln(x, p + 'self_attn_layer_norm') : x;
        const [q, k, v] = ['q', 'k', 'v'].map((n) => lin(h, `${p}self_attn.${n}_proj`));
        const a = b.attention(q, k, v, { layer: l, heads, kvHeads: heads, headDim, scale: 1 / Math.sqrt(headDim), slidingWindow: null });
        x = b.add(x, lin(a, p + 'self_attn.out_proj'));
        if (!preNorm) x = ln(x, p + 'self_attn_layer_norm');
        const m = lin(b.activation(lin(preNorm ? ln(x, p + 'final_layer_norm') : x, p + 'fc1'), act), p + 'fc2');
        x = b.add(x, m);
        if (!preNorm) x = ln(x, p + 'final_layer_norm');
      }
      let out = b.gatherRows(x);
      if (finalNorm) out = ln(out, 'final_layer_norm');
      if (project) out = b.linear(out, d('project_out.weight'));
      return b.linear(out, d('embed_tokens.weight')); // [rows, vocab]
    };

    return {
      spec: modelSpec(cfg, {
        modelType: 'opt', vocabSize: vocab, hiddenSize: hidden, numLayers: layers, maxPositions: positions,
        kv: { layers, kvHeads: heads, headDim },
      }),
      weights: w,
      build,
    };
  },
};
