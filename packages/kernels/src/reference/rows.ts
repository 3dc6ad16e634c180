/** a + b elementwise (the residual connection). */
export function add(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}

/** Copies the selected rows of x [rows, width], in order: the step's logit rows. */
export function gatherRows(x: Float32Array, width: number, selected: Int32Array): Float32Array {
  const out = new Float32Array(selected.length * width); // [selected, width]
  for (let s = 0; s < selected.length; s++) out.set(x.subarray(selected[s] * width, (selected[s] + 1) * width), s * width);
  return out;
}
