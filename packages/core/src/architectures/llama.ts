// Llama 2/3, Mistral, Qwen2 and Qwen3 (and the MoE members Mixtral and Qwen2-MoE): pre-norm RMSNorm
// decoders with rotary attention (GQA) and a gated MLP. They differ in flags read from config.json: q/k/v
// bias (Qwen2), per-head q/k RMSNorm (Qwen3), head_dim ≠ hidden/heads (Qwen3), sliding-window layers
// (Mistral), tied embeddings (Llama 3.2, Qwen3), a routed mixture of MLPs (Mixtral, Qwen2-MoE).
import type { GraphBuilder } from '../graph.js';
import type { ConfigReader } from '../model-config.js';
import type { ActivationFn, ValueId } from '../ops.js';
import { readRope, rotaryAttrs } from '../rope.js';
import { readActivation } from './activations.js';
import { moeBlock, moeWeights, readMoe } from './moe.js';
import { modelSpec, type Architecture, type ModelDescription, type WeightRecipe } from './types.js';

interface LlamaOptions {
  qkvBias: boolean;
  outBias: boolean;
  mlpBias: boolean;
  qkNorm: boolean;
}

const FAMILY: Record<string, (cfg: ConfigReader) => LlamaOptions> = {
  llama: (cfg) => ({ qkvBias: cfg.bool('attention_bias', false), outBias: cfg.bool('attention_bias', false), mlpBias: cfg.bool('mlp_bias', false), qkNorm: false }),
  mistral: () => ({ qkvBias: false, outBias: false, mlpBias: false, qkNorm: false }),
  qwen2: () => ({ qkvBias: true, outBias: false, mlpBias: false, qkNorm: false }),
  qwen3: (cfg) => ({ qkvBias: cfg.bool('attention_bias', false), outBias: cfg.bool('attention_bias', false), mlpBias: false, qkNorm: true }),
  mixtral: () => ({ qkvBias: false, outBias: false, mlpBias: false, qkNorm: false }),
  qwen2_moe: (cfg) => ({ qkvBias: cfg.bool('qkv_bias', true), outBias: false, mlpBias: false, qkNorm: false }),
};

