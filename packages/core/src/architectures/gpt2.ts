// GPT-2: learned positions, pre-LayerNorm, fused c_attn, Conv1D weights stored [in, out] (transposed and
// split into q/k/v while loading), gelu_new MLP, lm_head tied to the token embedding.
import type { GraphBuilder } from '../graph.js';
import type { ValueId } from '../ops.js';
import { range, takeRows, transpose } from '../weight-transforms.js';
import { readActivation } from './activations.js';
import { modelSpec, type Architecture, type WeightRecipe } from './types.js';

export const gpt2: Architecture = {
  modelTypes: ['gpt2'],
  describe(cfg) {
    const hidden = cfg.positiveInt('n_embd');
    const heads = cfg.positiveInt('n_head');
    const layers = cfg.positiveInt('n_layer');
    const vocab = cfg.positiveInt('vocab_size');
    const positions = cfg.positiveInt('n_positions');
    const inner = cfg.has('n_inner') ? cfg.positiveInt('n_inner') : 4 * hidden;
    const eps = cfg.num('layer_norm_epsilon', 1e-5);
    const act = readActivation(cfg, 'activation_function', 'gelu_new');
    const headDim = hidden / heads;
    if (!Number.isInteger(headDim)) cfg.fail('n_head', `a divisor of n_embd (${hidden})`, heads);
    if (cfg.bool('scale_attn_by_inverse_layer_idx', false)) cfg.fail('scale_attn_by_inverse_layer_idx', 'false (not supported)', true);
    const scaleAttn = cfg.bool('scale_attn_weights', true);

    const w: WeightRecipe[] = [];
    const t = (n: string) => `transformer.${n}`;
    const plain = (name: string, shape: number[]) => w.push({ name: t(name), shape, source: t(name) });
    // Conv1D stores [in, out]: the graph's linear wants [out, in].
    const conv = (name: string, source: string, inF: number, outF: number, rows = range(0, outF), srcOut = outF) => {
      w.push({ name: t(name + '.weight'), shape: [outF, inF], source: t(source + '.weight'), sourceShape: [inF, srcOut], transform: (x) => takeRows(transpose(x), rows) });
      w.push({ name: t(name + '.bias'), shape: [outF], source: t(source + '.bias'), sourceShape: [srcOut], transform: (x) => takeRows(x, rows) });
    };
    plain('wte.weight', [vocab, hidden]);
    plain('wpe.weight', [positions, hidden]);
    for (let l = 0; l < layers; l++) {
      const p = `h.${l}.`;
      for (const n of ['ln_1', 'ln_2']) {
        plain(`${p}${n}.weight`, [hidden]);
        plain(`${p}${n}.bias`, [hidden]);
      }
      ['q', 'k', 'v'].forEach((n, i) => conv(`${p}attn.${n}_proj`, `${p}attn.c_attn`, hidden, hidden, range(i * hidden, hidden), 3 * hidden));
      conv(`${p}attn.c_proj`, `${p}attn.c_proj`, hidden, hidden);
      conv(`${p}mlp.c_fc`, `${p}mlp.c_fc`, hidden, inner);
      conv(`${p}mlp.c_proj`, `${p}mlp.c_proj`, inner, hidden);
    }
    plain('ln_f.weight', [hidden]);
    plain('ln_f.bias', [hidden]);

    const ln = (b: GraphBuilder, x: ValueId, n: string) => b.layerNorm(x, t(n + '.weight'), t(n + '.bias'), eps);
    const lin = (b: GraphBuilder, x: ValueId, n: string) => b.linear(x, t(n + '.weight'), t(n + '.bias'));
    const build = (b: GraphBuilder): ValueId => {
      let x = b.add(b.embedding(b.inputs.tokenIds, t('wte.weight')), b.embedding(b.inputs.positions, t('wpe.weight'))); // [T, hidden]
      for (let l = 0; l < layers; l++) {
        const p = `h.${l}.`;
        const h = ln(b, x, p + 'ln_1');
        const [q, k, v] = ['q', 'k', 'v'].map((n) => lin(b, h, `${p}attn.${n}_proj`));
        const a = b.attention(q, k, v, { layer: l, heads, kvHeads: heads, headDim, scale: scaleAttn ? 1 / Math.sqrt(headDim) : 1, slidingWindow: null });
        x = b.add(x, lin(b, a, p + 'attn.c_proj'));
        const m = lin(b, b.activation(lin(b, ln(b, x, p + 'ln_2'), p + 'mlp.c_fc'), act), p + 'mlp.c_proj');
        x = b.add(x, m);
      }
      return b.linear(ln(b, b.gatherRows(x), 'ln_f'), t('wte.weight')); // [rows, vocab]
    };

    return {
      spec: modelSpec(cfg, {
        modelType: 'gpt2', vocabSize: vocab, hiddenSize: hidden, numLayers: layers, maxPositions: positions,
        kv: { layers, kvHeads: heads, headDim },
      }),
      weights: w,
      build,
    };
  },
};
