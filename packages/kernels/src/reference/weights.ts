// Weight element access. Weights stay in their stored dtype (f16/bf16 as raw Uint16 words) and are
// widened to f32 one row at a time, right before use, so a bf16 model costs half the memory of f32.
import { f16ToF32, type HostTensor } from '@zinfer/core';

/** Every f16 bit pattern as f32: one lookup per element beats decoding exponent and mantissa. */
export const F16_TO_F32: Float32Array = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = f16ToF32(h);
  return t;
})();

/** Converts runs of one weight to f32 into a reused scratch row. */
export class WeightRows {
  /** The last converted run, `width` f32 values. */
  readonly row: Float32Array;
  // bf16 is the top half of an f32: shifting the word into an alias of `row` converts it exactly.
  private readonly bits: Uint32Array;

  constructor(private readonly tensor: HostTensor, readonly width: number) {
    this.row = new Float32Array(width);
    this.bits = new Uint32Array(this.row.buffer);
  }

  /** Converts elements [start, start + width) of the weight and returns the scratch row. */
  load(start: number): Float32Array {
    const { dtype, data } = this.tensor;
    const n = this.width;
    const row = this.row;
    if (dtype === 'f32') {
      row.set((data as Float32Array).subarray(start, start + n));
    } else if (dtype === 'bf16') {
      const bits = this.bits;
      for (let i = 0; i < n; i++) bits[i] = data[start + i] << 16;
    } else {
      for (let i = 0; i < n; i++) row[i] = F16_TO_F32[data[start + i]];
    }
    return row;
  }
}

/** A whole (small) weight as f32: norm weights and biases, read once per op call. */
export function weightVector(tensor: HostTensor): Float32Array {
  const n = tensor.data.length;
  return new WeightRows(tensor, n).load(0);
}
