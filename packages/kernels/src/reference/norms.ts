import type { HostTensor } from '@zinfer/core';
import { weightVector } from './weights.js';

/** LayerNorm over each group of `dim` elements: biased variance, eps inside the square root. */
export function layerNorm(x: Float32Array, dim: number, weight: HostTensor, bias: HostTensor, eps: number): Float32Array {
  const w = weightVector(weight); // [dim]
  const b = weightVector(bias); // [dim]
  const out = new Float32Array(x.length);
  for (let g = 0; g < x.length; g += dim) {
    let sum = 0;
    for (let j = 0; j < dim; j++) sum += x[g + j];
    const mean = sum / dim;
    let sq = 0; // two passes: subtracting the mean first keeps the variance exact for large offsets
    for (let j = 0; j < dim; j++) {
      const d = x[g + j] - mean;
      sq += d * d;
    }
    const inv = 1 / Math.sqrt(sq / dim + eps);
    for (let j = 0; j < dim; j++) out[g + j] = (x[g + j] - mean) * inv * w[j] + b[j];
  }
  return out;
}

/** RMSNorm x / sqrt(mean(x²) + eps) · w over each group of `dim` (dim < width: per-head q/k norm). */
export function rmsNorm(x: Float32Array, dim: number, weight: HostTensor, eps: number): Float32Array {
  const w = weightVector(weight); // [dim]
  const out = new Float32Array(x.length);
  for (let g = 0; g < x.length; g += dim) {
    let sq = 0;
    for (let j = 0; j < dim; j++) sq += x[g + j] * x[g + j];
    const inv = 1 / Math.sqrt(sq / dim + eps);
    for (let j = 0; j < dim; j++) out[g + j] = x[g + j] * inv * w[j];
  }
  return out;
}
