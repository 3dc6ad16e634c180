import type { OpSignatures, StepBatch } from '@zinfer/core';
import type { KvCache } from './kv-cache.js';

type AttentionAttrs = OpSignatures['attention']['attrs'];

/**
 * Writes every row's k and v at batch.slots[r] in layer `attrs.layer` of the cache, then causal attention
 * of each query row over its sequence's cached positions, read through the sequence's block table.
 * q [rows, heads*headDim], k/v [rows, kvHeads*headDim] → [rows, heads*headDim].
 */
export function attention(q: Float32Array, k: Float32Array, v: Float32Array, attrs: AttentionAttrs, cache: KvCache, batch: StepBatch): Float32Array {
  const { layer, heads, kvHeads, headDim, scale, slidingWindow } = attrs;
  const kvWidth = kvHeads * headDim;
  const qWidth = heads * headDim;
  const K = cache.k[layer]; // [slots, kvHeads*headDim]
  const V = cache.v[layer];
  const { slots } = batch;
  for (let r = 0; r < slots.length; r++) {
    K.set(k.subarray(r * kvWidth, (r + 1) * kvWidth), slots[r] * kvWidth);
    V.set(v.subarray(r * kvWidth, (r + 1) * kvWidth), slots[r] * kvWidth);
  }

  const out = new Float32Array(q.length); // [rows, heads*headDim]
  const group = heads / kvHeads; // query heads per kv head (GQA)
  const blockSize = cache.spec.blockSize;
  const acc = new Float64Array(headDim);
  for (const seq of batch.sequences) {
    const cached = new Int32Array(seq.contextLength); // cache slot of each position of the sequence
    for (let j = 0; j < seq.contextLength; j++) cached[j] = seq.blockTable[Math.floor(j / blockSize)] * blockSize + (j % blockSize);
    const weights = new Float64Array(seq.contextLength);
    for (let i = 0; i < seq.queryLength; i++) {
      const row = seq.queryStart + i;
      const p = seq.contextLength - seq.queryLength + i;
      const lo = slidingWindow === null ? 0 : Math.max(0, p - slidingWindow + 1);
      for (let h = 0; h < heads; h++) {
        const qo = row * qWidth + h * headDim;
        const kvo = Math.floor(h / group) * headDim;
        let max = -Infinity;
        for (let j = lo; j <= p; j++) {
          const ko = cached[j] * kvWidth + kvo;
          let dot = 0;
          for (let d = 0; d < headDim; d++) dot += q[qo + d] * K[ko + d];
          weights[j] = dot * scale;
          if (weights[j] > max) max = weights[j];
        }
        // Softmax with the max subtracted, so large scores cannot overflow exp.
        let sum = 0;
        for (let j = lo; j <= p; j++) {
          weights[j] = Math.exp(weights[j] - max);
          sum += weights[j];
        }
        acc.fill(0);
        for (let j = lo; j <= p; j++) {
          const vo = cached[j] * kvWidth + kvo;
          const w = weights[j];
          for (let d = 0; d < headDim; d++) acc[d] += w * V[vo + d];
        }
        for (let d = 0; d < headDim; d++) out[qo + d] = acc[d] / sum;
      }
    }
  }
  return out;
}
