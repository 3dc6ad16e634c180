// The argmax of each row of a step's output, read in place in the wasm heap: what the greedy sampler
// would pick from a copy of those logits (core's Sampler: NaN counts as -Infinity, strict > keeps the
// lowest id on ties, a row with nothing above -Infinity gives id 0), without copying [rows, vocab]
// floats out and without the sampler's per-row passes.
export function argmaxRows(f32: Float32Array, at: number, rows: number, width: number): Int32Array {
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    const base = at + r * width;
    let best = 0;
    let top = f32[base];
    if (top !== top) top = -Infinity; // NaN
    for (let i = 1; i < width; i++) {
      const v = f32[base + i];
      if (v > top) {
        top = v;
        best = i;
      }
    }
    out[r] = best;
  }
  return out;
}
