// GPT-NeoX (Pythia): fused query_key_value laid out per head as [q | k | v], partial rotary
// (rotary_pct / partial_rotary_factor), parallel residual x + attn(ln1 x) + mlp(ln2 x), untied embed_out.
import type { GraphBuilder } from '../graph.js';
import type { ValueId } from '../ops.js';
import { readRope, rotaryAttrs } from '../rope.js';
import { range, takeRows } from '../weight-transforms.js';
import { readActivation } from './activations.js';
import { modelSpec, type Architecture, type WeightRecipe } from './types.js';

export const gptNeox: Architecture = {
  modelTypes: ['gpt_neox'],
  describe(cfg) {
    const hidden = cfg.positiveInt('hidden_size');
    const heads = cfg.positiveInt('num_attention_heads');
    const layers = cfg.positiveInt('num_hidden_layers');
    const inter = cfg.positiveInt('intermediate_size');
    const vocab = cfg.positiveInt('vocab_size');
    const eps = cfg.num('layer_norm_eps', 1e-5);
    const parallel = cfg.bool('use_parallel_residual', true);
    const tied = cfg.bool('tie_word_embeddings', false);
    const bias = cfg.bool('attention_bias', true);
    const act = readActivation(cfg, 'hidden_act', 'gelu');
    const headDim = hidden / heads;
    if (!Number.isInteger(headDim)) cfg.fail('num_attention_heads', `a divisor of hidden_size (${hidden})`, heads);
    const rotary = rotaryAttrs(readRope(cfg, { legacyThetaField: 'rotary_emb_base', legacyPartialField: 'rotary_pct' }), heads, headDim);

    const g = (n: string) => `gpt_neox.${n}`;
    const w: WeightRecipe[] = [];
    const add = (name: string, shape: number[]) => w.push({ name: g(name), shape, source: g(name) });
    const linear = (name: string, out: number, inF: number, withBias = true) => {
      add(name + '.weight', [out, inF]);
      if (withBias) add(name + '.bias', [out]);
    };
    const norm = (name: string) => {
      add(name + '.weight', [hidden]);
      add(name + '.bias', [hidden]);
    };
    add('embed_in.weight', [vocab, hidden]);
    for (let l = 0; l < layers; l++) {
      const p = `layers.${l}.`;
      norm(p + 'input_layernorm');
      norm(p + 'post_attention_layernorm');
      // query_key_value rows are [head][q|k|v][headDim]: gather each projection's rows.
      ['q', 'k', 'v'].forEach((n, part) => {
        const rows = Array.from({ length: heads }, (_, h) => range((h * 3 + part) * headDim, headDim)).flat();
        const src = g(`${p}attention.query_key_value`);
        w.push({ name: g(`${p}attention.${n}_proj.weight`), shape: [hidden, hidden], source: src + '.weight', sourceShape: [3 * hidden, hidden], transform: (t) => takeRows(t, rows) });
        if (bias) w.push({ name: g(`${p}attention.${n}_proj.bias`), shape: [hidden], source: src + '.bias', sourceShape: [3 * hidden], transform: (t) => takeRows(t, rows) });
      });
      linear(p + 'attention.dense', hidden, hidden, bias);
      linear(p + 'mlp.dense_h_to_4h', inter, hidden);
      linear(p + 'mlp.dense_4h_to_h', hidden, inter);
    }
    norm('final_layer_norm');
    if (!tied) w.push({ name: 'embed_out.weight', shape: [vocab, hidden], source: 'embed_out.weight' });

    const build = (b: GraphBuilder): ValueId => {
      const lin = (x: ValueId, n: string, withBias = true) => b.linear(x, g(n + '.weight'), withBias ? g(n + '.bias') : null);
      const ln = (x: ValueId, n: string) => b.layerNorm(x, g(n + '.weight'), g(n + '.bias'), eps);
      let x = b.embedding(b.inputs.tokenIds, g('embed_in.weight')); // [T, hidden]
      for (let l = 0; l < layers; l++) {
        const p = `layers.${l}.`;
        const h = ln(x, p + 'input_layernorm');
        const [q, k, v] = ['q', 'k', 'v'].map((n) => lin(h, `${p}attention.${n}_proj`, bias));
        const a = b.attention(b.rotary(q, rotary), b.rotary(k, rotary), v, { layer: l, heads, kvHeads: heads, headDim, scale: 1 / Math.sqrt(headDim), slidingWindow: null });
        const attnOut = lin(a, p + 'attention.dense', bias);
        const mlp = (y: ValueId) => lin(b.activation(lin(ln(y, p + 'post_attention_layernorm'), p + 'mlp.dense_h_to_4h'), act), p + 'mlp.dense_4h_to_h');
        if (parallel) {
          x = b.add(b.add(x, attnOut), mlp(x));
        } else {
          x = b.add(x, attnOut);
          x = b.add(x, mlp(x));
        }
      }
      const last = ln(b.gatherRows(x), 'final_layer_norm');
      return b.linear(last, tied ? g('embed_in.weight') : 'embed_out.weight'); // [rows, vocab]
    };

    return {
      spec: modelSpec(cfg, {
        modelType: 'gpt_neox', vocabSize: vocab, hiddenSize: hidden, numLayers: layers,
        maxPositions: cfg.positiveInt('max_position_embeddings'),
        kv: { layers, kvHeads: heads, headDim },
      }),
      weights: w,
      build,
    };
  },
};
