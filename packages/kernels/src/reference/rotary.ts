import type { RotaryAttrs } from '@zinfer/core';

/**
 * Rotates the first rotaryDim dims of each head of x [rows, heads*headDim] by angle p·invFreq[i],
 * p = positions[r]; cos and sin are scaled by attentionScaling. Non-interleaved pairs dim i with
 * i + rotaryDim/2 (rotate_half); interleaved pairs 2i with 2i+1 (GPT-J). Dims ≥ rotaryDim pass through.
 */
export function rotary(x: Float32Array, positions: Int32Array, attrs: RotaryAttrs): Float32Array {
  const { heads, headDim, rotaryDim, invFreq, attentionScaling, interleaved } = attrs;
  const half = rotaryDim >> 1;
  const width = heads * headDim;
  const rows = x.length / width;
  const out = Float32Array.from(x); // [rows, heads*headDim]; pass-through dims already in place
  const cos = new Float64Array(half);
  const sin = new Float64Array(half);
  // Element offsets of each pair's two members within a head.
  const first = new Int32Array(half);
  const second = new Int32Array(half);
  for (let i = 0; i < half; i++) {
    first[i] = interleaved ? 2 * i : i;
    second[i] = interleaved ? 2 * i + 1 : i + half;
  }
  for (let r = 0; r < rows; r++) {
    const p = positions[r];
    for (let i = 0; i < half; i++) {
      const angle = p * invFreq[i];
      cos[i] = Math.cos(angle) * attentionScaling;
      sin[i] = Math.sin(angle) * attentionScaling;
    }
    for (let h = 0; h < heads; h++) {
      const base = r * width + h * headDim;
      for (let i = 0; i < half; i++) {
        const a = base + first[i];
        const b = base + second[i];
        const x1 = x[a];
        const x2 = x[b];
        out[a] = x1 * cos[i] - x2 * sin[i];
        out[b] = x2 * cos[i] + x1 * sin[i];
      }
    }
  }
  return out;
}
