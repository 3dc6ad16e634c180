import type { WeightSource } from '../contracts.js';
import { fromF32, type FloatDType } from '../dtype.js';
import type { WeightInfo } from '../graph.js';
import type { WeightName } from '../ops.js';
import type { Rng } from '../sampling/rng.js';
import { hostTensor, type HostTensor } from '../tensor.js';

export type TensorSet = ReadonlyMap<WeightName, HostTensor>;

/** A WeightSource over tensors already in memory. */
export function memoryWeights(tensors: TensorSet): WeightSource {
  return {
    names: () => [...tensors.keys()],
    get(name) {
      const t = tensors.get(name);
      if (!t) throw new Error(`test weight source has no weight ${name}`);
      return t;
    },
  };
}

/** The WeightInfo map a GraphBuilder needs, read off the tensors. */
export function weightInfos(tensors: TensorSet): Map<WeightName, WeightInfo> {
  return new Map([...tensors].map(([name, t]) => [name, { name, shape: t.shape }]));
}

/** A tensor of `values`, rounded into `dtype`. */
export function tensorOf(dtype: FloatDType, shape: readonly number[], values: ArrayLike<number>): HostTensor {
  return hostTensor(dtype, shape, fromF32(dtype, Float32Array.from(values)));
}

/** A tensor of rows given as nested arrays, [rows.length, rows[0].length]. */
export function matrix(dtype: FloatDType, rows: readonly (readonly number[])[]): HostTensor {
  return tensorOf(dtype, [rows.length, rows[0].length], rows.flat());
}

/** A standard normal draw (Box–Muller). */
export function normal(rng: Rng): number {
  const u = 1 - rng.next(); // (0, 1]: log stays finite
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
}

/** A tensor of mean + std·N(0, 1) draws, rounded into `dtype`. */
export function randomTensor(rng: Rng, dtype: FloatDType, shape: readonly number[], std = 1, mean = 0): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = mean + std * normal(rng);
  return hostTensor(dtype, shape, fromF32(dtype, v));
}

/** A random integer in [0, n). */
export function randomInt(rng: Rng, n: number): number {
  return Math.floor(rng.next() * n);
}

/** A random permutation of 0..n-1 (Fisher–Yates). */
export function permutation(rng: Rng, n: number): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = randomInt(rng, i + 1);
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}
