import { BackendError, type ActivationFn } from '@zinfer/core';
import { erf } from './erf.js';

export const ACTIVATION_FNS: readonly ActivationFn[] = ['relu', 'silu', 'gelu', 'gelu_tanh'];

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

export const relu = (x: number): number => (x < 0 ? 0 : x);
export const silu = (x: number): number => x / (1 + Math.exp(-x));
/** GELU with the exact erf (PyTorch's default, HF "gelu"). */
export const gelu = (x: number): number => 0.5 * x * (1 + erf(x * Math.SQRT1_2));
/** GELU's tanh approximation (HF "gelu_new", "gelu_pytorch_tanh"). */
export const geluTanh = (x: number): number => 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));

/**
 * fn(x) elementwise, or fn(x)·up when `up` is given (the gated MLP). One loop per function, so the
 * inner loop calls a known function V8 can inline rather than a closure picked at run time; fn(x) is
 * kept in doubles so the gated product rounds to f32 once.
 */
export function activation(fn: ActivationFn, x: Float32Array, up: Float32Array | null = null): Float32Array {
  const n = x.length;
  const f = new Float64Array(n);
  switch (fn) {
    case 'relu':
      for (let i = 0; i < n; i++) f[i] = relu(x[i]);
      break;
    case 'silu':
      for (let i = 0; i < n; i++) f[i] = silu(x[i]);
      break;
    case 'gelu':
      for (let i = 0; i < n; i++) f[i] = gelu(x[i]);
      break;
    case 'gelu_tanh':
      for (let i = 0; i < n; i++) f[i] = geluTanh(x[i]);
      break;
    default:
      throw new BackendError('unknown activation function', { field: 'attrs.fn', expected: ACTIVATION_FNS.join(', '), found: String(fn) });
  }
  const out = new Float32Array(n);
  if (up) for (let i = 0; i < n; i++) out[i] = f[i] * up[i];
  else out.set(f);
  return out;
}
