// Layout changes applied while loading, so the graph sees one layout ([out, in] matrices, separate
// q/k/v) whatever the checkpoint stored. They keep the stored dtype: no widening to f32.
import { hostTensor, type HostTensor } from './tensor.js';

/** [a, b] → [b, a] (GPT-2's Conv1D stores [in, out]). */
export function transpose(t: HostTensor): HostTensor {
  const [a, b] = t.shape;
  const out = hostTensor(t.dtype, [b, a]);
  for (let i = 0; i < a; i++) for (let j = 0; j < b; j++) out.data[j * a + i] = t.data[i * b + j];
  return out;
}

/** Rows `rows` of a matrix (or elements of a vector), in that order. */
export function takeRows(t: HostTensor, rows: readonly number[]): HostTensor {
  const width = t.shape.length === 1 ? 1 : t.shape[1];
  const shape = t.shape.length === 1 ? [rows.length] : [rows.length, width];
  const out = hostTensor(t.dtype, shape);
  rows.forEach((r, i) => out.data.set(t.data.subarray(r * width, (r + 1) * width), i * width));
  return out;
}

/** Row indices [start, start + count). */
export function range(start: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => start + i);
}
