// A small random Llama-like decoder (RMSNorm, q/k/v projections, rotary, GQA attention, output
// projection, gated SiLU MLP, gatherRows, LM head) for checking the KV-cache contract end to end.
import type { FloatDType } from '../dtype.js';
import { GraphBuilder, type Graph } from '../graph.js';
import type { Rng } from '../sampling/rng.js';
import type { HostTensor } from '../tensor.js';
import { randomTensor, weightInfos } from './weights.js';

export interface TinyLlamaConfig {
  vocabSize: number;
  hiddenSize: number;
  numHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  intermediateSize: number;
  numLayers: number;
  slidingWindow: number | null;
}

export const TINY_LLAMA: TinyLlamaConfig = {
  vocabSize: 61, hiddenSize: 32, numHeads: 4, numKeyValueHeads: 2, headDim: 8, intermediateSize: 48, numLayers: 2, slidingWindow: null,
};

/** The graph and random weights (std 1/√fanIn, so activations and logits stay near unit scale). */
export function tinyLlama(rng: Rng, cfg: TinyLlamaConfig = TINY_LLAMA, dtype: FloatDType = 'f32'): { graph: Graph; tensors: Map<string, HostTensor> } {
  const { vocabSize: vocab, hiddenSize: hidden, numHeads: heads, numKeyValueHeads: kvHeads, headDim, intermediateSize: inter } = cfg;
  const tensors = new Map<string, HostTensor>();
  const linear = (name: string, out: number, inF: number) => tensors.set(name, randomTensor(rng, dtype, [out, inF], 1 / Math.sqrt(inF)));
  const norm = (name: string, dim: number) => tensors.set(name, randomTensor(rng, dtype, [dim], 0.1, 1));
  tensors.set('embed', randomTensor(rng, dtype, [vocab, hidden]));
  for (let l = 0; l < cfg.numLayers; l++) {
    norm(`model.layers.${l}.attn_norm`, hidden);
    linear(`model.layers.${l}.q`, heads * headDim, hidden);
    linear(`model.layers.${l}.k`, kvHeads * headDim, hidden);
    linear(`model.layers.${l}.v`, kvHeads * headDim, hidden);
    linear(`model.layers.${l}.o`, hidden, heads * headDim);
    norm(`model.layers.${l}.mlp_norm`, hidden);
    linear(`model.layers.${l}.gate`, inter, hidden);
    linear(`model.layers.${l}.up`, inter, hidden);
    linear(`model.layers.${l}.down`, hidden, inter);
  }
  norm('final_norm', hidden);
  linear('lm_head', vocab, hidden);

  const b = new GraphBuilder(weightInfos(tensors), { layers: cfg.numLayers, kvHeads, headDim });
  const invFreq = Array.from({ length: headDim / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / headDim));
  const rope = { heads, headDim, rotaryDim: headDim, invFreq, attentionScaling: 1, interleaved: false };
  const eps = 1e-6;
  let x = b.embedding(b.inputs.tokenIds, 'embed'); // [T, hidden]
  for (let l = 0; l < cfg.numLayers; l++) {
    const hN = b.rmsNorm(x, `model.layers.${l}.attn_norm`, eps);
    const q = b.rotary(b.linear(hN, `model.layers.${l}.q`), rope); // [T, heads*headDim]
    const k = b.rotary(b.linear(hN, `model.layers.${l}.k`), { ...rope, heads: kvHeads }); // [T, kvHeads*headDim]
    const v = b.linear(hN, `model.layers.${l}.v`);
    const a = b.attention(q, k, v, { layer: l, heads, kvHeads, headDim, scale: 1 / Math.sqrt(headDim), slidingWindow: cfg.slidingWindow });
    x = b.add(x, b.linear(a, `model.layers.${l}.o`));
    const m = b.rmsNorm(x, `model.layers.${l}.mlp_norm`, eps);
    x = b.add(x, b.linear(b.gatedActivation(b.linear(m, `model.layers.${l}.gate`), b.linear(m, `model.layers.${l}.up`), 'silu'), `model.layers.${l}.down`));
  }
  const logits = b.linear(b.rmsNorm(b.gatherRows(x), 'final_norm', eps), 'lm_head'); // [selected, vocab]
  return { graph: b.build(logits), tensors };
}
