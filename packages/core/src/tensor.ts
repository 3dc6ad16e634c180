import { allocFloat, type FloatDType, type FloatStorage } from './dtype.js';

/** A tensor whose elements live in host memory, in row-major order. */
export interface HostTensor {
  readonly dtype: FloatDType;
  readonly shape: readonly number[];
  readonly data: FloatStorage;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function hostTensor(dtype: FloatDType, shape: readonly number[], data?: FloatStorage): HostTensor {
  const n = numel(shape);
  const d = data ?? allocFloat(dtype, n);
  if (d.length !== n) throw new RangeError(`tensor data has ${d.length} elements, shape [${shape.join(', ')}] needs ${n}`);
  return { dtype, shape: [...shape], data: d };
}

export function shapeString(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Indices [start, start + length) along `axis` (0 or 1) of a 1-D or 2-D tensor, in its stored dtype. */
export function sliceTensor(t: HostTensor, axis: number, start: number, length: number): HostTensor {
  if (axis === 0) {
    const rowLen = t.shape.length === 2 ? t.shape[1] : 1;
    const shape = t.shape.length === 2 ? [length, t.shape[1]] : [length];
    return hostTensor(t.dtype, shape, t.data.slice(start * rowLen, (start + length) * rowLen));
  }
  const [rows, cols] = t.shape;
  const out = hostTensor(t.dtype, [rows, length]);
  for (let r = 0; r < rows; r++) out.data.set(t.data.subarray(r * cols + start, r * cols + start + length), r * length);
  return out;
}