export const llamaFamily: Architecture = {
  modelTypes: Object.keys(FAMILY),
  describe(cfg) {
    const modelType = cfg.str('model_type');
    const opts = FAMILY[modelType](cfg);
    const hidden = cfg.positiveInt('hidden_size');
    const heads = cfg.positiveInt('num_attention_heads');
    const kvHeads = cfg.positiveInt('num_key_value_heads', heads);
    const headDim = cfg.positiveInt('head_dim', Math.floor(hidden / heads));
    const inter = cfg.positiveInt('intermediate_size');
    const layers = cfg.positiveInt('num_hidden_layers');
    const vocab = cfg.positiveInt('vocab_size');
    const eps = cfg.num('rms_norm_eps', 1e-6);
    const tied = cfg.bool('tie_word_embeddings', false);
    const act = readActivation(cfg, 'hidden_act', 'silu');
    const rotary = rotaryAttrs(readRope(cfg), heads, headDim);
    const windows = slidingWindows(cfg, modelType, layers);
    const moe = readMoe(cfg, modelType, layers);
    const sparse = (l: number) => moe !== null && moe.sparse(l);
    if (heads % kvHeads !== 0) cfg.fail('num_key_value_heads', `a divisor of num_attention_heads (${heads})`, kvHeads);

    const w: WeightRecipe[] = [];
    const add = (name: string, shape: number[]) => w.push({ name, shape, source: name });
    add('model.embed_tokens.weight', [vocab, hidden]);
    for (let l = 0; l < layers; l++) {
      const p = `model.layers.${l}.`;
      add(p + 'input_layernorm.weight', [hidden]);
      add(p + 'post_attention_layernorm.weight', [hidden]);
      for (const [n, out] of [['q', heads], ['k', kvHeads], ['v', kvHeads]] as const) {
        add(`${p}self_attn.${n}_proj.weight`, [out * headDim, hidden]);
        if (opts.qkvBias) add(`${p}self_attn.${n}_proj.bias`, [out * headDim]);
      }
      add(p + 'self_attn.o_proj.weight', [hidden, heads * headDim]);
      if (opts.outBias) add(p + 'self_attn.o_proj.bias', [hidden]);
      if (opts.qkNorm) {
        add(p + 'self_attn.q_norm.weight', [headDim]);
        add(p + 'self_attn.k_norm.weight', [headDim]);
      }
      if (sparse(l)) {
        w.push(...moeWeights(moe!, p, hidden));
        continue;
      }
      add(p + 'mlp.gate_proj.weight', [inter, hidden]);
      add(p + 'mlp.up_proj.weight', [inter, hidden]);
      add(p + 'mlp.down_proj.weight', [hidden, inter]);
      if (opts.mlpBias) for (const [n, d] of [['gate', inter], ['up', inter], ['down', hidden]] as const) add(`${p}mlp.${n}_proj.bias`, [d]);
    }
    add('model.norm.weight', [hidden]);
    if (!tied) add('lm_head.weight', [vocab, hidden]);

    const bias = (on: boolean, name: string) => (on ? name : null);
    const build = (b: GraphBuilder): ValueId => {
      let x = b.embedding(b.inputs.tokenIds, 'model.embed_tokens.weight'); // [T, hidden]
      for (let l = 0; l < layers; l++) {
        const p = `model.layers.${l}.`;
        const h = b.rmsNorm(x, p + 'input_layernorm.weight', eps);
        let q = b.linear(h, p + 'self_attn.q_proj.weight', bias(opts.qkvBias, p + 'self_attn.q_proj.bias')); // [T, heads*headDim]
        let k = b.linear(h, p + 'self_attn.k_proj.weight', bias(opts.qkvBias, p + 'self_attn.k_proj.bias')); // [T, kvHeads*headDim]
        const v = b.linear(h, p + 'self_attn.v_proj.weight', bias(opts.qkvBias, p + 'self_attn.v_proj.bias'));
        if (opts.qkNorm) {
          q = b.rmsNorm(q, p + 'self_attn.q_norm.weight', eps, headDim);
          k = b.rmsNorm(k, p + 'self_attn.k_norm.weight', eps, headDim);
        }
        q = b.rotary(q, rotary);
        k = b.rotary(k, { ...rotary, heads: kvHeads });
        const a = b.attention(q, k, v, { layer: l, heads, kvHeads, headDim, scale: 1 / Math.sqrt(headDim), slidingWindow: windows[l] });
        x = b.add(x, b.linear(a, p + 'self_attn.o_proj.weight', bias(opts.outBias, p + 'self_attn.o_proj.bias')));
        const h2 = b.rmsNorm(x, p + 'post_attention_layernorm.weight', eps);
        x = b.add(x, sparse(l) ? moeBlock(b, h2, moe!, p, act) : gatedMlp(b, h2, p + 'mlp.', act, opts.mlpBias));
      }
      const last = b.rmsNorm(b.gatherRows(x), 'model.norm.weight', eps);
      return b.linear(last, tied ? 'model.embed_tokens.weight' : 'lm_head.weight'); // [rows, vocab]
    };

    const desc: ModelDescription = {
      spec: modelSpec(cfg, {
        modelType, vocabSize: vocab, hiddenSize: hidden, numLayers: layers,
        maxPositions: cfg.positiveInt('max_position_embeddings'),
        kv: { layers, kvHeads, headDim },
      }),
      weights: w,
      build,
    };
    return desc;
  },
};

/** The dense feed-forward block (MoE layers route each token through a few of these: see moe.ts). */
export function gatedMlp(b: GraphBuilder, h: ValueId, prefix: string, act: ActivationFn, withBias: boolean): ValueId {
  const bias = (n: string) => (withBias ? `${prefix}${n}_proj.bias` : null);
  const gate = b.linear(h, prefix + 'gate_proj.weight', bias('gate')); // [T, intermediate]
  const up = b.linear(h, prefix + 'up_proj.weight', bias('up'));
  return b.linear(b.gatedActivation(gate, up, act), prefix + 'down_proj.weight', bias('down')); // [T, hidden]
}

/** Sliding window per layer: transformers-5 `layer_types`, else Mistral's global `sliding_window`. */
function slidingWindows(cfg: ConfigReader, modelType: string, layers: number): (number | null)[] {
  const types = cfg.raw.layer_types;
  // Some configs write sliding_window 0 (or leave a size) while the window is off: only a positive size counts.
  const window = cfg.has('sliding_window') && cfg.int('sliding_window') > 0 ? cfg.int('sliding_window') : null;
  if (Array.isArray(types)) {
    if (types.length !== layers) cfg.fail('layer_types', `${layers} entries`, types);
    return types.map((t) => {
      if (t === 'sliding_attention') return window ?? cfg.fail('sliding_window', 'a window size for sliding_attention layers', null);
      if (t === 'full_attention') return null;
      return cfg.fail('layer_types', 'full_attention or sliding_attention', t);
    });
  }
  const on = modelType === 'mistral' || cfg.bool('use_sliding_window', false);
  return Array.from({ length: layers }, () => (on ? window : null));
}
