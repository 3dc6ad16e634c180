import type { HostTensor } from '@zinfer/core';
import { WeightRows, weightVector } from './weights.js';

/**
 * y[r, o] = Σ_i x[r, i]·W[o, i] + b[o], W [outFeatures, inFeatures] in f32/f16/bf16.
 * Each weight row is converted once and reused for every input row; sums run in doubles.
 */
export function linear(x: Float32Array, rows: number, weight: HostTensor, bias: HostTensor | null): Float32Array {
  const [outF, inF] = weight.shape;
  const y = new Float32Array(rows * outF); // [rows, outF]
  const w = new WeightRows(weight, inF);
  const b = bias ? weightVector(bias) : null; // [outF]
  for (let o = 0; o < outF; o++) {
    const wRow = w.load(o * inF); // [inF]
    const bo = b ? b[o] : 0;
    for (let r = 0; r < rows; r++) {
      const xo = r * inF;
      let acc = 0;
      for (let i = 0; i < inF; i++) acc += x[xo + i] * wRow[i];
      y[r * outF + o] = acc + bo;
    }
  }
  return y;
}
