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
