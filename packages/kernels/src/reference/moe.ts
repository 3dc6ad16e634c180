// The Mixture-of-Experts ops: top-k softmax routing, the routed experts' gated MLPs weighted and
// summed, and the sigmoid gate of a shared expert (Mixtral, Qwen2-MoE, as transformers defines them).
import type { ActivationFn, HostTensor } from '@zinfer/core';
import { activation } from './activations.js';
import { linear } from './linear.js';

/** [rows, hidden] → [rows, 2·topK]: the topK expert ids (as floats), then their routing weights. */
export function moeRouter(x: Float32Array, rows: number, weight: HostTensor, topK: number, normalize: boolean): Float32Array {
  const experts = weight.shape[0];
  const logits = linear(x, rows, weight, null); // [rows, experts]
  const out = new Float32Array(rows * 2 * topK);
  const probs = new Float64Array(experts);
  for (let r = 0; r < rows; r++) {
    const l = logits.subarray(r * experts, (r + 1) * experts);
    let max = -Infinity;
    for (let e = 0; e < experts; e++) max = Math.max(max, l[e]);
    let sum = 0;
    for (let e = 0; e < experts; e++) sum += probs[e] = Math.exp(l[e] - max);
    for (let e = 0; e < experts; e++) probs[e] = Math.fround(probs[e] / sum); // transformers' softmax is f32
    // Highest probability first; equal probabilities keep the lower expert id first.
    const order = Array.from({ length: experts }, (_, e) => e).sort((a, b) => probs[b] - probs[a] || a - b);
    let total = 0;
    for (let k = 0; k < topK; k++) total += probs[order[k]];
    for (let k = 0; k < topK; k++) {
      out[r * 2 * topK + k] = order[k];
      out[r * 2 * topK + topK + k] = normalize ? probs[order[k]] / total : probs[order[k]];
    }
  }
  return out;
}

/** Adds one to `load[e]` for every expert e among each row's top-k of `routing` (moeRouter's output). */
export function countRouted(load: Float64Array, routing: Float32Array, topK: number): void {
  for (let i = 0; i < routing.length; i += 2 * topK) for (let k = 0; k < topK; k++) load[routing[i + k]]++;
}

export interface ExpertWeights {
  id: number;
  gate: HostTensor;
  up: HostTensor;
  down: HostTensor;
}

/** Σ_k w_k · down(fn(gate·x) ⊙ up·x) over the routed experts held here (others contribute nothing). */
export function moeExperts(x: Float32Array, rows: number, routing: Float32Array, topK: number, fn: ActivationFn, experts: readonly ExpertWeights[]): Float32Array {
  const hidden = x.length / rows;
  const byId = new Map(experts.map((e) => [e.id, e]));
  const out = new Float32Array(x.length); // [rows, hidden]
  const acc = new Float64Array(hidden);
  for (let r = 0; r < rows; r++) {
    const xr = x.subarray(r * hidden, (r + 1) * hidden);
    acc.fill(0);
    for (let k = 0; k < topK; k++) {
      const e = byId.get(routing[r * 2 * topK + k]);
      if (!e) continue;
      const w = routing[r * 2 * topK + topK + k];
      const h = activation(fn, linear(xr, 1, e.gate, null), linear(xr, 1, e.up, null)); // [intermediate]
      const y = linear(h, 1, e.down, null); // [hidden]
      for (let i = 0; i < hidden; i++) acc[i] += w * y[i];
    }
    for (let i = 0; i < hidden; i++) out[r * hidden + i] = acc[i];
  }
  return out;
}

/** out[r] = x[r] · sigmoid(gate[r]), gate [rows, 1]. */
export function sigmoidGate(x: Float32Array, gate: Float32Array): Float32Array {
  const rows = gate.length;
  const width = x.length / rows;
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) {
    const s = 1 / (1 + Math.exp(-gate[r]));
    for (let i = 0; i < width; i++) out[r * width + i] = x[r * width + i] * s;
  }
  return out;
}
